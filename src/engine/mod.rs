//! The fault engine: for each request, decides once which rules fire, before any fault acts.
//!
//! The running scenario sits behind an [`ArcSwap`]: every request reads it without a lock,
//! and a reload swaps in a new compiled scenario atomically (requests in flight keep the one
//! they started with). Matching is precompiled: rules are indexed by operation, exact bucket and
//! exact header value ([`index`]), so a rule for another bucket or tenant costs nothing, and
//! globs were compiled at load time.
//!
//! Randomness is counter-based rather than a shared RNG: the `n`-th request a rule matches
//! draws from `hash(seed, rule, n)`. Same seed and same request sequence give the same faults,
//! with no lock on the hot path.
//!
//! Time enters once per request, and only for a scenario that needs it: the timeline says
//! which phase runs (so only that phase's index is searched) and how far through its span a
//! rule is (for ramps). The safety controls sit here too, before any rule is looked at:
//! the kill switch ([`Engine::halt`]), `--max-duration`, and `max_active_faults`, whose
//! slot a [`Decision`] holds until the faulted request is done.

pub mod compiled;
pub mod index;
pub mod matcher;
pub mod nth;
pub mod timeline;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

pub use crate::draw::Draw;

use crate::s3::RequestInfo;
pub use compiled::{Rule, Scenario};
use timeline::{Connections, DrillState};

/// The rules that fired for one request, in evaluation order, and the rules whose faults
/// only watch it. Holds the scenario it was decided under, so a reload cannot change a
/// request halfway, and the request's place among the active faults until it is dropped
/// (keep it alive while the fault acts).
#[derive(Debug)]
pub struct Decision {
    scenario: Arc<Scenario>,
    /// The phase it was decided in (an index into that scenario's timeline).
    phase: Option<usize>,
    fired: Vec<Fired>,
    /// `None` when no rule injects (only watchers): such a request is not under a fault.
    _slot: Option<ActiveSlot>,
}

#[derive(Debug)]
struct Fired {
    rule: usize,
    draw: Draw,
    /// The rule's faults only watch this request (`stale_reads` on a write): nothing is
    /// injected, logged or counted for it.
    watch: bool,
}

impl Decision {
    /// Each rule that injects into this request, with its draw.
    pub fn fired(&self) -> impl Iterator<Item = (&Rule, Draw)> {
        self.rules(false)
    }

    /// The injecting rules, and with `watchers` the watching ones too, with their draws.
    pub fn rules(&self, watchers: bool) -> impl Iterator<Item = (&Rule, Draw)> {
        self.fired
            .iter()
            .filter(move |f| watchers || !f.watch)
            .map(|f| (&*self.scenario.rules()[f.rule], f.draw.clone()))
    }

    /// Whether any rule injects (rather than only watches).
    pub fn injects(&self) -> bool {
        self.fired.iter().any(|f| !f.watch)
    }

    /// The name of the drill phase the request was decided in.
    pub fn phase_name(&self) -> Option<&str> {
        self.scenario.timeline().phases().get(self.phase?)?.name()
    }
}

/// One request counted among the active faults until dropped.
#[derive(Debug)]
struct ActiveSlot(Arc<AtomicUsize>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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

/// The `--time-scale` values s3chaos accepts: from a million times faster (a week-long
/// drill in 0.6 s) to a million times slower. Outside this, drill time would overflow or
/// stand still.
pub const TIME_SCALE: std::ops::RangeInclusive<f64> = 1e-6..=1e6;

/// How the proxy runs the engine, from the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineOptions {
    /// Decide and log as usual, inject nothing.
    pub dry_run: bool,
    /// After this long from start, every fault stops (`--max-duration`).
    pub max_duration: Option<Duration>,
    /// Drill seconds per real second is `1 / time_scale` (`--time-scale 0.01` plays an hour
    /// in 36 s). Phase durations, `after`/`until` and `max_duration` in the file scale; fault
    /// values (latencies, rates) and `--max-duration` do not. `None` means 1.
    pub time_scale: Option<f64>,
    /// Let a request ask for its own fault with `x-s3chaos-fault` (as Envoy's fault headers).
    pub allow_header_faults: bool,
}

/// Distinct `x-s3chaos-fault` values whose compiled rule (and fault state) is kept.
const HEADER_FAULTS_KEPT: usize = 256;

pub struct Engine {
    current: ArcSwap<Scenario>,
    /// Header-asked faults, compiled once per distinct value ([`Engine::header_scenario`]).
    header_faults: Mutex<std::collections::HashMap<String, Arc<Scenario>>>,
    options: EngineOptions,
    /// `started + max_duration`, when there is one.
    deadline: Option<Instant>,
    halted: AtomicBool,
    halt_reason: Mutex<Option<String>>,
    /// Requests under a fault right now.
    active: Arc<AtomicUsize>,
    /// Requests that would have been faulted but for `max_active_faults`.
    capped: AtomicU64,
    /// Whether the running scenario has a stop condition, so requests tally the upstream.
    watch_upstream: AtomicBool,
    upstream_requests: AtomicU64,
    upstream_failures: AtomicU64,
}

/// What the upstream itself did so far: for the stop condition, never counting injections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpstreamTally {
    pub requests: u64,
    pub failures: u64,
}

impl Engine {
    pub fn new(scenario: Scenario) -> Engine {
        Engine::with_options(scenario, EngineOptions::default())
    }

    pub fn with_options(mut scenario: Scenario, mut options: EngineOptions) -> Engine {
        // The command line refuses a scale out of range; a library caller gets it clamped.
        options.time_scale = options.time_scale.map(|s| {
            if s.is_finite() {
                s.clamp(*TIME_SCALE.start(), *TIME_SCALE.end())
            } else {
                1.0
            }
        });
        if let Some(scale) = options.time_scale {
            scenario.set_clock_speed(1.0 / scale);
        }
        let watch = scenario.safety().stop_if.is_some();
        Engine {
            current: ArcSwap::from_pointee(scenario),
            header_faults: Mutex::default(),
            options,
            deadline: options.max_duration.map(|d| Instant::now() + d),
            halted: AtomicBool::new(false),
            halt_reason: Mutex::new(None),
            active: Arc::new(AtomicUsize::new(0)),
            capped: AtomicU64::new(0),
            watch_upstream: AtomicBool::new(watch),
            upstream_requests: AtomicU64::new(0),
            upstream_failures: AtomicU64::new(0),
        }
    }

    pub fn options(&self) -> EngineOptions {
        self.options
    }

    /// Replaces the running scenario for every request that starts after this call; requests
    /// in flight finish under the one they started with. A new version of the running drill
    /// keeps its clock and counters (see [`Scenario::carry_over`]).
    pub fn replace(&self, mut scenario: Scenario) {
        if let Some(scale) = self.options.time_scale {
            scenario.set_clock_speed(1.0 / scale);
        }
        scenario.carry_over(&self.current.load());
        self.watch_upstream
            .store(scenario.safety().stop_if.is_some(), Ordering::Relaxed);
        self.current.store(Arc::new(scenario));
    }

    pub fn scenario(&self) -> Arc<Scenario> {
        self.current.load_full()
    }

    /// True when no rule can fire: the proxy then skips deciding entirely.
    pub fn is_idle(&self) -> bool {
        self.halted.load(Ordering::Relaxed)
            || (self.current.load().rules().is_empty() && !self.options.allow_header_faults)
    }

    /// The kill switch: every fault stops for new requests at once; traffic keeps flowing.
    /// Returns false if it was already halted.
    pub fn halt(&self, reason: impl Into<String>) -> bool {
        let mut slot = self.halt_reason.lock().unwrap_or_else(|e| e.into_inner());
        let was = self.halted.swap(true, Ordering::SeqCst);
        if !was {
            *slot = Some(reason.into());
        }
        !was
    }

    /// Undoes [`Engine::halt`]. Returns false if it was not halted.
    pub fn resume(&self) -> bool {
        let mut slot = self.halt_reason.lock().unwrap_or_else(|e| e.into_inner());
        *slot = None;
        self.halted.swap(false, Ordering::SeqCst)
    }

    /// Why faults are halted, if they are.
    pub fn halted(&self) -> Option<String> {
        if !self.halted.load(Ordering::SeqCst) {
            return None;
        }
        self.halt_reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Where the running scenario's drill stands now; `Expired` also once `--max-duration`
    /// has passed.
    pub fn state(&self) -> DrillState {
        self.state_of(&self.current.load())
    }

    /// Where `scenario`'s drill stands now. Callers that also read the scenario's phases load
    /// the scenario once and pass it here, so a reload in between cannot pair one version's
    /// phase number with another version's phases.
    pub fn state_of(&self, scenario: &Scenario) -> DrillState {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) {
            return DrillState::Expired;
        }
        scenario.timeline().state(now)
    }

    /// The running scenario and where its drill stands, from one load.
    pub fn scenario_and_state(&self) -> (Arc<Scenario>, DrillState) {
        let scenario = self.current.load_full();
        let state = self.state_of(&scenario);
        (scenario, state)
    }

    /// The name of the phase running now, if any.
    pub fn phase_name(&self) -> Option<String> {
        let (scenario, state) = self.scenario_and_state();
        match state {
            DrillState::Running { phase, .. } => scenario.timeline().phases().get(phase)?.name().map(str::to_owned),
            _ => None,
        }
    }

    /// What the listener should do with connections now: the running phase's
    /// `refuse_connections` / `close_connections`, unless halted or over.
    pub fn connections(&self) -> Connections {
        if self.halted.load(Ordering::Relaxed) {
            return Connections::Accept;
        }
        let (scenario, state) = self.scenario_and_state();
        match state {
            DrillState::Running { phase, .. } => scenario
                .timeline()
                .phases()
                .get(phase)
                .map_or(Connections::Accept, |p| p.connections()),
            _ => Connections::Accept,
        }
    }

    /// Requests under a fault right now.
    pub fn active_faults(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Requests left unfaulted because `max_active_faults` requests already were.
    pub fn capped(&self) -> u64 {
        self.capped.load(Ordering::Relaxed)
    }

    /// Whether the handler should report upstream outcomes ([`Engine::record_upstream`]).
    #[inline]
    pub fn watches_upstream(&self) -> bool {
        self.watch_upstream.load(Ordering::Relaxed)
    }

    /// One request answered by the upstream (or not: `failed` is a 5xx or no answer).
    pub fn record_upstream(&self, failed: bool) {
        self.upstream_requests.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.upstream_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn upstream_tally(&self) -> UpstreamTally {
        UpstreamTally {
            requests: self.upstream_requests.load(Ordering::Relaxed),
            failures: self.upstream_failures.load(Ordering::Relaxed),
        }
    }

    /// Decides which rules fire for `req`. `None`, the common case, allocates nothing.
    pub fn decide(&self, req: &RequestInfo<'_>) -> Option<Decision> {
        if self.options.allow_header_faults
            && !self.halted.load(Ordering::Relaxed)
            && let Some(asked) = req.headers.get(crate::s3::FAULT_HEADER)
        {
            return self.header_fault(asked, req);
        }
        let scenario = self.current.load();
        if scenario.rules().is_empty() || self.halted.load(Ordering::Relaxed) {
            return None;
        }
        let (phase_index, at) = scenario.timeline().locate()?;
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let phase = &scenario.timeline().phases()[phase_index];
        if phase.rules.is_empty() {
            return None;
        }
        let mut fired: Vec<Fired> = Vec::new();
        {
            let scope = scenario.request_scope(req);
            let header_values = scenario.header_slots().values(req.headers);
            let lists = phase.index.candidates(req, &header_values);
            // Once a terminal fault has fired no later rule fires, but `nth` rules still
            // count the call: their ordinal must not depend on what other rules did.
            let mut ended = false;
            for position in index::merge_sorted(&lists) {
                let index = phase.rules[position] as usize;
                let rule = &scenario.rules()[index];
                if ended && !rule.counts_calls() {
                    continue;
                }
                if !rule.matcher().matches(req, &header_values, scope.as_deref()) {
                    continue;
                }
                if ended {
                    rule.count_call(at, req);
                    continue;
                }
                if let Some((draw, applies)) = rule.roll(scenario.seed(), at, req) {
                    let watch = applies == crate::faults::Applies::Watch;
                    fired.push(Fired {
                        rule: index,
                        draw,
                        watch,
                    });
                    if !watch && rule.faults().is_terminal() {
                        ended = true;
                    }
                }
            }
        }
        if fired.is_empty() {
            return None;
        }
        let slot = if fired.iter().any(|f| !f.watch) {
            let Some(slot) = self.take_slot(&scenario) else {
                for f in fired.iter().filter(|f| !f.watch) {
                    scenario.rules()[f.rule].uncount_injection();
                }
                self.capped.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            Some(slot)
        } else {
            None
        };
        let decision = Decision {
            scenario: arc_swap::Guard::into_inner(scenario),
            phase: Some(phase_index),
            fired,
            _slot: slot,
        };
        if self.options.dry_run {
            for (rule, _) in decision.fired() {
                let faults: Vec<String> = rule.faults().iter().map(|f| f.describe()).collect();
                tracing::info!(
                    target: "s3chaos::fault",
                    rule = rule.name(),
                    fault = %faults.join(", "),
                    operation = %req.operation,
                    bucket = req.bucket.as_deref().unwrap_or(""),
                    key = req.key.as_deref().unwrap_or(""),
                    "dry run: would inject"
                );
            }
            return None;
        }
        Some(decision)
    }

    /// The fault a request asked for in `x-s3chaos-fault`: an S3 error code (`SlowDown`) or a
    /// scenario's `fault:` value (`reset`, `{latency: 2s}`), compiled for this request only.
    /// A header that does not parse is ignored, with a warning.
    fn header_fault(&self, asked: &http::HeaderValue, req: &RequestInfo<'_>) -> Option<Decision> {
        let asked = asked.to_str().ok()?.trim();
        let fault = if crate::s3::ErrorCode::lookup(asked).is_some() {
            format!("{{error: {asked}}}")
        } else {
            asked.to_owned()
        };
        let scenario = match self.header_scenario(asked, &fault) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(
                    header = asked,
                    "ignoring an x-s3chaos-fault header that is not a fault: {}",
                    e.message
                );
                return None;
            }
        };
        let (draw, applies) = scenario.rules()[0].roll(scenario.seed(), Duration::ZERO, req)?;
        let watch = applies == crate::faults::Applies::Watch;
        if self.options.dry_run {
            tracing::info!(target: "s3chaos::fault", header = asked, operation = %req.operation, "dry run: would inject the fault the request asked for");
            return None;
        }
        tracing::debug!(operation = %req.operation, header = asked, "fault asked for by the request");
        Some(Decision {
            scenario,
            phase: None,
            fired: vec![Fired { rule: 0, draw, watch }],
            _slot: (!watch).then(|| self.take_slot_unbounded()),
        })
    }

    /// The one-rule scenario a header asks for, compiled once per distinct header value and
    /// kept (at most [`HEADER_FAULTS_KEPT`]), so its fault state lives across requests: a
    /// header-asked `rate_limit` keeps its token bucket, `stale_reads` its memory.
    fn header_scenario(&self, asked: &str, fault: &str) -> Result<Arc<Scenario>, crate::scenario::ScenarioError> {
        let mut kept = self.header_faults.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(scenario) = kept.get(asked) {
            return Ok(scenario.clone());
        }
        let text = format!("name: x-s3chaos-fault\nrules:\n  - name: x-s3chaos-fault\n    fault: {fault}\n");
        let scenario = Arc::new(Scenario::parse(&text, "x-s3chaos-fault header")?);
        if kept.len() >= HEADER_FAULTS_KEPT {
            kept.clear();
        }
        kept.insert(asked.to_owned(), scenario.clone());
        Ok(scenario)
    }

    fn take_slot_unbounded(&self) -> ActiveSlot {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveSlot(self.active.clone())
    }

    /// A place among the active faults, unless `max_active_faults` are already active.
    fn take_slot(&self, scenario: &Scenario) -> Option<ActiveSlot> {
        match scenario.safety().max_active_faults {
            None => {
                self.active.fetch_add(1, Ordering::Relaxed);
            }
            Some(cap) => {
                self.active
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                        (n < cap.get()).then_some(n + 1)
                    })
                    .ok()?;
            }
        }
        Some(ActiveSlot(self.active.clone()))
    }

    pub fn stats(&self) -> Vec<RuleStats> {
        self.current.load().rules().iter().map(|r| r.stats()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::Classifier;

    pub(super) fn fired(engine: &Engine, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<String> {
        let method: http::Method = method.parse().unwrap();
        let uri: http::Uri = target.parse().unwrap();
        let mut map = http::HeaderMap::new();
        map.insert("host", "127.0.0.1:9080".parse().unwrap());
        for (k, v) in headers {
            map.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let info = Classifier::default().classify(&method, &uri, &map);
        engine
            .decide(&info)
            .map(|d| d.fired().map(|(r, _)| r.name().to_owned()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn rules_fire_in_file_order_across_indexes() {
        let yaml = r#"
name: t
rules:
  - {name: slow-all, fault: {latency: 1ms}}
  - {name: slow-photos, match: {bucket: photos}, fault: {latency: 1ms}}
  - {name: blue-tenant, match: {header: {x-tenant: blue}}, fault: {latency: 1ms}}
  - {name: any-tenant, match: {header: {x-tenant: "*"}, operation: PutObject}, fault: {latency: 1ms}}
  - {name: stop-photos, match: {bucket: photos, key: "*.jpg"}, fault: {error: SlowDown}}
  - {name: never-reached, fault: {error: InternalError}}
"#;
        let engine = Engine::new(Scenario::parse(yaml, "t").unwrap());
        assert_eq!(
            fired(&engine, "GET", "/photos/a.jpg", &[]),
            ["slow-all", "slow-photos", "stop-photos"]
        );
        assert_eq!(
            fired(&engine, "GET", "/photos/a.png", &[("x-tenant", "blue")]),
            ["slow-all", "slow-photos", "blue-tenant", "never-reached"]
        );
        assert_eq!(
            fired(&engine, "PUT", "/docs/a", &[("x-tenant", "red")]),
            ["slow-all", "any-tenant", "never-reached"]
        );
        let stats = engine.stats();
        assert_eq!(stats[1].matched, 2, "slow-photos matched both photos requests");
        assert_eq!(stats[5].injected, 2);
    }

    #[test]
    fn skip_limit_and_probability() {
        let yaml = "name: t\nseed: 3\nrules:\n  - {name: later, skip: 2, limit: 3, fault: {error: SlowDown}}\n";
        let engine = Engine::new(Scenario::parse(yaml, "t").unwrap());
        let outcomes: Vec<bool> = (0..8)
            .map(|_| !fired(&engine, "GET", "/bkt/k", &[]).is_empty())
            .collect();
        assert_eq!(outcomes, [false, false, true, true, true, false, false, false]);

        let yaml = "name: c\nseed: 9\nrules:\n  - {probability: 0.25, fault: reset}\n";
        let coin = Engine::new(Scenario::parse(yaml, "c").unwrap());
        let hits = (0..4000)
            .filter(|_| !fired(&coin, "GET", "/bkt/k", &[]).is_empty())
            .count();
        assert!((800..1200).contains(&hits), "{hits} of 4000 at p=0.25");
    }
}

#[cfg(test)]
mod trigger_tests {
    use super::*;
    use crate::s3::Classifier;

    fn fires(engine: &Engine) -> bool {
        let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        engine
            .decide(&Classifier::default().classify(&method, &uri, &headers))
            .is_some()
    }

    fn engine(rule: &str) -> Engine {
        Engine::new(Scenario::parse(&format!("name: t\nrules:\n  - {rule}\n"), "t").unwrap())
    }

    #[test]
    fn every_nth_after_skip() {
        let e = engine("{skip: 1, every: 3, fault: reset}");
        let pattern: Vec<bool> = (0..8).map(|_| fires(&e)).collect();
        assert_eq!(pattern, [false, false, false, true, false, false, true, false]);
    }

    #[test]
    fn nth_faults_the_nth_call_and_its_retries_and_refuses_skip() {
        // No SDK headers: every request before the third is a call; the third and its
        // repeats of the same key are faulted, with `limit: 1` only its first attempt.
        let e = engine("{nth: 3, fault: reset}");
        let pattern: Vec<bool> = (0..5).map(|_| fires(&e)).collect();
        assert_eq!(pattern, [false, false, true, true, true]);
        let e = engine("{nth: 2, limit: 1, fault: reset}");
        let pattern: Vec<bool> = (0..4).map(|_| fires(&e)).collect();
        assert_eq!(pattern, [false, true, false, false]);
        let err = Scenario::parse("name: t\nrules:\n  - {nth: 2, skip: 1, fault: reset}\n", "t").unwrap_err();
        assert!(err.message.contains("drop `skip` and `every`"), "{err}");
        assert_eq!(err.position.map(|p| p.0), Some(3), "{err}");
        assert!(Scenario::parse("name: t\nrules:\n  - {nth: 0, fault: reset}\n", "t").is_err());
    }

    /// A terminal rule before it ends the evaluation, but an `nth` rule still counts the
    /// call: without that, `nth: 2` behind a rule that failed the first call picked the third.
    #[test]
    fn nth_counts_calls_another_rule_ended() {
        let e = Engine::new(
            Scenario::parse(
                "name: t\nrules:\n  - {name: first, limit: 1, fault: reset}\n  - {name: second, nth: 2, fault: {error: SlowDown}}\n",
                "t",
            )
            .unwrap(),
        );
        let fired: Vec<Option<String>> = (0..3)
            .map(|_| {
                let (method, uri) = (http::Method::GET, "/bkt/other".parse::<http::Uri>().unwrap());
                let mut headers = http::HeaderMap::new();
                headers.insert("host", "127.0.0.1".parse().unwrap());
                headers.insert("amz-sdk-request", "attempt=1".parse().unwrap());
                e.decide(&Classifier::default().classify(&method, &uri, &headers))
                    .map(|d| {
                        d.fired()
                            .map(|(r, _)| r.name().to_owned())
                            .collect::<Vec<_>>()
                            .join(",")
                    })
            })
            .collect();
        assert_eq!(fired, [Some("first".into()), Some("second".into()), None]);
    }

    #[test]
    fn time_windows_count_from_proxy_start() {
        assert!(!fires(&engine("{after: 1h, fault: reset}")), "not active yet");
        assert!(fires(&engine("{until: 1h, fault: reset}")), "active until then");
        let ended = engine("{until: 1ms, fault: reset}");
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(!fires(&ended), "window over");
        assert_eq!(ended.stats()[0].matched, 1, "matched requests are still counted");
        assert!(Scenario::parse("name: t\nrules:\n  - {after: 2m, until: 1m, fault: reset}\n", "t").is_err());
        assert!(Scenario::parse("name: t\nrules:\n  - {every: 0, fault: reset}\n", "t").is_err());
    }
}

#[cfg(test)]
mod drill_tests {
    use std::time::SystemTime;

    use super::*;
    use crate::s3::Classifier;

    fn fired(engine: &Engine) -> Vec<String> {
        let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        engine
            .decide(&Classifier::default().classify(&method, &uri, &headers))
            .map(|d| d.fired().map(|(r, _)| r.name().to_owned()).collect())
            .unwrap_or_default()
    }

    /// `start_at` this far in the past (negative: in the future), to place the drill.
    fn started(ago_secs: i64) -> String {
        let now = SystemTime::now();
        let at = if ago_secs >= 0 {
            now - Duration::from_secs(ago_secs as u64)
        } else {
            now + Duration::from_secs((-ago_secs) as u64)
        };
        humantime::format_rfc3339_seconds(at).to_string()
    }

    fn drill(ago_secs: i64, extra: &str) -> Engine {
        let yaml = format!(
            r#"
name: d
start_at: {}
{extra}
rules:
  - {{name: everywhere, fault: {{latency: 1ms}}}}
phases:
  - name: calm
    duration: 10s
  - name: storm
    duration: 100s
    rules:
      - {{name: errors, fault: {{error: InternalError}}}}
"#,
            started(ago_secs)
        );
        Engine::new(Scenario::parse(&yaml, "d.yaml").unwrap())
    }

    #[test]
    fn each_phase_runs_its_own_rules_after_the_top_level_ones() {
        assert_eq!(fired(&drill(3, "")), ["everywhere"]);
        assert_eq!(fired(&drill(15, "")), ["everywhere", "storm/errors"]);
        assert!(fired(&drill(200, "")).is_empty(), "the drill is over: healthy");
        assert_eq!(drill(200, "").state(), DrillState::Over);
        assert!(fired(&drill(-60, "")).is_empty(), "not started yet");
        assert!(matches!(drill(-60, "").state(), DrillState::Pending { .. }));
        assert_eq!(
            fired(&drill(113, "repeat: true")),
            ["everywhere"],
            "second cycle, calm again"
        );
        assert!(fired(&drill(15, "max_duration: 12s")).is_empty(), "past max_duration");
        assert_eq!(drill(15, "max_duration: 12s").state(), DrillState::Expired);
    }

    #[test]
    fn probability_ramps_across_the_phase() {
        let at = |ago: i64| {
            let yaml = format!(
                "name: r\nseed: 5\nstart_at: {}\nphases:\n  - name: up\n    duration: 100s\n    rules:\n      - {{name: e, probability: {{from: 0.0, to: 1.0}}, fault: {{error: SlowDown}}}}\n",
                started(ago)
            );
            let engine = Engine::new(Scenario::parse(&yaml, "r.yaml").unwrap());
            (0..2000).filter(|_| !fired(&engine).is_empty()).count()
        };
        let (early, middle, late) = (at(5), at(50), at(95));
        assert!(early < 200, "about 5% at 5s in: {early} of 2000");
        assert!((850..1150).contains(&middle), "about 50% halfway: {middle} of 2000");
        assert!(late > 1800, "about 95% near the end: {late} of 2000");
    }

    #[test]
    fn halt_and_resume() {
        let engine = Engine::new(Scenario::parse("name: h\nrules:\n  - {name: r, fault: reset}\n", "h").unwrap());
        assert_eq!(fired(&engine), ["r"]);
        assert!(engine.halt("test"));
        assert!(!engine.halt("again"), "already halted");
        assert!(engine.is_idle());
        assert!(fired(&engine).is_empty());
        assert_eq!(engine.halted().as_deref(), Some("test"));
        assert!(engine.resume());
        assert_eq!(fired(&engine), ["r"]);
        assert_eq!(engine.halted(), None);
    }

    #[test]
    fn max_active_faults_caps_requests_under_a_fault_at_once() {
        let yaml = "name: c\nmax_active_faults: 2\nrules:\n  - {name: slow, limit: 3, fault: {latency: 1s}}\n";
        let engine = Engine::new(Scenario::parse(yaml, "c").unwrap());
        let req = |e: &Engine| {
            let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
            let mut headers = http::HeaderMap::new();
            headers.insert("host", "127.0.0.1".parse().unwrap());
            e.decide(&Classifier::default().classify(&method, &uri, &headers))
        };
        let first = req(&engine).expect("first fires");
        let second = req(&engine).expect("second fires");
        assert!(req(&engine).is_none(), "a third at once is capped");
        assert_eq!((engine.active_faults(), engine.capped()), (2, 1));
        drop(first);
        let third = req(&engine).expect("a slot is free again");
        assert_eq!(
            engine.stats()[0].injected,
            3,
            "the capped request did not use up the limit"
        );
        drop((second, third));
        assert_eq!(engine.active_faults(), 0);
    }

    #[test]
    fn reloading_the_same_drill_keeps_its_clock_and_counters() {
        let yaml = "name: same\nrules:\n  - {name: r, after: 1h, fault: reset}\n  - {name: s, fault: reset}\n";
        let engine = Engine::new(Scenario::parse(yaml, "a").unwrap());
        fired(&engine);
        fired(&engine);
        let clock_before = engine.scenario().timeline().clock().elapsed(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        engine.replace(Scenario::parse(yaml, "a").unwrap());
        let elapsed = engine.scenario().timeline().clock().elapsed(Instant::now()).unwrap();
        assert!(elapsed >= clock_before + Duration::from_millis(20), "same clock");
        assert_eq!(engine.stats()[1].injected, 2, "counters carried over");
        engine.replace(Scenario::parse(&yaml.replace("same", "other"), "b").unwrap());
        assert_eq!(engine.stats()[1].injected, 0, "a different scenario starts afresh");
    }

    /// A reload that changes the number of phases, racing a reader of the running phase:
    /// before every reader loaded the scenario once, one version's phase number could index
    /// the other's phases and panic (in the acceptor thread, which then stopped accepting).
    #[test]
    fn readers_of_the_phase_never_mix_two_versions() {
        let many = "name: race\nrepeat: true\nphases:\n  - {name: a, duration: 1ms}\n  - {name: b, duration: 1ms}\n  - {name: c, duration: 1ms}\n  - {name: d, duration: 1ms}\n  - {name: e, duration: 1ms, refuse_connections: true}\n";
        let one = "name: race\nrepeat: true\nphases:\n  - {name: only, duration: 1h}\n";
        let engine = Arc::new(Engine::new(Scenario::parse(many, "m").unwrap()));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (engine, stop) = (engine.clone(), stop.clone());
            std::thread::spawn(move || {
                let (many, one) = (Scenario::parse(many, "m").unwrap(), Scenario::parse(one, "o").unwrap());
                let (many, one) = (Arc::new(many), Arc::new(one));
                for i in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    engine
                        .current
                        .store(if i % 2 == 0 { one.clone() } else { many.clone() });
                }
            })
        };
        for _ in 0..20_000 {
            let _ = engine.connections();
            let _ = engine.phase_name();
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
    }

    /// A rate limit asked for in `x-s3chaos-fault` was compiled afresh per request, so its
    /// bucket was always full and it never throttled.
    #[test]
    fn a_header_asked_rate_limit_keeps_its_bucket() {
        let engine = Engine::with_options(
            Scenario::empty(),
            EngineOptions {
                allow_header_faults: true,
                ..EngineOptions::default()
            },
        );
        let asked = [("x-s3chaos-fault", "{rate_limit: {rps: 0.01, burst: 1}}")];
        let fired: Vec<bool> = (0..3)
            .map(|_| !super::tests::fired(&engine, "GET", "/b/k", &asked).is_empty())
            .collect();
        assert_eq!(fired, [false, true, true], "the burst of one, then throttled");
        assert_eq!(engine.active_faults(), 0);
    }

    #[test]
    fn fault_state_is_carried_over_by_rule_name_and_kind() {
        let yaml = "name: st\nrules:\n  - {name: stale, fault: {stale_reads: {for: 1m}}}\n  - {name: rate, fault: {rate_limit: {rps: 1, burst: 1}}}\n";
        let engine = Engine::new(Scenario::parse(yaml, "a").unwrap());
        let state = |e: &Engine, rule: usize| {
            e.scenario().rules()[rule]
                .faults_with_state()
                .next()
                .unwrap()
                .1
                .cloned()
                .unwrap()
        };
        let (stale, rate) = (state(&engine, 0), state(&engine, 1));
        // An unrelated rule added (as the admin API does: the same scenario compiled again).
        engine.replace(Scenario::parse(&format!("{yaml}  - {{name: new, fault: reset}}\n"), "a").unwrap());
        assert!(Arc::ptr_eq(&stale, &state(&engine, 0)), "stale_reads keeps its memory");
        assert!(
            Arc::ptr_eq(&rate, &state(&engine, 1)),
            "rate_limit keeps its token buckets"
        );
        // The rule now holds another kind of fault: fresh state. Another scenario: fresh too.
        engine.replace(
            Scenario::parse(
                &yaml.replace("rate_limit: {rps: 1, burst: 1}", "stale_reads: {for: 1s}"),
                "a",
            )
            .unwrap(),
        );
        assert!(!Arc::ptr_eq(&rate, &state(&engine, 1)));
        engine.replace(Scenario::parse(&yaml.replace("name: st", "name: other"), "b").unwrap());
        assert!(!Arc::ptr_eq(&stale, &state(&engine, 0)));
    }

    #[test]
    fn a_rate_limit_under_its_rate_does_not_fire_and_is_not_counted() {
        let yaml = "name: r\nrules:\n  - {name: rate, fault: {rate_limit: {rps: 0.01, burst: 2}}}\n";
        let engine = Engine::new(Scenario::parse(yaml, "r").unwrap());
        let fired: Vec<bool> = (0..4).map(|_| !fired(&engine).is_empty()).collect();
        assert_eq!(
            fired,
            [false, false, true, true],
            "the burst passes, then every request fires"
        );
        let stats = &engine.stats()[0];
        assert_eq!(
            (stats.matched, stats.injected),
            (4, 2),
            "decided once: nothing counted and taken back"
        );
    }

    #[test]
    fn dry_run_decides_and_counts_but_injects_nothing() {
        let scenario = Scenario::parse("name: d\nrules:\n  - {name: r, fault: reset}\n", "d").unwrap();
        let engine = Engine::with_options(
            scenario,
            EngineOptions {
                dry_run: true,
                ..EngineOptions::default()
            },
        );
        assert!(fired(&engine).is_empty());
        assert_eq!(engine.stats()[0].injected, 1, "counted as it would have been");
    }

    #[test]
    fn time_scale_plays_the_timeline_faster() {
        let yaml = format!(
            "name: s\nstart_at: {}\nphases:\n  - {{name: calm, duration: 1h}}\n  - name: storm\n    duration: 1h\n    rules:\n      - {{name: e, fault: reset}}\n",
            started(40)
        );
        let scaled = |scale: f64| {
            Engine::with_options(
                Scenario::parse(&yaml, "s").unwrap(),
                EngineOptions {
                    time_scale: Some(scale),
                    ..EngineOptions::default()
                },
            )
        };
        assert!(fired(&scaled(1.0)).is_empty(), "40 s into an hour of calm");
        assert_eq!(fired(&scaled(0.01)), ["storm/e"], "40 s at 100x is 66 min: the storm");
        assert_eq!(
            scaled(0.001).state(),
            DrillState::Over,
            "at 1000x the two hours are over"
        );
    }

    #[test]
    fn command_line_max_duration_stops_every_fault() {
        let scenario = Scenario::parse("name: m\nrules:\n  - {name: r, fault: reset}\n", "m").unwrap();
        let engine = Engine::with_options(
            scenario,
            EngineOptions {
                max_duration: Some(Duration::from_millis(30)),
                ..EngineOptions::default()
            },
        );
        assert_eq!(fired(&engine), ["r"]);
        std::thread::sleep(Duration::from_millis(40));
        assert!(fired(&engine).is_empty());
        assert_eq!(engine.state(), DrillState::Expired);
    }
}
