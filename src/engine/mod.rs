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

mod draw;
pub mod index;
pub mod matcher;

use std::sync::Arc;
use std::time::Instant;

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
        self.fired.iter().map(|(i, d)| (&self.scenario.rules()[*i], d.clone()))
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
    /// When the proxy started: rules' `after`/`until` windows count from here, across reloads.
    started: Instant,
}

impl Engine {
    pub fn new(scenario: Scenario) -> Engine {
        Engine {
            current: ArcSwap::from_pointee(scenario),
            started: Instant::now(),
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
        if scenario.rules().is_empty() {
            return None;
        }
        let mut fired: Vec<(usize, Draw)> = Vec::new();
        {
            let header_values = scenario.header_slots().values(req.headers);
            let lists = scenario.index().candidates(req, &header_values);
            for index in index::merge_sorted(&lists) {
                let rule = &scenario.rules()[index];
                if !rule.matcher().matches(req, &header_values) {
                    continue;
                }
                if let Some(draw) = rule.roll(scenario.seed(), index, self.started) {
                    fired.push((index, draw));
                    if rule.faults().is_terminal() {
                        break;
                    }
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
        self.current.load().rules().iter().map(Rule::stats).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::Classifier;

    fn fired(engine: &Engine, method: &str, target: &str, headers: &[(&str, &str)]) -> Vec<String> {
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
