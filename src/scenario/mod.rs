//! Scenarios: the YAML file a user writes, its validation, and the compiled form the engine
//! runs.
//!
//! Loading is parse → validate → compile, once. Validation happens while deserialising
//! (every leaf type checks itself), so each error carries the file, line and column of the
//! value at fault. The result, [`Scenario`], is immutable apart from its counters and is
//! shared read-only by every request.

mod file;
pub mod values;

use std::fmt;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::Draw;
use crate::engine::RuleStats;
use crate::engine::index::RuleIndex;
use crate::engine::matcher::{HeaderSlots, Matcher};
use crate::faults::FaultList;
use values::Probability;

/// A scenario file that could not be loaded, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// The file name as the user gave it (or `<inline>` for text not read from a file).
    pub origin: String,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "{}:{line}:{column}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// A validated, compiled scenario.
#[derive(Debug)]
pub struct Scenario {
    name: String,
    description: String,
    seed: u64,
    seed_given: bool,
    rules: Vec<Rule>,
    header_slots: HeaderSlots,
    index: RuleIndex,
}

impl Scenario {
    /// The scenario with no rules: pure passthrough.
    pub fn empty() -> Scenario {
        Scenario::compile("passthrough".into(), String::new(), None, Vec::new())
    }

    /// Reads, validates and compiles a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            origin: origin.clone(),
            position: None,
            message: format!("cannot read the file: {e}"),
        })?;
        Scenario::parse(&text, &origin)
    }

    /// Validates and compiles scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        file::parse(text, origin)
    }

    pub(crate) fn compile(name: String, description: String, seed: Option<u64>, mut rules: Vec<Rule>) -> Scenario {
        let mut header_slots = HeaderSlots::default();
        for rule in &mut rules {
            rule.matcher.assign_header_slots(&mut header_slots);
        }
        let index = RuleIndex::build(rules.iter().map(|r| &r.matcher));
        Scenario {
            name,
            description,
            seed: seed.unwrap_or_else(rand::random),
            seed_given: seed.is_some(),
            rules,
            header_slots,
            index,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    /// The seed in force: the file's, or a random one (logged, so a run can be replayed).
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn seed_given(&self) -> bool {
        self.seed_given
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn header_slots(&self) -> &HeaderSlots {
        &self.header_slots
    }

    /// Finds the rules a request can meet (see [`RuleIndex`]).
    pub fn index(&self) -> &RuleIndex {
        &self.index
    }
}

/// One compiled rule with its live counters.
#[derive(Debug)]
pub struct Rule {
    name: String,
    matcher: Matcher,
    trigger: Trigger,
    faults: FaultList,
    /// Requests the match selected (for stats).
    matched: AtomicU64,
    /// Of those, the ones inside the rule's time window: what skip, every and the draw count.
    eligible: AtomicU64,
    injected: AtomicU64,
}

/// When a matched rule fires: all the given conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    pub probability: Probability,
    /// Let the first N eligible requests through.
    pub skip: u64,
    /// Inject at most N times.
    pub limit: Option<u64>,
    /// Only every Nth eligible request (after `skip`): fully deterministic CI tests.
    pub every: Option<NonZeroU64>,
    /// Active from this long after the proxy started...
    pub after: Option<Duration>,
    /// ...until this long after it started.
    pub until: Option<Duration>,
}

impl Trigger {
    fn in_window(&self, started: Instant) -> bool {
        if self.after.is_none() && self.until.is_none() {
            return true;
        }
        let elapsed = started.elapsed();
        self.after.is_none_or(|a| elapsed >= a) && self.until.is_none_or(|u| elapsed < u)
    }
}

impl Rule {
    pub(crate) fn new(name: String, matcher: Matcher, trigger: Trigger, faults: FaultList) -> Rule {
        Rule {
            name,
            matcher,
            trigger,
            faults,
            matched: AtomicU64::new(0),
            eligible: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    pub fn faults(&self) -> &FaultList {
        &self.faults
    }

    /// Called for a request this rule matched: counts it, then applies the time window,
    /// `skip`, `every`, the probability and `limit`. Returns the request's draw when the
    /// rule fires. `started` is when the proxy started.
    pub fn roll(&self, seed: u64, index: usize, started: Instant) -> Option<Draw> {
        let t = &self.trigger;
        self.matched.fetch_add(1, Ordering::Relaxed);
        if !t.in_window(started) {
            return None;
        }
        let n = self.eligible.fetch_add(1, Ordering::Relaxed);
        if n < t.skip {
            return None;
        }
        if let Some(every) = t.every
            && !(n - t.skip + 1).is_multiple_of(every.get())
        {
            return None;
        }
        let mut draw = Draw::new(seed, index, n);
        let p = t.probability.get();
        if p < 1.0 && draw.unit() >= p {
            return None;
        }
        match t.limit {
            None => {
                self.injected.fetch_add(1, Ordering::Relaxed);
            }
            Some(limit) => {
                self.injected
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |done| {
                        (done < limit).then_some(done + 1)
                    })
                    .ok()?;
            }
        }
        Some(draw)
    }

    pub fn stats(&self) -> RuleStats {
        RuleStats {
            name: self.name.clone(),
            matched: self.matched.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
        }
    }
}
