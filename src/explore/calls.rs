//! What one run of the test did: its logical calls in order, each named by which call of
//! its kind it was (the 2nd `PutObject` of `b/k`), so the same call can be found again in
//! the next run and faulted there with `nth:`.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::s3::Operation;
use crate::telemetry::RequestEvent;

/// A call's identity across runs: operation, bucket, key, and its ordinal among the calls of
/// that operation on that bucket and key (retries of one call do not count).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CallId {
    pub operation: String,
    pub bucket: String,
    pub key: String,
    pub nth: u64,
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.operation)?;
        match (self.bucket.is_empty(), self.key.is_empty()) {
            (true, _) => {}
            (false, true) => write!(f, " {}", self.bucket)?,
            (false, false) => write!(f, " {}/{}", self.bucket, self.key)?,
        }
        write!(f, " #{}", self.nth)
    }
}

impl CallId {
    /// The key with each run of digits as `#`: `items/3.json` and `items/17.json` are the
    /// same call site (one loop), so a fault at one stands for a fault at the other.
    pub fn key_shape(&self) -> String {
        let mut out = String::with_capacity(self.key.len());
        let mut in_digits = false;
        for c in self.key.chars() {
            if c.is_ascii_digit() {
                if !in_digits {
                    out.push('#');
                }
                in_digits = true;
            } else {
                out.push(c);
                in_digits = false;
            }
        }
        out
    }

    pub fn operation(&self) -> Operation {
        self.operation.parse().unwrap_or(Operation::Unknown)
    }
}

/// One logical call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub id: CallId,
    /// How it ended, in a word: `200`, `503 SlowDown`, `cut`...
    pub outcome: String,
    pub succeeded: bool,
    /// Response body bytes its last attempt sent (what a `cut` halves).
    pub bytes: Option<u64>,
    /// The rules that faulted one of its attempts.
    pub faulted_by: Option<String>,
}

/// A run's logical calls, in order of their first attempt (from its event log).
pub fn record(events: &[RequestEvent]) -> Vec<Recorded> {
    let attempts = crate::verdict::attempts(events);
    let calls = crate::verdict::calls(&attempts);
    let mut count: HashMap<(&str, &str, &str), u64> = HashMap::new();
    calls
        .iter()
        .map(|call| {
            let first = call.first().event;
            let last = call.last();
            let n = count.entry((&first.operation, &first.bucket, &first.key)).or_default();
            *n += 1;
            Recorded {
                id: CallId {
                    operation: first.operation.clone(),
                    bucket: first.bucket.clone(),
                    key: first.key.clone(),
                    nth: *n,
                },
                outcome: last.what(),
                succeeded: call.succeeded(),
                bytes: last.event.bytes,
                faulted_by: call.rule().map(str::to_owned),
            }
        })
        .collect()
}

/// What two fault-free runs of the test share.
#[derive(Debug, Clone, Default)]
pub struct Comparison {
    /// The first run's calls that the second also made, in the first run's order.
    pub shared: Vec<Recorded>,
    /// Calls only one of the runs made: the test is nondeterministic.
    pub only_first: Vec<CallId>,
    pub only_second: Vec<CallId>,
}

impl Comparison {
    pub fn deterministic(&self) -> bool {
        self.only_first.is_empty() && self.only_second.is_empty()
    }
}

/// Compares two baselines by call identity (not by order: concurrent calls of a test may
/// reach the proxy in either order, and `nth:` finds a call by its identity).
pub fn compare(first: &[Recorded], second: &[Recorded]) -> Comparison {
    let a: BTreeSet<&CallId> = first.iter().map(|r| &r.id).collect();
    let b: BTreeSet<&CallId> = second.iter().map(|r| &r.id).collect();
    Comparison {
        shared: first.iter().filter(|r| b.contains(&r.id)).cloned().collect(),
        only_first: first
            .iter()
            .filter(|r| !b.contains(&r.id))
            .map(|r| r.id.clone())
            .collect(),
        only_second: second
            .iter()
            .filter(|r| !a.contains(&r.id))
            .map(|r| r.id.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answered request of `op` on `b/key` with a 10-byte body.
    fn event(ms: u64, op: &str, key: &str, status: u16, invocation: &str) -> RequestEvent {
        RequestEvent {
            bytes: Some(10),
            ..crate::verdict::test_event(ms, op, key, Some(status), Some(invocation))
        }
    }

    #[test]
    fn calls_are_numbered_per_operation_and_key_and_retries_do_not_count() {
        let events = vec![
            event(0, "PutObject", "k", 503, "i1"),
            event(50, "PutObject", "k", 200, "i1"),
            event(100, "GetObject", "k", 200, "i2"),
            event(200, "PutObject", "k", 200, "i3"),
            event(300, "PutObject", "other", 200, "i4"),
        ];
        let calls = record(&events);
        let ids: Vec<String> = calls.iter().map(|c| c.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                "PutObject b/k #1",
                "GetObject b/k #1",
                "PutObject b/k #2",
                "PutObject b/other #1"
            ]
        );
        assert!(calls[0].succeeded, "the retry succeeded");
    }

    #[test]
    fn baselines_that_differ_are_nondeterministic_and_the_shared_calls_remain() {
        let a = record(&[
            event(0, "PutObject", "k", 200, "1"),
            event(10, "PutObject", "run-17", 200, "2"),
        ]);
        let b = record(&[
            event(0, "PutObject", "k", 200, "1"),
            event(10, "PutObject", "run-18", 200, "2"),
        ]);
        let c = compare(&a, &b);
        assert!(!c.deterministic());
        assert_eq!(c.shared.len(), 1);
        assert_eq!(c.only_first[0].key, "run-17");
        assert_eq!(c.only_second[0].key, "run-18");
        assert!(compare(&a, &a).deterministic());
    }

    #[test]
    fn numbers_in_keys_make_one_call_site() {
        let id = |key: &str| CallId {
            operation: "PutObject".into(),
            bucket: "b".into(),
            key: key.into(),
            nth: 1,
        };
        assert_eq!(id("items/3.json").key_shape(), id("items/170.json").key_shape());
        assert_ne!(id("items/3.json").key_shape(), id("planted/no-retry").key_shape());
    }
}
