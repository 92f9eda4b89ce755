//! The fault engine: for each request, decides once which rules fire, before any fault acts.
//!
//! The running scenario sits behind an [`ArcSwap`]: every request reads it without a lock,
//! and a reload swaps in a new compiled scenario atomically (requests in flight keep the one
//! they started with). Matching is precompiled: rules are indexed by operation, so a rule that
//! names other operations costs nothing, and globs were compiled at load time.
//!
//! Randomness is counter-based rather than a shared RNG: the `n`-th request a rule matches
//! draws from `hash(seed, rule, n)`. Same seed and same request sequence give the same faults,
//! with no lock on the hot path.

mod draw;
pub mod matcher;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use draw::Draw;

use crate::s3::RequestInfo;
use crate::scenario::{Rule, Scenario};

/// The rules that fired for one request, in evaluation order. Holds the scenario it was
/// decided under, so a reload cannot change a request halfway.
#[derive(Debug)]
pub struct Decision {
    scenario: Arc<Scenario>,
    fired: Vec<(usize, Draw)>,
}

impl Decision {
    /// Each fired rule with its draw.
    pub fn fired(&self) -> impl Iterator<Item = (&Rule, Draw)> {
        self.fired
            .iter()
            .map(|(i, d)| (&self.scenario.rules()[*i], d.clone()))
    }
}

/// Counters for one rule, as reported to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleStats {
    pub name: String,
    /// Requests the rule's `match` selected.
    pub matched: u64,
    /// Requests it injected its faults into.
    pub injected: u64,
}

pub struct Engine {
    current: ArcSwap<Scenario>,
}

impl Engine {
    pub fn new(scenario: Scenario) -> Engine {
        Engine {
            current: ArcSwap::from_pointee(scenario),
        }
    }

    /// Replaces the running scenario for every request that starts after this call.
    pub fn replace(&self, scenario: Scenario) {
        self.current.store(Arc::new(scenario));
    }

    pub fn scenario(&self) -> Arc<Scenario> {
        self.current.load_full()
    }

    /// True when no rule could ever fire: the proxy then skips classification entirely.
    pub fn is_idle(&self) -> bool {
        self.current.load().rules().is_empty()
    }

    /// Decides which rules fire for `req`. `None`, the common case, allocates nothing.
    pub fn decide(&self, req: &RequestInfo<'_>) -> Option<Decision> {
        let scenario = self.current.load();
        let mut fired: Vec<(usize, Draw)> = Vec::new();
        for &index in scenario.candidates(req.operation) {
            let index = index as usize;
            let rule = &scenario.rules()[index];
            if !rule.matcher().matches(req) {
                continue;
            }
            if let Some(draw) = rule.roll(scenario.seed(), index) {
                fired.push((index, draw));
                if rule.faults().is_terminal() {
                    break;
                }
            }
        }
        if fired.is_empty() {
            return None;
        }
        Some(Decision {
            scenario: arc_swap::Guard::into_inner(scenario),
            fired,
        })
    }

    pub fn stats(&self) -> Vec<RuleStats> {
        self.current
            .load()
            .rules()
            .iter()
            .map(Rule::stats)
            .collect()
    }
}
