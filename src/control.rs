//! The control plane's one door to the running scenario: a file reload, `PUT /scenario`,
//! `POST /rules` and `DELETE /rules/NAME` all go through [`Control`], which keeps the
//! scenario (its text, and parsed once) and the rules added at run time (each parsed once),
//! compiles them together, and swaps the result into the engine. One place, one lock, so a
//! reload and an API call cannot lose each other's change: rules added at run time survive a
//! reload of the file. Adding a rule parses only that rule.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::engine::Scenario;
use crate::scenario::{self, API_PREFIX, ApiRule, ScenarioError, Spec};

/// Why a control-plane change was refused; the running scenario is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(#[from] ScenarioError),
    #[error("a rule named `{0}` already exists")]
    Conflict(String),
    #[error("no rule added at run time is named `{0}`")]
    NotFound(String),
    #[error("the running scenario has no rule named `{0}`")]
    NoSuchRule(String),
}

/// A rule added at run time, as listed by the API.
#[derive(Debug, Clone)]
pub struct ApiRuleInfo {
    /// As the engine names it: `api/NAME`.
    pub name: String,
    pub expires_in: Option<Duration>,
}

pub struct Control {
    engine: Arc<Engine>,
    inner: Mutex<Inner>,
}

struct Inner {
    text: String,
    origin: String,
    /// `text`, parsed.
    file: Spec,
    api: Vec<(ApiRule, Option<Instant>)>,
    added: u64,
}

impl Control {
    /// `text` is the scenario now running in `engine` (as read from `origin`): it was parsed
    /// once already, so it parses.
    pub fn new(engine: Arc<Engine>, text: String, origin: String) -> Control {
        let file = scenario::parse(&text, &origin).unwrap_or_else(|e| {
            tracing::error!("the running scenario does not parse again ({e}); rules added at run time will run alone");
            Spec::empty()
        });
        Control {
            engine,
            inner: Mutex::new(Inner {
                text,
                origin,
                file,
                api: Vec::new(),
                added: 0,
            }),
        }
    }

    /// For a proxy started without a scenario file.
    pub fn passthrough(engine: Arc<Engine>) -> Control {
        Control::new(engine, "name: passthrough\n".into(), "<none>".into())
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running scenario's text and where it came from.
    pub fn source(&self) -> (String, String) {
        let inner = self.lock();
        (inner.text.clone(), inner.origin.clone())
    }

    /// Validates `text` and, if it is good, runs it (with the rules added at run time).
    pub fn apply(&self, text: &str, origin: &str) -> Result<(), ControlError> {
        let file = scenario::parse(text, origin)?;
        let mut inner = self.lock();
        self.engine
            .replace(Scenario::compile(file.with_api_rules(inner.api.iter().map(|(r, _)| r))));
        inner.text = text.to_owned();
        inner.origin = origin.to_owned();
        inner.file = file;
        Ok(())
    }

    /// Adds one rule (YAML or JSON, with an optional `ttl`), evaluated before the file's
    /// rules. Returns its name as the engine shows it (`api/NAME`).
    pub fn add_rule(&self, text: &str) -> Result<String, ControlError> {
        let mut inner = self.lock();
        let default_name = format!("rule-{}", inner.added + 1);
        let rule = ApiRule::parse(text, "rule", default_name)?;
        let full = format!("{API_PREFIX}/{}", rule.name);
        if inner.api.iter().any(|(r, _)| r.name == rule.name) {
            return Err(ControlError::Conflict(full));
        }
        let expires = rule.ttl.map(|ttl| Instant::now() + ttl);
        // After the rules added before it, before the file's: compiles this rule alone.
        let next = self
            .engine
            .scenario()
            .with_top_rule(inner.api.len(), rule.spec().clone());
        self.engine.replace(next);
        inner.api.push((rule, expires));
        inner.added += 1;
        Ok(full)
    }

    /// Removes a rule added at run time (`NAME` or `api/NAME`).
    /// Switches a rule of the running scenario off (it matches and counts, never fires) or
    /// on again; the switch stays across reloads of the same scenario.
    pub fn set_enabled(&self, name: &str, on: bool) -> Result<(), ControlError> {
        let scenario = self.engine().scenario();
        let rule = scenario
            .rules()
            .iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| ControlError::NoSuchRule(name.to_owned()))?;
        rule.set_enabled(on);
        Ok(())
    }

    pub fn remove_rule(&self, name: &str) -> Result<(), ControlError> {
        let mut inner = self.lock();
        let short = name.strip_prefix("api/").unwrap_or(name);
        let Some(at) = inner.api.iter().position(|(r, _)| r.name == short) else {
            return Err(ControlError::NotFound(name.to_owned()));
        };
        let (gone, _) = inner.api.remove(at);
        self.remove_from_engine(&[gone.spec().name.as_str()]);
        Ok(())
    }

    /// Removes the rules whose `ttl` has run out; returns their names.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let mut inner = self.lock();
        let mut gone = Vec::new();
        inner.api.retain(|(r, expires)| {
            let keep = expires.is_none_or(|e| now < e);
            if !keep {
                gone.push(r.spec().name.clone());
            }
            keep
        });
        if !gone.is_empty() {
            let names: Vec<&str> = gone.iter().map(String::as_str).collect();
            self.remove_from_engine(&names);
        }
        gone
    }

    pub fn api_rules(&self) -> Vec<ApiRuleInfo> {
        let now = Instant::now();
        self.lock()
            .api
            .iter()
            .map(|(r, expires)| ApiRuleInfo {
                name: format!("{API_PREFIX}/{}", r.name),
                expires_in: expires.map(|e| e.saturating_duration_since(now)),
            })
            .collect()
    }

    /// Takes rules added at run time (named as the engine names them, `api/NAME`) out of
    /// the running scenario; nothing is compiled again.
    fn remove_from_engine(&self, names: &[&str]) {
        let names: std::collections::HashSet<&str> = names.iter().copied().collect();
        let next = self.engine.scenario().without_top_rules(|name| names.contains(name));
        self.engine.replace(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(text: &str) -> Control {
        let engine = Arc::new(Engine::new(Scenario::parse(text, "s.yaml").unwrap()));
        Control::new(engine, text.into(), "s.yaml".into())
    }

    fn names(c: &Control) -> Vec<String> {
        c.engine()
            .scenario()
            .rules()
            .iter()
            .map(|r| r.name().to_owned())
            .collect()
    }

    /// A rule switched off matches and counts but never fires; the switch stays when the
    /// same scenario is reloaded; an unknown rule is refused.
    #[test]
    fn a_disabled_rule_never_fires_and_stays_off_across_a_reload() {
        let text = "name: s\nrules:\n  - {name: r, fault: reset}\n";
        let c = control(text);
        let fires = |c: &Control| {
            crate::faults::with_request("GET", "/b/k", |req| {
                c.engine().decide(req).is_some_and(|d| d.fired().count() > 0)
            })
        };
        assert!(fires(&c));
        c.set_enabled("r", false).unwrap();
        assert!(!fires(&c), "switched off");
        c.apply(text, "s.yaml").unwrap();
        assert!(!fires(&c), "still off after a reload");
        assert_eq!(
            c.engine().scenario().rules()[0].stats().matched,
            3,
            "it still matches and counts"
        );
        c.set_enabled("r", true).unwrap();
        assert!(fires(&c));
        assert!(matches!(c.set_enabled("nope", false), Err(ControlError::NoSuchRule(_))));
    }

    #[test]
    fn api_rules_come_first_survive_reloads_and_expire() {
        let c = control("name: s\nrules:\n  - {name: file-rule, fault: reset}\n");
        let name = c
            .add_rule(r#"{"match": {"operation": "GetObject"}, "fault": {"error": "SlowDown"}, "ttl": "1h"}"#)
            .unwrap();
        assert_eq!(name, "api/rule-1");
        c.add_rule("{name: mine, fault: {latency: 5ms}}").unwrap();
        assert_eq!(names(&c), ["api/rule-1", "api/mine", "file-rule"]);
        assert!(matches!(
            c.add_rule("{name: mine, fault: reset}"),
            Err(ControlError::Conflict(_))
        ));
        let bad = c.add_rule("{fault: {error: SlowDwn}}").unwrap_err();
        assert!(bad.to_string().contains("unknown S3 error code"), "{bad}");

        c.apply("name: s\nrules:\n  - {name: new-file-rule, fault: reset}\n", "s.yaml")
            .unwrap();
        assert_eq!(names(&c), ["api/rule-1", "api/mine", "new-file-rule"]);
        assert!(c.apply("name: s\nrules: [", "s.yaml").is_err());
        assert_eq!(names(&c), ["api/rule-1", "api/mine", "new-file-rule"], "untouched");

        c.remove_rule("api/mine").unwrap();
        assert!(matches!(c.remove_rule("mine"), Err(ControlError::NotFound(_))));
        assert_eq!(c.expire(Instant::now() + Duration::from_secs(7200)), ["api/rule-1"]);
        assert_eq!(names(&c), ["new-file-rule"]);
    }

    /// A GET of `bkt/k`, as the proxy classifies it.
    fn get(engine: &Engine) -> Option<crate::engine::Decision> {
        let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        engine.decide(&crate::s3::Classifier::default().classify(&method, &uri, &headers))
    }

    #[test]
    fn adding_or_removing_a_rule_compiles_that_rule_alone_and_counting_goes_on() {
        let mut file = String::from(
            "name: s
rules:
  - {name: hit, match: {bucket: bkt}, fault: {latency: 1ms}}
",
        );
        for i in 0..200 {
            file.push_str(&format!(
                "  - {{name: f{i}, match: {{bucket: other-{i}}}, fault: reset}}
"
            ));
        }
        let c = control(&file);
        for i in 0..50 {
            c.add_rule(&format!("{{name: a{i}, match: {{bucket: api-{i}}}, fault: reset}}"))
                .unwrap();
        }
        let before = c.engine().scenario();
        let in_flight = get(c.engine()).expect("`hit` fires");
        c.add_rule("{name: new, match: {bucket: nothing}, fault: reset}")
            .unwrap();
        let after = c.engine().scenario();
        assert_eq!(after.rules().len(), before.rules().len() + 1);
        assert_eq!(
            after.rules()[50].name(),
            "api/new",
            "after the other added rules, before the file's"
        );
        // Every rule of `b` that `a` has too is the very rule `a` has, not a recompiled copy.
        let same = |a: &Scenario, b: &Scenario| {
            let a: std::collections::HashMap<&str, &Arc<crate::engine::Rule>> =
                a.rules().iter().map(|r| (r.name(), r)).collect();
            b.rules()
                .iter()
                .filter(|r| r.name() != "api/new")
                .all(|r| a.get(r.name()).is_some_and(|old| Arc::ptr_eq(old, r)))
        };
        assert!(same(&before, &after), "no rule but the new one was compiled again");

        // A request still deciding on the version before the add (it loaded it first) is
        // counted where the next version sees it: the rule is the same one.
        drop(in_flight);
        let hit = |s: &Scenario| s.rules().iter().find(|r| r.name() == "hit").unwrap().stats();
        let old_rule = before.rules().iter().find(|r| r.name() == "hit").unwrap();
        let (method, uri) = (http::Method::GET, "/bkt/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        let req = crate::s3::Classifier::default().classify(&method, &uri, &headers);
        let _ = old_rule.roll(before.seed(), Duration::ZERO, &req);
        assert_eq!(
            hit(&after).matched,
            2,
            "both requests counted, the late one on the old version too"
        );

        c.remove_rule("api/a7").unwrap();
        let removed = c.engine().scenario();
        assert!(removed.rules().iter().all(|r| r.name() != "api/a7"));
        assert_eq!(removed.rules().len(), after.rules().len() - 1);
        assert!(same(&after, &removed), "removing compiles nothing");
        assert!(get(c.engine()).is_some(), "the index still finds `hit`");
    }

    #[test]
    fn ttl_belongs_to_the_api_and_api_is_a_reserved_phase_name() {
        let e = Scenario::parse("name: s\nrules:\n  - {ttl: 1m, fault: reset}\n", "s").unwrap_err();
        assert!(
            e.message.contains("`ttl` is for rules added through the admin API"),
            "{e}"
        );
        let e = Scenario::parse("name: s\nphases:\n  - {name: api, duration: 1s}\n", "s").unwrap_err();
        assert!(e.message.contains("reserved"), "{e}");
    }
}
