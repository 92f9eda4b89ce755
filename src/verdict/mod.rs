//! Verdicts: whether the app passed the drill, judged from what the proxy saw of its
//! requests (the event log), against the scenario's `expect:`.
//!
//! [`judge`] is a pure function of the events and the expectations, so the same verdicts
//! come out of `s3chaos exec`, `s3chaos verdict events.jsonl` after a game day, the drill
//! report and the admin API. How each is computed, and where it can be wrong, is said on
//! each check in `checks` and in the README.
//!
//! Without `expect:` every verdict is still computed and shown; three clear bugs fail by
//! default: a tight retry loop (it is what turns an outage into a retry storm), a request
//! still held by a blackhole when the drill ended (the client has no read timeout: in
//! production that thread or task hangs for good) and a multipart upload left open (its
//! parts are billed until someone aborts it).

mod calls;
mod checks;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A request event for tests: `ms` after a fixed time, on bucket `b`.
#[cfg(test)]
pub(crate) use calls::tests::event as test_event;
pub use calls::{Attempt, Call, Grouping, RETRY_WINDOW, attempts, calls};

use crate::scenario::{Expect, Spec};
use crate::telemetry::RequestEvent;

/// How one expectation came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Stated (or failing by default), and held.
    Pass,
    /// Stated (or failing by default), and broken.
    Fail,
    /// Not stated: what was seen, for the reader.
    Info,
    /// The drill gave nothing to judge it on (no retries, no held request...).
    NotJudged,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Pass => "pass",
            Status::Fail => "FAIL",
            Status::Info => "info",
            Status::NotJudged => "not judged",
        })
    }
}

/// One expectation's verdict.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Verdict {
    /// The `expect:` key it judges (`backoff`, `max_attempts`...).
    pub expectation: &'static str,
    pub status: Status,
    /// One line: what was seen against what was expected.
    pub summary: String,
    /// The worst case, line by line (a call's attempts, the uploads left open...).
    pub evidence: Vec<String>,
}

impl Verdict {
    /// The JUnit test case's name: `expect: KEY`, or `observed: WHAT` for what is shown but
    /// never judged (no `expect:` key states it).
    pub fn name(&self) -> String {
        if checks::OBSERVATIONS.contains(&self.expectation) {
            format!("observed: {}", self.expectation)
        } else {
            format!("expect: {}", self.expectation)
        }
    }
}

/// Every verdict of a drill.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Verdicts {
    pub verdicts: Vec<Verdict>,
    /// Requests judged, and the logical calls they made.
    pub requests: usize,
    pub calls: usize,
    /// Calls whose attempts were grouped by inference (no invocation id, or the app's own
    /// retries), not by the SDK's invocation id.
    pub inferred_calls: usize,
}

impl Verdicts {
    pub fn failed(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| v.status == Status::Fail)
    }

    pub fn passed(&self) -> bool {
        self.failed().next().is_none()
    }
}

/// What a drill expects: the file's `expect:`, and each rule's over it.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    pub drill: Expect,
    pub rules: HashMap<String, Expect>,
}

impl Expectations {
    pub fn of(spec: &Spec) -> Expectations {
        let rules = spec
            .rules
            .iter()
            .chain(spec.phases.iter().flat_map(|p| p.rules.iter()))
            .filter_map(|r| Some((r.name.clone(), r.expect.clone()?)))
            .collect();
        Expectations {
            drill: spec.meta.expect.clone(),
            rules,
        }
    }

    /// A running (or compiled) scenario's expectations.
    pub fn of_scenario(scenario: &crate::engine::Scenario) -> Expectations {
        let (drill, rules) = scenario.expectations();
        Expectations {
            drill: drill.clone(),
            rules: rules.map(|(name, e)| (name.to_owned(), e.clone())).collect(),
        }
    }

    /// What holds for what `rule` faulted (the drill's expectations without one).
    pub fn for_rule(&self, rule: Option<&str>) -> Expect {
        match rule.and_then(|r| self.rules.get(r)) {
            Some(own) => self.drill.overridden_by(own),
            None => self.drill.clone(),
        }
    }
}

/// Judges the drill's requests against its expectations.
pub fn judge<'a>(events: impl IntoIterator<Item = &'a RequestEvent>, expect: &Expectations) -> Verdicts {
    let attempts = calls::attempts(events);
    let calls = calls::calls(&attempts);
    let seen = checks::Seen {
        attempts: &attempts,
        calls: &calls,
        start: attempts.first().map_or(0.0, |a| a.at),
        expect,
    };
    Verdicts {
        verdicts: checks::all(&seen),
        requests: attempts.len(),
        calls: calls.len(),
        inferred_calls: calls.iter().filter(|c| c.grouping == Grouping::Inferred).count(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerdictError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

/// The request events of an event log (lines that are not are skipped).
pub fn read_events(path: &Path) -> Result<Vec<RequestEvent>, VerdictError> {
    let text = std::fs::read_to_string(path).map_err(|source| VerdictError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<RequestEvent>(l).ok())
        .collect())
}

/// A plain-text table of the verdicts, for a terminal.
pub fn table(v: &Verdicts) -> String {
    let mut out = format!(
        "verdicts: {} requests, {} logical calls ({} grouped by inference)\n",
        v.requests, v.calls, v.inferred_calls
    );
    let width = v.verdicts.iter().map(|v| v.expectation.len()).max().unwrap_or(0);
    for verdict in &v.verdicts {
        out.push_str(&format!(
            "  {:<10} {:<width$}  {}\n",
            verdict.status.to_string(),
            verdict.expectation,
            verdict.summary
        ));
        if verdict.status == Status::Fail {
            for line in &verdict.evidence {
                out.push_str(&format!("  {:<10} {:<width$}    {line}\n", "", ""));
            }
        }
    }
    out
}
