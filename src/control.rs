//! The control plane's one door to the running scenario: a file reload, `PUT /scenario`,
//! `POST /rules` and `DELETE /rules/NAME` all go through [`Control`], which keeps the
//! scenario's text and the rules added at run time, compiles them together, and swaps the
//! result into the engine. One place, one lock, so a reload and an API call cannot lose each
//! other's change: rules added at run time survive a reload of the file.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::engine::Scenario;
use crate::scenario::{API_PREFIX, ApiRule, ScenarioError};

/// Why a control-plane change was refused; the running scenario is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Invalid(#[from] ScenarioError),
    #[error("a rule named `{0}` already exists")]
    Conflict(String),
    #[error("no rule added at run time is named `{0}`")]
    NotFound(String),
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
    api: Vec<(ApiRule, Option<Instant>)>,
    added: u64,
}

impl Control {
    /// `text` is the scenario now running in `engine` (as read from `origin`).
    pub fn new(engine: Arc<Engine>, text: String, origin: String) -> Control {
        Control {
            engine,
            inner: Mutex::new(Inner {
                text,
                origin,
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
        let mut inner = self.lock();
        let api: Vec<ApiRule> = inner.api.iter().map(|(r, _)| r.clone()).collect();
        let scenario = Scenario::parse_with(text, origin, &api)?;
        self.engine.replace(scenario);
        inner.text = text.to_owned();
        inner.origin = origin.to_owned();
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
        let mut api: Vec<ApiRule> = inner.api.iter().map(|(r, _)| r.clone()).collect();
        api.push(rule.clone());
        let scenario = Scenario::parse_with(&inner.text, &inner.origin, &api)?;
        self.engine.replace(scenario);
        inner.api.push((rule, expires));
        inner.added += 1;
        Ok(full)
    }

    /// Removes a rule added at run time (`NAME` or `api/NAME`).
    pub fn remove_rule(&self, name: &str) -> Result<(), ControlError> {
        let mut inner = self.lock();
        let short = name.strip_prefix("api/").unwrap_or(name);
        let Some(at) = inner.api.iter().position(|(r, _)| r.name == short) else {
            return Err(ControlError::NotFound(name.to_owned()));
        };
        inner.api.remove(at);
        self.recompile(&inner)?;
        Ok(())
    }

    /// Removes the rules whose `ttl` has run out; returns their names.
    pub fn expire(&self, now: Instant) -> Vec<String> {
        let mut inner = self.lock();
        let before = inner.api.len();
        let mut gone = Vec::new();
        inner.api.retain(|(r, expires)| {
            let keep = expires.is_none_or(|e| now < e);
            if !keep {
                gone.push(format!("{API_PREFIX}/{}", r.name));
            }
            keep
        });
        if inner.api.len() != before
            && let Err(e) = self.recompile(&inner)
        {
            tracing::error!("could not recompile after expiring rules: {e}");
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

    fn recompile(&self, inner: &Inner) -> Result<(), ControlError> {
        let api: Vec<ApiRule> = inner.api.iter().map(|(r, _)| r.clone()).collect();
        let scenario = Scenario::parse_with(&inner.text, &inner.origin, &api)?;
        self.engine.replace(scenario);
        Ok(())
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
