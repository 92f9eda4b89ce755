//! A scenario compiled for requests: each rule's matcher, trigger and live counters, the
//! per-phase rule indexes, the header slots and the timeline. Built once from a
//! [`Spec`] (plain data) and shared read-only by every request; the only things that change
//! are the counters and the state of stateful faults, which a new version of the same drill
//! carries over ([`Scenario::carry_over`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::RuleStats;
use super::index::RuleIndex;
use super::matcher::{HeaderSlots, Matcher};
use super::nth::NthCall;
use super::timeline::{Clock, Phase, Timeline};
use crate::draw::Draw;
use crate::faults::{Applies, FaultList, FaultSpec, FaultState};
use crate::s3::RequestInfo;
use crate::scenario::{self, Connections, Expect, RuleSpec, Safety, ScenarioError, Spec, Trigger};

/// A validated, compiled scenario.
#[derive(Debug)]
pub struct Scenario {
    name: String,
    description: String,
    seed: u64,
    seed_given: bool,
    /// Every rule: the top-level ones, then each phase's, in file order. Shared with the
    /// next version of the drill when only the rules added at run time change, so adding one
    /// compiles one rule and its counters simply go on.
    rules: Vec<Arc<Rule>>,
    /// How many of `rules` are top-level (in every phase): the first ones.
    top: usize,
    /// Built from the running version by [`Scenario::with_top_rule`] or
    /// [`Scenario::without_top_rules`]: every rule is shared with it or new, so there is
    /// nothing to carry over.
    derived: bool,
    header_slots: HeaderSlots,
    timeline: Timeline,
    safety: Safety,
    /// Access key id → isolation scope.
    scope_keys: std::collections::BTreeMap<String, String>,
    /// What the drill expects of its clients (for the verdicts).
    expect: Arc<Expect>,
}

impl Scenario {
    /// The scenario with no rules: pure passthrough.
    pub fn empty() -> Scenario {
        Scenario::compile(Spec::empty())
    }

    /// Reads, validates and compiles a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        scenario::load(path).map(Scenario::compile)
    }

    /// Validates and compiles scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Scenario, ScenarioError> {
        scenario::parse(text, origin).map(Scenario::compile)
    }

    /// Lays the rules out on the timeline: each rule's `after`/`until` become a window in
    /// drill time (inside its phase for a phase's rule), and each phase gets its own index.
    pub fn compile(spec: Spec) -> Scenario {
        let Spec { meta, rules, phases } = spec;
        let mut header_slots = HeaderSlots::default();
        let mut compiled: Vec<Arc<Rule>> = rules
            .into_iter()
            .map(|r| {
                let window = Window::within(&r.trigger, Duration::ZERO, None);
                Arc::new(Rule::compile(r, window, &mut header_slots))
            })
            .collect();
        let top = compiled.len();
        let mut laid_out = Vec::with_capacity(phases.len().max(1));
        let mut start = Duration::ZERO;
        for phase in phases {
            let end = start + phase.duration;
            let mut members: Vec<u32> = (0..top as u32).collect();
            for rule in phase.rules {
                let window = Window::within(&rule.trigger, start, Some(end));
                members.push(compiled.len() as u32);
                compiled.push(Arc::new(Rule::compile(rule, window, &mut header_slots)));
            }
            laid_out.push(Phase {
                name: Some(phase.name),
                start,
                duration: Some(phase.duration),
                rules: members,
                index: RuleIndex::default(),
                connections: phase.connections,
            });
            start = end;
        }
        let cycle = (!laid_out.is_empty()).then_some(start);
        if laid_out.is_empty() {
            laid_out.push(Phase {
                name: None,
                start: Duration::ZERO,
                duration: None,
                rules: (0..compiled.len() as u32).collect(),
                index: RuleIndex::default(),
                connections: Connections::Accept,
            });
        }
        for phase in &mut laid_out {
            phase.index = RuleIndex::build(phase.rules.iter().map(|&i| &compiled[i as usize].matcher));
        }
        let timed = cycle.is_some()
            || meta.start_at.is_some()
            || meta.max_duration.is_some()
            || compiled.iter().any(|r| r.window != Window::ALWAYS);
        let timeline = Timeline {
            start_at: meta.start_at,
            repeat: meta.repeat,
            max_duration: meta.max_duration,
            phases: laid_out,
            cycle,
            clock: meta.start_at.map_or_else(Clock::starting_now, Clock::anchored_at),
            timed,
        };
        Scenario {
            name: meta.name,
            description: meta.description,
            seed: meta.seed.unwrap_or_else(rand::random),
            seed_given: meta.seed.is_some(),
            rules: compiled,
            top,
            derived: false,
            header_slots,
            timeline,
            safety: meta.safety,
            scope_keys: meta.scope_keys,
            expect: Arc::new(meta.expect),
        }
    }

    /// This drill with one more top-level rule, at position `at` among the top-level rules
    /// (a rule added through the admin API). Only the new rule is compiled: every other rule
    /// is shared with `self`, counters and fault state included, and the indexes are rebuilt
    /// from pointers.
    pub fn with_top_rule(&self, at: usize, spec: RuleSpec) -> Scenario {
        let mut slots = self.header_slots.clone();
        let window = Window::within(&spec.trigger, Duration::ZERO, None);
        let rule = Arc::new(Rule::compile(spec, window, &mut slots));
        let timed = self.timeline.timed || rule.window != Window::ALWAYS;
        let mut top: Vec<Arc<Rule>> = self.rules[..self.top].to_vec();
        top.insert(at.min(top.len()), rule);
        self.with_top(top, slots, timed)
    }

    /// This drill without the top-level rules `drop` names; every other rule is shared.
    pub fn without_top_rules(&self, drop: impl Fn(&str) -> bool) -> Scenario {
        let top: Vec<Arc<Rule>> = self.rules[..self.top]
            .iter()
            .filter(|r| !drop(&r.name))
            .cloned()
            .collect();
        self.with_top(top, self.header_slots.clone(), self.timeline.timed)
    }

    /// This drill with `top` as its top-level rules; the phases keep their own rules.
    fn with_top(&self, top: Vec<Arc<Rule>>, header_slots: HeaderSlots, timed: bool) -> Scenario {
        let old_top = self.top as u32;
        let new_top = top.len() as u32;
        let mut rules = top;
        rules.extend(self.rules[self.top..].iter().cloned());
        let phases = self
            .timeline
            .phases
            .iter()
            .map(|p| {
                let members: Vec<u32> = (0..new_top)
                    .chain(
                        p.rules
                            .iter()
                            .filter(|&&i| i >= old_top)
                            .map(|&i| i - old_top + new_top),
                    )
                    .collect();
                Phase {
                    name: p.name.clone(),
                    start: p.start,
                    duration: p.duration,
                    index: RuleIndex::build(members.iter().map(|&i| &rules[i as usize].matcher)),
                    rules: members,
                    connections: p.connections,
                }
            })
            .collect();
        let t = &self.timeline;
        Scenario {
            name: self.name.clone(),
            description: self.description.clone(),
            seed: self.seed,
            seed_given: self.seed_given,
            top: new_top as usize,
            derived: true,
            rules,
            header_slots,
            timeline: Timeline {
                start_at: t.start_at,
                repeat: t.repeat,
                max_duration: t.max_duration,
                phases,
                cycle: t.cycle,
                clock: t.clock,
                timed,
            },
            safety: self.safety,
            scope_keys: self.scope_keys.clone(),
            expect: self.expect.clone(),
        }
    }

    /// What the drill expects of its clients (its `expect:`), and each rule's own.
    pub fn expectations(&self) -> (&Expect, impl Iterator<Item = (&str, &Expect)>) {
        let rules = self.rules.iter().filter_map(|r| Some((r.name(), r.expect()?)));
        (&self.expect, rules)
    }

    /// The isolation scope a request belongs to: its `x-s3chaos-scope` header, or the scope
    /// of the access key it was signed with (`scope_keys`), or none.
    pub fn request_scope<'a>(&self, req: &RequestInfo<'a>) -> Option<std::borrow::Cow<'a, str>> {
        if let Some(scope) = req.headers.get(crate::s3::SCOPE_HEADER).and_then(|v| v.to_str().ok()) {
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
    /// counters and fault state, so editing a file mid-drill (or adding a rule through the
    /// admin API) neither restarts the timeline, nor resets a `limit`, nor refills a rate
    /// limit's token buckets. A different scenario starts afresh.
    pub fn carry_over(&mut self, old: &Scenario) {
        if self.name != old.name || self.derived {
            return;
        }
        if self.timeline.start_at.is_none() {
            self.timeline.clock = old.timeline.clock;
        }
        // A rule shared with `old` (see [`Scenario::with_top_rule`]) is its own continuation;
        // only the ones compiled afresh take over from their namesakes.
        let mut by_name: Option<std::collections::HashMap<&str, &Rule>> = None;
        for rule in &mut self.rules {
            let Some(fresh) = Arc::get_mut(rule) else {
                continue;
            };
            let by_name = by_name.get_or_insert_with(|| old.rules.iter().map(|r| (r.name.as_str(), &**r)).collect());
            if let Some(prev) = by_name.get(fresh.name.as_str()) {
                fresh.copy_counters(prev);
                fresh.take_state(prev);
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

    pub fn rules(&self) -> &[Arc<Rule>] {
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
    /// Each fault's state, for the stateful ones (in the order of `faults`): the engine's,
    /// carried over to later versions of the rule.
    states: Vec<Option<FaultState>>,
    /// When the rule applies, in drill time; set by [`Scenario::compile`].
    window: Window,
    /// The rule's identity for the draw: from its name, so that adding or removing another
    /// rule never changes which requests this one faults in a seeded drill.
    draw_id: u64,
    /// Requests the match selected (for stats).
    matched: AtomicU64,
    /// Of those, the ones inside the rule's time window: what skip, every and the draw count.
    eligible: AtomicU64,
    injected: AtomicU64,
    /// What the rule expects of the calls it faulted (over the drill's).
    expect: Option<Expect>,
    /// Switched off from the admin API (the dashboard): it matches and counts, never fires.
    disabled: std::sync::atomic::AtomicBool,
    /// `nth: N`: the call it is for, and the count of calls before it.
    nth: Option<NthCall>,
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
    fn compile(spec: RuleSpec, window: Window, slots: &mut HeaderSlots) -> Rule {
        let mut matcher = Matcher::compile(spec.matcher);
        matcher.assign_header_slots(slots);
        Rule {
            draw_id: Draw::rule_id(&spec.name),
            name: spec.name,
            matcher,
            nth: spec.trigger.nth.map(NthCall::new),
            trigger: spec.trigger,
            states: spec.faults.iter().map(FaultSpec::new_state).collect(),
            faults: spec.faults,
            expect: spec.expect,
            disabled: Default::default(),
            window,
            matched: AtomicU64::new(0),
            eligible: AtomicU64::new(0),
            injected: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the rule expects of the calls it faulted (`expect:` on the rule).
    pub fn expect(&self) -> Option<&Expect> {
        self.expect.as_ref()
    }

    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    pub fn faults(&self) -> &FaultList {
        &self.faults
    }

    /// Each fault with its state (for the stateful ones).
    pub fn faults_with_state(&self) -> impl Iterator<Item = (&FaultSpec, Option<&FaultState>)> {
        self.faults.iter().zip(self.states.iter().map(Option::as_ref))
    }

    /// Whether a value of this rule ramps across its window.
    pub fn ramps(&self) -> bool {
        self.trigger.probability.is_ramp() || self.faults.ramps()
    }

    /// Called for a request this rule matched, `at` being the drill time: counts it, then
    /// applies the time window, `skip`, `every`, the probability, what the faults say of this
    /// request ([`crate::faults::Fault::applies`]: a rate limit under its rate does not fire)
    /// and `limit`. Returns the request's draw when the rule fires ([`Applies::Fire`]), or
    /// when its faults only watch the request ([`Applies::Watch`], not counted).
    pub fn roll(&self, seed: u64, at: Duration, req: &RequestInfo<'_>) -> Option<(Draw, Applies)> {
        let t = &self.trigger;
        self.matched.fetch_add(1, Ordering::Relaxed);
        if !self.window.contains(at) || self.disabled.load(Ordering::Relaxed) {
            return None;
        }
        let n = self.eligible.fetch_add(1, Ordering::Relaxed);
        if let Some(nth) = &self.nth {
            // Validation keeps `skip` and `every` off an `nth` rule.
            if !nth.admits(req, at) {
                return None;
            }
        } else if n < t.skip {
            return None;
        } else if let Some(every) = t.every
            && !(n - t.skip + 1).is_multiple_of(every.get())
        {
            return None;
        }
        let progress = self.window.progress(at);
        let mut draw = Draw::new(seed, self.draw_id, n).at(progress);
        let p = t.probability.at(progress).get();
        if p < 1.0 && draw.unit() >= p {
            return None;
        }
        let mut fires = false;
        for (fault, state) in self.faults_with_state() {
            match fault.applies(req, state) {
                Applies::Skip => return None,
                Applies::Watch => {}
                Applies::Fire => fires = true,
            }
        }
        if !fires {
            return Some((draw, Applies::Watch));
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
        Some((draw, Applies::Fire))
    }

    /// Whether the rule counts logical calls (`nth:`), even on requests it cannot fire on.
    pub fn counts_calls(&self) -> bool {
        self.nth.is_some()
    }

    /// A request this `nth` rule matched that another rule's terminal fault has ended: it is
    /// counted (matched, and as a call), never faulted.
    pub fn count_call(&self, at: Duration, req: &RequestInfo<'_>) {
        self.matched.fetch_add(1, Ordering::Relaxed);
        if let Some(nth) = &self.nth
            && self.window.contains(at)
            && !self.disabled.load(Ordering::Relaxed)
        {
            self.eligible.fetch_add(1, Ordering::Relaxed);
            let _ = nth.admits(req, at);
        }
    }

    /// Gives back an injection [`Rule::roll`] counted but that did not happen (the request
    /// was left alone because of `max_active_faults`), so `limit` is not used up by it.
    pub(crate) fn uncount_injection(&self) {
        let _ = self
            .injected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Takes over `from`'s fault state where the same kind of fault stands: a rule edited
    /// mid-drill keeps its token buckets and its memory of writes.
    fn take_state(&mut self, from: &Rule) {
        for (fault, state) in self.faults.iter().zip(self.states.iter_mut()) {
            if state.is_none() {
                continue;
            }
            if let Some((_, Some(old))) = from.faults_with_state().find(|(f, _)| f.kind() == fault.kind()) {
                *state = Some(old.clone());
            }
        }
    }

    /// Switches the rule off (it still matches and counts, never fires) or on again.
    pub fn set_enabled(&self, on: bool) {
        self.disabled.store(!on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        !self.disabled.load(Ordering::Relaxed)
    }

    /// Counters and the on/off switch go on in the rule's next version (a reload).
    fn copy_counters(&self, from: &Rule) {
        self.disabled
            .store(from.disabled.load(Ordering::Relaxed), Ordering::Relaxed);
        if let (Some(to), Some(from)) = (&self.nth, &from.nth) {
            to.take_over(from);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ScenarioError;

    fn err(text: &str) -> ScenarioError {
        Scenario::parse(text, "s.yaml").unwrap_err()
    }

    #[test]
    fn the_issue_example_loads() {
        let text = r#"
name: get-throttling
description: S3 throttles reads on the hot prefix
seed: 42
rules:
  - name: throttle-reads
    match:
      operation: [GetObject, HeadObject]
      method: GET
      bucket: photos
      key: "thumbs/*"
      header: {x-tenant: blue}
    probability: 0.3
    skip: 0
    limit: 100
    fault:
      error: SlowDown
  - name: slow-writes
    match: {operation: [PutObject, UploadPart]}
    fault:
      latency: 250ms
  - name: flaky-and-slow
    fault:
      latency: {min: 50ms, max: 200ms}
      error: {status: 500, code: InternalError, message: "We encountered an internal error.", retry_after: 1s}
  - name: dead-bucket
    match: {bucket: archive}
    fault: blackhole
  - name: rst
    match: {operation: UploadPart}
    probability: 0.05
    fault: reset
"#;
        let s = Scenario::parse(text, "s.yaml").unwrap();
        assert_eq!(s.name(), "get-throttling");
        assert_eq!(s.seed(), 42);
        let names: Vec<_> = s.rules().iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            ["throttle-reads", "slow-writes", "flaky-and-slow", "dead-bucket", "rst"]
        );
    }

    #[test]
    fn another_rule_coming_or_going_never_changes_which_requests_a_seeded_rule_faults() {
        let file = crate::scenario::parse(
            "name: s\nseed: 7\nrules:\n  - {name: coin, probability: 0.5, fault: reset}\n",
            "s",
        )
        .unwrap();
        let other = crate::scenario::parse("name: o\nrules:\n  - {match: {bucket: none}, fault: reset}\n", "o")
            .unwrap()
            .rules
            .remove(0);
        let alone = Scenario::compile(file.clone());
        // As when a rule is added through the admin API: it comes before the file's.
        let second = Scenario::compile(crate::scenario::Spec {
            rules: vec![other, file.rules[0].clone()],
            ..file
        });
        assert_eq!(second.rules()[1].name(), "coin");
        let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        let req = crate::s3::Classifier::default().classify(&method, &uri, &headers);
        let pattern = |s: &Scenario| -> Vec<bool> {
            let coin = s.rules().iter().find(|r| r.name() == "coin").unwrap();
            (0..200)
                .map(|_| coin.roll(s.seed(), Duration::ZERO, &req).is_some())
                .collect()
        };
        let a = pattern(&alone);
        assert!(a.iter().any(|&f| f) && a.iter().any(|&f| !f), "a coin: {a:?}");
        assert_eq!(
            a,
            pattern(&second),
            "`coin` faults the same requests, second in the list or first"
        );
    }

    #[test]
    fn errors_name_line_and_column() {
        let e = err("name: x\nrules:\n  - fault: {error: SlowDown}\n    probability: 1.7\n");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");
        assert!(e.message.contains("probability must be between 0 and 1"), "{e}");
        assert!(e.to_string().starts_with("s.yaml:4:"), "{e}");

        let e = err("name: x\nrules:\n  - match: {operation: [GetObject, GetObjects]}\n    fault: reset\n");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert!(e.message.contains("unknown S3 operation `GetObjects`"), "{e}");

        let e = err("name: x\nrules:\n  - fault: {error: Slowdown}\n");
        assert!(e.message.contains("unknown S3 error code `Slowdown`"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");

        let e = err("name: x\nrules:\n  - fault: reset\n    probabilty: 0.5\n");
        assert!(e.message.contains("unknown field `probabilty`"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(4), "{e}");

        let e = err("name: x\nrules:\n  - {name: a, fault: reset}\n  - {name: a, fault: blackhole}\n");
        assert!(e.message.contains("two rules are named `a`"), "{e}");

        let e = err("name: x\nrules:\n  - match: {method: FETCH}\n    fault: reset\n");
        assert!(e.message.contains("unknown HTTP method `FETCH`"), "{e}");

        let e = err("rules: []\n");
        assert!(e.message.contains("missing field `name`"), "{e}");

        let e = err("name: x\nrules:\n  - fault: {latency: 5}\n");
        assert!(e.message.contains("invalid duration"), "{e}");

        let e = err("name: [unclosed\n");
        assert!(e.position.is_some(), "{e}");
    }

    #[test]
    fn unnamed_rules_get_positional_names() {
        let s = Scenario::parse("name: x\nrules:\n  - fault: reset\n  - fault: blackhole\n", "s").unwrap();
        assert_eq!(s.rules()[1].name(), "rule-2");
        assert!(!s.seed_given());
    }
}

#[cfg(test)]
mod phase_tests {
    use super::*;
    use crate::scenario::ScenarioError;

    fn err(text: &str) -> ScenarioError {
        Scenario::parse(text, "p.yaml").unwrap_err()
    }

    #[test]
    fn the_issue_drill_loads() {
        let text = r#"
name: us-east-1-2017
start_at: 2026-12-01T14:00:00Z
repeat: false
max_duration: 30m
max_active_faults: 50
stop_if: {upstream_error_rate: 0.2, window: 30s}
rules:
  - {name: slow, fault: {latency: 5ms}}
phases:
  - name: healthy
    duration: 2m
  - name: brownout
    duration: 5m
    rules:
      - name: rising-errors
        match: {operation: [GetObject, PutObject]}
        probability: {from: 0.05, to: 0.5}
        fault: {error: InternalError}
      - name: slower
        fault: {latency: {from: 50ms, to: 2s}, bandwidth: {from: 10MiB/s, to: 64KiB/s}}
  - name: outage
    duration: 10m
    rules:
      - {name: down, fault: {error: ServiceUnavailable}}
"#;
        let s = Scenario::parse(text, "p.yaml").unwrap();
        let names: Vec<_> = s.rules().iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            ["slow", "brownout/rising-errors", "brownout/slower", "outage/down"]
        );
        let phases = s.timeline().phases();
        assert_eq!(phases.len(), 3);
        assert_eq!(
            phases[1].rules,
            [0, 1, 2],
            "top-level rules first, then the phase's own"
        );
        assert_eq!(phases[2].end(), Some(Duration::from_secs(17 * 60)));
        let stop = s.safety().stop_if.unwrap();
        assert_eq!((stop.window, stop.min_requests), (Duration::from_secs(30), 10));
        assert_eq!(s.safety().max_active_faults.map(|n| n.get()), Some(50));
        assert_eq!(s.timeline().max_duration(), Some(Duration::from_secs(1800)));
    }

    #[test]
    fn drill_mistakes_name_line_and_column() {
        let e = err("name: x\nrules:\n  - name: r\n    probability: {from: 0.1, to: 0.9}\n    fault: reset\n");
        assert!(e.message.contains("has no end to ramp to"), "{e}");
        assert!(e.position.is_some(), "{e}");

        let e = err("name: x\nphases:\n  - {name: a, duration: 1s}\n  - {name: a, duration: 2s}\n");
        assert!(e.message.contains("two phases are named `a`"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}: points at the list");

        let e = err("name: x\nphases:\n  - {name: a, duration: 0s}\n");
        assert!(e.message.contains("longer than zero"), "{e}");

        let e = err("name: x\nphases:\n  - {name: a}\n");
        assert!(e.message.contains("missing field `duration`"), "{e}");

        let e = err("name: x\nstart_at: tomorrow\n");
        assert!(e.message.contains("invalid time `tomorrow`"), "{e}");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");

        let e = err("name: x\nrules:\n  - {name: a/b, fault: reset}\n");
        assert!(e.message.contains("without `/`"), "{e}");

        let e = err("name: x\nstop_if: {upstream_error_rate: 2}\n");
        assert!(e.message.contains("probability must be between 0 and 1"), "{e}");

        let e = err("name: x\nrules:\n  - {match: {attempt: [1, 0]}, fault: reset}\n");
        assert!(e.message.contains("attempts count from 1"), "{e}");
        Scenario::parse(
            "name: x\nrules:\n  - {match: {attempt: 2, access_key: [AKIA1, AKIA2]}, fault: reset}\n",
            "p",
        )
        .unwrap();

        let e = err("name: x\nmax_active_faults: 0\n");
        assert_eq!(e.position.map(|p| p.0), Some(2), "{e}");

        let e = err("name: x\nrepeat: true\n");
        assert!(e.message.contains("needs `phases:`"), "{e}");

        // A ramp with an end outside phases is fine.
        Scenario::parse(
            "name: x\nrules:\n  - {until: 1m, fault: {latency: {from: 1ms, to: 1s}}}\n",
            "p",
        )
        .unwrap();
    }
}
