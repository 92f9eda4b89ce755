//! Scenarios: the YAML file a user writes, its validation, and the compiled form the engine
//! runs.
//!
//! Loading is parse → validate → compile, once. Validation happens while deserialising
//! (every leaf type checks itself), so each error carries the file, line and column of the
//! value at fault. The result, [`Scenario`], is immutable apart from its counters and is
//! shared read-only by every request.

mod file;
mod limits;
pub mod timeline;

pub use file::{API_PREFIX, ApiRule};
pub use limits::{MAX_FLOW_DEPTH, MAX_SCENARIO_BYTES};


use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::draw::Draw;
use crate::engine::RuleStats;
use crate::engine::index::RuleIndex;
use crate::engine::matcher::{HeaderSlots, Matcher};
use crate::faults::FaultList;
use crate::s3::RequestInfo;
use timeline::{Clock, Connections, Phase, Timeline};
use crate::values::{Probability, Ramp};

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
    /// Every rule: the top-level ones, then each phase's, in file order. A rule's index here
    /// is its identity for the draw.
    rules: Vec<Rule>,
    header_slots: HeaderSlots,
    timeline: Timeline,
    safety: Safety,
    /// Access key id → isolation scope.
    scope_keys: std::collections::BTreeMap<String, String>,
}

/// What the file says about itself, before its rules.
#[derive(Debug, Default)]
pub(crate) struct Meta {
    pub name: String,
    pub description: String,
    pub seed: Option<u64>,
    pub start_at: Option<SystemTime>,
    pub repeat: bool,
    pub max_duration: Option<Duration>,
    pub scope_keys: std::collections::BTreeMap<String, String>,
    pub safety: Safety,
}

/// One phase as written: a name, a duration and its own rules.
pub(crate) struct PhaseSpec {
    pub name: String,
    pub duration: Duration,
    pub rules: Vec<Rule>,
    pub connections: Connections,
}

/// Limits that keep a drill from becoming an incident.
#[derive(Debug, Clone, Copy, Default)]
pub struct Safety {
    /// Halt every fault when the real upstream starts failing.
    pub stop_if: Option<StopCondition>,
    /// At most this many requests under a fault at once (blackholes and stalls included).
    pub max_active_faults: Option<NonZeroUsize>,
}

/// `stop_if: {upstream_error_rate: 0.2, window: 30s}`: halt when, over the last `window`,
/// at least `min_requests` reached the upstream and this share of them failed (5xx or no
/// answer). Injected faults never count: only what the upstream itself did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopCondition {
    pub upstream_error_rate: Probability,
    pub window: Duration,
    pub min_requests: u64,
}

impl Scenario {
    /// The scenario with no rules: pure passthrough.
    pub fn empty() -> Scenario {
        let meta = Meta {
            name: "passthrough".into(),
            ..Meta::default()
        };
        Scenario::compile(meta, Vec::new(), Vec::new())
    }

    /// Reads, validates and compiles a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let origin = path.display().to_string();
        let unreadable = |e: std::io::Error| ScenarioError {
            origin: origin.clone(),
            position: None,
            message: format!("cannot read the file: {e}"),
        };
        // Read one byte past the limit, not a whole mistaken multi-gigabyte file.
        let mut bytes = Vec::new();
        let file = std::fs::File::open(path).map_err(unreadable)?;
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_SCENARIO_BYTES as u64 + 1),
            &mut bytes,
        )
        .map_err(unreadable)?;
        if bytes.len() > MAX_SCENARIO_BYTES {
            return Err(ScenarioError {
                origin,
                position: None,
                message: format!("the file is larger than the limit of {MAX_SCENARIO_BYTES} bytes (1 MiB)"),
            });
        }
        let text = String::from_utf8(bytes).map_err(|e| ScenarioError {
            origin: origin.clone(),
            position: None,
            message: format!("the file is not UTF-8 text ({e})"),
        })?;
        Scenario::parse(&text, &origin)
    }

    /// Validates and compiles scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        file::parse(text, origin, &[])
    }

    /// Like [`Scenario::parse`], with rules added at run time evaluated before the file's.
    pub fn parse_with(text: &str, origin: &str, api_rules: &[ApiRule]) -> Result<Scenario, ScenarioError> {
        file::parse(text, origin, api_rules)
    }

    /// Lays the rules out on the timeline: each rule's `after`/`until` become a window in
    /// drill time (inside its phase for a phase's rule), and each phase gets its own index.
    pub(crate) fn compile(meta: Meta, top: Vec<Rule>, phases: Vec<PhaseSpec>) -> Scenario {
        let mut rules = top;
        let top_count = rules.len();
        for rule in &mut rules {
            rule.window = Window::within(&rule.trigger, Duration::ZERO, None);
        }
        let mut compiled = Vec::with_capacity(phases.len().max(1));
        let mut start = Duration::ZERO;
        for phase in phases {
            let end = start + phase.duration;
            let mut members: Vec<u32> = (0..top_count as u32).collect();
            for mut rule in phase.rules {
                rule.window = Window::within(&rule.trigger, start, Some(end));
                members.push(rules.len() as u32);
                rules.push(rule);
            }
            compiled.push(Phase {
                name: Some(phase.name),
                start,
                duration: Some(phase.duration),
                rules: members,
                index: RuleIndex::default(),
                connections: phase.connections,
            });
            start = end;
        }
        let cycle = (!compiled.is_empty()).then_some(start);
        if compiled.is_empty() {
            compiled.push(Phase {
                name: None,
                start: Duration::ZERO,
                duration: None,
                rules: (0..rules.len() as u32).collect(),
                index: RuleIndex::default(),
                connections: Connections::Accept,
            });
        }
        let mut header_slots = HeaderSlots::default();
        for rule in &mut rules {
            rule.matcher.assign_header_slots(&mut header_slots);
        }
        for phase in &mut compiled {
            phase.index = RuleIndex::build(phase.rules.iter().map(|&i| &rules[i as usize].matcher));
        }
        let timed = cycle.is_some()
            || meta.start_at.is_some()
            || meta.max_duration.is_some()
            || rules.iter().any(|r| r.window != Window::ALWAYS);
        let timeline = Timeline {
            start_at: meta.start_at,
            repeat: meta.repeat,
            max_duration: meta.max_duration,
            phases: compiled,
            cycle,
            clock: meta.start_at.map_or_else(Clock::starting_now, Clock::anchored_at),
            timed,
        };
        Scenario {
            name: meta.name,
            description: meta.description,
            seed: meta.seed.unwrap_or_else(rand::random),
            seed_given: meta.seed.is_some(),
            rules,
            header_slots,
            timeline,
            safety: meta.safety,
            scope_keys: meta.scope_keys,
        }
    }

    /// The isolation scope a request belongs to: its `x-s3chaos-scope` header, or the scope
    /// of the access key it was signed with (`scope_keys`), or none.
    pub fn request_scope<'a>(&self, req: &RequestInfo<'a>) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(scope) = req
            .headers
            .get(crate::s3::SCOPE_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            return Some(std::borrow::Cow::Borrowed(scope));
        }
        if self.scope_keys.is_empty() {
            return None;
        }
        let key = crate::s3::auth::access_key(req.headers, req.query)?;
        self.scope_keys
            .get(key.as_ref())
            .map(|s| std::borrow::Cow::Owned(s.clone()))
    }

    /// Called when this scenario replaces `old`. A new version of the same drill (same name,
    /// no `start_at` of its own) keeps the running drill's clock and each same-named rule's
    /// counters, so editing a file mid-drill neither restarts the timeline nor resets a
    /// `limit`. A different scenario starts afresh.
    pub fn carry_over(&mut self, old: &Scenario) {
        if self.name != old.name {
            return;
        }
        if self.timeline.start_at.is_none() {
            self.timeline.clock = old.timeline.clock;
        }
        for rule in &mut self.rules {
            if let Some(prev) = old.rules.iter().find(|r| r.name == rule.name) {
                rule.copy_counters(prev);
            }
        }
    }

    /// Runs this scenario's drill time `speed` times as fast as real time (see
    /// [`Clock::with_speed`]). Called by the engine before the scenario runs.
    pub fn set_clock_speed(&mut self, speed: f64) {
        self.timeline.clock = self.timeline.clock.with_speed(speed);
        if speed != 1.0 {
            self.timeline.timed = true;
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

    pub fn timeline(&self) -> &Timeline {
        &self.timeline
    }

    pub fn safety(&self) -> &Safety {
        &self.safety
    }
}

/// One compiled rule with its live counters.
#[derive(Debug)]
pub struct Rule {
    name: String,
    matcher: Matcher,
    trigger: Trigger,
    faults: FaultList,
    /// When the rule applies, in drill time; set by [`Scenario::compile`].
    window: Window,
    /// Requests the match selected (for stats).
    matched: AtomicU64,
    /// Of those, the ones inside the rule's time window: what skip, every and the draw count.
    eligible: AtomicU64,
    injected: AtomicU64,
}

/// When a matched rule fires: all the given conditions must hold.
#[derive(Debug, Clone, Default)]
pub struct Trigger {
    /// Fixed, or ramping across the rule's window.
    pub probability: Ramp<Probability>,
    /// Let the first N eligible requests through.
    pub skip: u64,
    /// Inject at most N times.
    pub limit: Option<u64>,
    /// Only every Nth eligible request (after `skip`): fully deterministic CI tests.
    pub every: Option<NonZeroU64>,
    /// Active from this long after the drill (or the rule's phase) started...
    pub after: Option<Duration>,
    /// ...until this long after it started.
    pub until: Option<Duration>,
}

/// A span of drill time, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    start: Duration,
    end: Option<Duration>,
}

impl Window {
    const ALWAYS: Window = Window {
        start: Duration::ZERO,
        end: None,
    };

    /// The trigger's `after`/`until`, counted from `origin` and cut at `limit`.
    fn within(trigger: &Trigger, origin: Duration, limit: Option<Duration>) -> Window {
        let end = match (trigger.until.map(|u| origin + u), limit) {
            (Some(u), Some(l)) => Some(u.min(l)),
            (u, l) => u.or(l),
        };
        Window {
            start: origin + trigger.after.unwrap_or_default(),
            end,
        }
    }

    fn contains(&self, t: Duration) -> bool {
        t >= self.start && self.end.is_none_or(|e| t < e)
    }

    /// How far `t` is through the window, for ramps; 0 for an endless window.
    fn progress(&self, t: Duration) -> f64 {
        match self.end {
            Some(end) if end > self.start => {
                t.saturating_sub(self.start).as_secs_f64() / (end - self.start).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

impl Rule {
    pub(crate) fn new(name: String, matcher: Matcher, trigger: Trigger, faults: FaultList) -> Rule {
        Rule {
            name,
            matcher,
            trigger,
            faults,
            window: Window::ALWAYS,
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

    /// Whether a value of this rule ramps across its window.
    pub fn ramps(&self) -> bool {
        self.trigger.probability.is_ramp() || self.faults.ramps()
    }

    /// Called for a request this rule matched, `at` being the drill time: counts it, then
    /// applies the time window, `skip`, `every`, the probability and `limit`. Returns the
    /// request's draw when the rule fires.
    pub fn roll(&self, seed: u64, index: usize, at: Duration) -> Option<Draw> {
        let t = &self.trigger;
        self.matched.fetch_add(1, Ordering::Relaxed);
        if !self.window.contains(at) {
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
        let progress = self.window.progress(at);
        let mut draw = Draw::new(seed, index, n).at(progress);
        let p = t.probability.at(progress).get();
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

    /// Gives back an injection [`Rule::roll`] counted but that did not happen (the request
    /// was left alone because of `max_active_faults`), so `limit` is not used up by it.
    pub(crate) fn uncount_injection(&self) {
        let _ = self
            .injected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    fn copy_counters(&self, from: &Rule) {
        for (to, from) in [
            (&self.matched, &from.matched),
            (&self.eligible, &from.eligible),
            (&self.injected, &from.injected),
        ] {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> RuleStats {
        RuleStats {
            name: self.name.clone(),
            matched: self.matched.load(Ordering::Relaxed),
            injected: self.injected.load(Ordering::Relaxed),
        }
    }
}
