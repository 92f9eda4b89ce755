//! Which runs to make: one per fault point, breadth first, with Filibuster's dynamic
//! reduction simplified.
//!
//! - Every call of the baseline × every fault class that applies to it is a point.
//! - A call that shows up only under a fault (the app's error path: an
//!   AbortMultipartUpload, a HEAD checking an ambiguous write) becomes a point too, with the
//!   fault that revealed it kept, down to `depth` faults in one run.
//! - A point equivalent to one already run is skipped and counted: same operation, bucket
//!   and key shape (digits aside: one loop), same fault class, same outcome of the call
//!   before it, same faults before it. Its result is taken to be that point's.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::calls::{CallId, Recorded};
use super::class::FaultClass;

/// One fault of a run: a class at a call.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Injection {
    pub call: CallId,
    pub class: FaultClass,
    /// The call's response body bytes when it was recorded (what `cut` halves).
    pub bytes: Option<u64>,
}

/// One run to make: its faults, the last one being the point's own.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Point {
    /// From 1, in the order the runs were started.
    pub number: usize,
    pub faults: Vec<Injection>,
}

impl Point {
    /// The fault this point is about (the others revealed its call).
    pub fn own(&self) -> &Injection {
        self.faults.last().expect("a point has a fault")
    }

    pub fn depth(&self) -> usize {
        self.faults.len()
    }

    /// `PutObject b/k #2 × persistent`, with the revealing faults before it.
    pub fn describe(&self) -> String {
        self.faults
            .iter()
            .map(|f| format!("{} × {}", f.call, f.class))
            .collect::<Vec<_>>()
            .join(", then ")
    }
}

/// What a point's run came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The command passed and every verdict held.
    Survived,
    /// The command failed (its exit status), or was killed by a signal.
    TestFailed { code: Option<i32> },
    /// The command was still running at `--run-timeout`: killed.
    Hang,
    /// The command passed, but the drill's expectations failed (these).
    VerdictFailed { expectations: Vec<String> },
    /// The fault never fired: the call did not happen in this run. Not a failure.
    NotReached,
}

impl Outcome {
    pub fn failed(&self) -> bool {
        matches!(
            self,
            Outcome::TestFailed { .. } | Outcome::Hang | Outcome::VerdictFailed { .. }
        )
    }

    /// A word for the matrix.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Survived => "survived",
            Outcome::TestFailed { .. } => "TEST FAILED",
            Outcome::Hang => "HANG",
            Outcome::VerdictFailed { .. } => "VERDICT FAILED",
            Outcome::NotReached => "not reached",
        }
    }

    /// The sentence for a report.
    pub fn detail(&self) -> String {
        match self {
            Outcome::Survived => "the test passed and every verdict held".into(),
            Outcome::TestFailed { code: Some(c) } => format!("the test failed (exit status {c})"),
            Outcome::TestFailed { code: None } => "the test was killed by a signal".into(),
            Outcome::Hang => "the test did not finish within --run-timeout (killed)".into(),
            Outcome::VerdictFailed { expectations } => {
                format!("the test passed, but the drill failed: {}", expectations.join(", "))
            }
            Outcome::NotReached => "the fault never fired: the call did not happen in this run".into(),
        }
    }
}

/// A point that was run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    pub point: Point,
    pub outcome: Outcome,
    pub seconds: f64,
    /// The calls of its run that the baseline did not make.
    pub new_calls: Vec<CallId>,
}

/// A point not run because an equivalent one was.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub faults: Vec<Injection>,
    /// The number of the point it is equivalent to.
    pub like: usize,
}

/// A point waiting to run.
#[derive(Debug, Clone)]
struct Candidate {
    faults: Vec<Injection>,
    key: Equivalence,
}

/// What makes two points the same experiment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Equivalence {
    operation: String,
    bucket: String,
    key_shape: String,
    class: FaultClass,
    /// The call before it: its operation and how it ended.
    preceding: Option<(String, String)>,
    /// The faults before it in the run.
    before: Vec<(CallId, FaultClass)>,
}

/// The exploration's state: the frontier, what was run, what was skipped.
#[derive(Debug)]
pub struct Plan {
    classes: Vec<FaultClass>,
    depth: usize,
    /// Identities of the baseline's calls: anything else in a run is the error path.
    baseline: HashSet<CallId>,
    queue: VecDeque<Candidate>,
    run: HashMap<Equivalence, usize>,
    started: usize,
    pub done: Vec<Done>,
    pub skipped: Vec<Skipped>,
}

impl Plan {
    /// Every call of `baseline` (in order) × every class of `classes` that applies to it.
    pub fn new(baseline: &[Recorded], classes: &[FaultClass], depth: usize) -> Plan {
        let mut plan = Plan {
            classes: classes.to_vec(),
            depth: depth.max(1),
            baseline: baseline.iter().map(|r| r.id.clone()).collect(),
            queue: VecDeque::new(),
            run: HashMap::new(),
            started: 0,
            done: Vec::new(),
            skipped: Vec::new(),
        };
        plan.add_calls(&[], baseline, |_| true);
        plan
    }

    /// Queues a point for each call `keep` selects of `calls` × each class, after `before`.
    fn add_calls(&mut self, before: &[Injection], calls: &[Recorded], keep: impl Fn(&Recorded) -> bool) {
        for (i, call) in calls.iter().enumerate() {
            if !keep(call) {
                continue;
            }
            let preceding = i
                .checked_sub(1)
                .map(|p| (calls[p].id.operation.clone(), calls[p].outcome.clone()));
            for &class in &self.classes {
                if !class.applies_to(call) {
                    continue;
                }
                let mut faults = before.to_vec();
                faults.push(Injection {
                    call: call.id.clone(),
                    class,
                    bytes: call.bytes,
                });
                let key = Equivalence {
                    operation: call.id.operation.clone(),
                    bucket: call.id.bucket.clone(),
                    key_shape: call.id.key_shape(),
                    class,
                    preceding: preceding.clone(),
                    before: before.iter().map(|f| (f.call.clone(), f.class)).collect(),
                };
                self.queue.push_back(Candidate { faults, key });
            }
        }
    }

    /// The next point to run, skipping (and counting) those equivalent to one already
    /// started; `None` when the frontier is empty for now (runs in flight may add to it).
    pub fn next_point(&mut self) -> Option<Point> {
        while let Some(candidate) = self.queue.pop_front() {
            if let Some(&like) = self.run.get(&candidate.key) {
                self.skipped.push(Skipped {
                    faults: candidate.faults,
                    like,
                });
                continue;
            }
            self.started += 1;
            self.run.insert(candidate.key, self.started);
            return Some(Point {
                number: self.started,
                faults: candidate.faults,
            });
        }
        None
    }

    /// The faults of every point still queued (left when the budget ran out).
    pub fn leftover(&self) -> Vec<Vec<Injection>> {
        self.queue.iter().map(|c| c.faults.clone()).collect()
    }

    /// Points queued and not yet started (an upper bound: some will be skipped).
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Records a point's run: its outcome and the calls it made. Calls the baseline never
    /// made join the frontier, after this point's faults, while the depth allows.
    pub fn finish(&mut self, point: Point, outcome: Outcome, seconds: f64, calls: &[Recorded]) {
        let new_calls: Vec<CallId> = calls
            .iter()
            .filter(|c| !self.baseline.contains(&c.id))
            .map(|c| c.id.clone())
            .collect();
        if point.depth() < self.depth && outcome != Outcome::NotReached {
            let new: HashSet<&CallId> = new_calls.iter().collect();
            self.add_calls(&point.faults, calls, |c| new.contains(&c.id));
        }
        self.done.push(Done {
            point,
            outcome,
            seconds,
            new_calls,
        });
        self.done.sort_by_key(|d| d.point.number);
    }

    /// The result a point (run or skipped) stands for.
    pub fn outcome_of(&self, number: usize) -> Option<&Outcome> {
        self.done.iter().find(|d| d.point.number == number).map(|d| &d.outcome)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Done> {
        self.done.iter().filter(|d| d.outcome.failed())
    }

    pub fn classes(&self) -> &[FaultClass] {
        &self.classes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(op: &str, key: &str, nth: u64, bytes: Option<u64>) -> Recorded {
        Recorded {
            id: CallId {
                operation: op.into(),
                bucket: "b".into(),
                key: key.into(),
                nth,
            },
            outcome: "200".into(),
            succeeded: true,
            bytes,
            faulted_by: None,
        }
    }

    #[test]
    fn a_loop_of_like_calls_is_run_once_per_class_and_the_rest_counted() {
        let baseline = vec![
            rec("CreateBucket", "", 1, None),
            rec("PutObject", "items/0", 1, None),
            rec("PutObject", "items/1", 1, None),
            rec("PutObject", "items/2", 1, None),
            rec("PutObject", "planted", 1, None),
        ];
        let classes = [FaultClass::Transient, FaultClass::Persistent];
        let mut plan = Plan::new(&baseline, &classes, 1);
        let mut run = Vec::new();
        while let Some(p) = plan.next_point() {
            run.push(p.describe());
            plan.finish(p, Outcome::Survived, 0.1, &baseline);
        }
        // items/0 follows CreateBucket; items/1 and items/2 both follow a PutObject 200 of
        // the same shape: one of them stands for the other.
        assert_eq!(run.len(), 2 + 2 + 2 + 2, "{run:#?}");
        assert_eq!(plan.skipped.len(), 2, "items/2 × 2 classes");
        assert!(
            run.iter().any(|r| r.starts_with("PutObject b/planted #1")),
            "another key shape is its own point"
        );
        assert!(plan.skipped.iter().all(|s| s.faults[0].call.key == "items/2"));
    }

    #[test]
    fn calls_seen_only_under_a_fault_join_the_frontier_with_that_fault_kept() {
        let baseline = vec![rec("PutObject", "k", 1, None)];
        let mut plan = Plan::new(&baseline, &[FaultClass::Persistent], 2);
        let first = plan.next_point().unwrap();
        assert!(plan.next_point().is_none());
        // Under the fault the app checked with a HEAD: the error path.
        let under_fault = vec![rec("PutObject", "k", 1, None), rec("HeadObject", "k", 1, None)];
        plan.finish(first, Outcome::Survived, 0.1, &under_fault);
        let second = plan.next_point().expect("the HEAD is a point");
        assert_eq!(second.depth(), 2);
        assert_eq!(
            second.describe(),
            "PutObject b/k #1 × persistent, then HeadObject b/k #1 × persistent"
        );
        // At depth 2 nothing more is added.
        let deeper = vec![
            rec("PutObject", "k", 1, None),
            rec("HeadObject", "k", 1, None),
            rec("ListObjectsV2", "", 1, None),
        ];
        plan.finish(second, Outcome::Survived, 0.1, &deeper);
        assert!(plan.next_point().is_none());
        assert_eq!(plan.done[1].new_calls.len(), 2);
    }
}
