//! The scenario file format: serde types that mirror the YAML, and their conversion into a
//! [`Spec`]. The YAML crate is `serde_yaml_ng`, a maintained fork of the deprecated
//! `serde_yaml` that reports the line and column of every error, including the ones our own
//! value types raise while deserialising.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU64, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use super::{
    Connections, HeaderMatch, MatchSpec, Meta, PhaseSpec, RuleSpec, Safety, ScenarioError, Spec, StopCondition, Trigger,
};
use crate::faults::FaultList;
use crate::s3::Operation;
use crate::values::{DurationValue, Glob, OneOrMany, Probability, Ramp, Timestamp};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    seed: Option<u64>,
    /// Rules that apply in every phase (or always, without phases).
    #[serde(default)]
    rules: RuleList<false>,
    #[serde(default)]
    start_at: Option<Timestamp>,
    #[serde(default)]
    repeat: bool,
    #[serde(default)]
    phases: PhaseList,
    #[serde(default)]
    max_duration: Option<PositiveDuration>,
    #[serde(default)]
    stop_if: Option<StopIfFile>,
    #[serde(default)]
    max_active_faults: Option<NonZeroUsize>,
    /// Access key id → isolation scope, for tests that each sign with their own key.
    #[serde(default)]
    scope_keys: BTreeMap<String, String>,
    #[serde(default)]
    expect: super::Expect,
}

/// A rule list; `IN_PHASE` tells whether it belongs to a phase (whose span a ramp can use).
#[derive(Default)]
struct RuleList<const IN_PHASE: bool>(Vec<RuleFile>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseFile {
    name: String,
    duration: PositiveDuration,
    #[serde(default)]
    rules: RuleList<true>,
    /// Stop accepting new TCP connections during the phase (clients see "connection
    /// refused"); open ones keep working.
    #[serde(default)]
    refuse_connections: bool,
    /// Refuse new connections and drop the open ones too.
    #[serde(default)]
    close_connections: bool,
}

#[derive(Default)]
struct PhaseList(Vec<PhaseFile>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopIfFile {
    upstream_error_rate: Probability,
    #[serde(default = "default_stop_window")]
    window: PositiveDuration,
    #[serde(default = "default_stop_min_requests")]
    min_requests: u64,
}

fn default_stop_window() -> PositiveDuration {
    PositiveDuration(Duration::from_secs(30))
}

fn default_stop_min_requests() -> u64 {
    10
}

/// A duration that must be longer than zero (a phase, a window, a time limit).
#[derive(Clone, Copy)]
struct PositiveDuration(Duration);

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let DurationValue(v) = DurationValue::deserialize(d)?;
        if v.is_zero() {
            return Err(de::Error::custom("this duration must be longer than zero"));
        }
        Ok(PositiveDuration(v))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    matcher: MatchFile,
    #[serde(default)]
    probability: Ramp<Probability>,
    #[serde(default)]
    skip: u64,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    every: Option<NonZeroU64>,
    #[serde(default)]
    nth: Option<NonZeroU64>,
    #[serde(default)]
    after: Option<DurationValue>,
    #[serde(default)]
    until: Option<DurationValue>,
    /// Only for rules added through the admin API: removes the rule after this long.
    #[serde(default)]
    ttl: Option<PositiveDuration>,
    /// Only requests of this isolation scope (`x-s3chaos-scope`, or a key in `scope_keys`).
    #[serde(default)]
    scope: Option<String>,
    fault: FaultList,
    /// What this rule expects of the calls it faulted, over the file's `expect:`.
    #[serde(default)]
    expect: Option<super::Expect>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    operation: Option<OneOrMany<Operation>>,
    method: Option<OneOrMany<MethodName>>,
    bucket: Option<Glob>,
    key: Option<Glob>,
    header: Option<BTreeMap<HeaderName, String>>,
    /// The access key id(s) the request was signed with.
    access_key: Option<OneOrMany<String>>,
    /// The SDK's attempt number(s), from `amz-sdk-request`.
    attempt: Option<OneOrMany<Attempt>>,
    /// Requests on a connection idle at least this long.
    idle_for: Option<DurationValue>,
}

/// An attempt number: 1 is the first try.
struct Attempt(u32);

impl FromStr for Attempt {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(Attempt(n)),
            _ => Err(format!(
                "`{s}` is not an attempt number; attempts count from 1 (the first try)"
            )),
        }
    }
}

/// An HTTP method as S3 clients send it.
struct MethodName(http::Method);

impl FromStr for MethodName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const KNOWN: &[&str] = &["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"];
        if KNOWN.contains(&s) {
            Ok(MethodName(s.parse().expect("known methods parse")))
        } else {
            Err(format!("unknown HTTP method `{s}`; use one of {}", KNOWN.join(", ")))
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct HeaderName(String);

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let name = http::HeaderName::from_bytes(s.as_bytes())
            .map_err(|_| de::Error::custom(format!("`{s}` is not a valid header name")))?;
        Ok(HeaderName(name.as_str().to_owned()))
    }
}

impl<'de, const IN_PHASE: bool> Deserialize<'de> for RuleList<IN_PHASE> {
    /// Rule names must be unique: they name the rule in logs, counters and the admin API.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const IN_PHASE: bool>;
        impl<'de, const IN_PHASE: bool> Visitor<'de> for V<IN_PHASE> {
            type Value = RuleList<IN_PHASE>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of rules")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RuleList<IN_PHASE>, E> {
                Ok(RuleList::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RuleList<IN_PHASE>, A::Error> {
                let mut rules: Vec<RuleFile> = Vec::new();
                while let Some(mut rule) = seq.next_element::<RuleFile>()? {
                    if rule.ttl.is_some() {
                        return Err(de::Error::custom(
                            "`ttl` is for rules added through the admin API; in a file, use `until`",
                        ));
                    }
                    let default_name = format!("rule-{}", rules.len() + 1);
                    check_rule(&mut rule, default_name, IN_PHASE).map_err(de::Error::custom)?;
                    let name = rule.name.as_deref().expect("named by check_rule");
                    if rules.iter().any(|r| r.name.as_deref() == Some(name)) {
                        return Err(de::Error::custom(format!(
                            "two rules are named `{name}`; rule names must be unique"
                        )));
                    }
                    rules.push(rule);
                }
                Ok(RuleList(rules))
            }
        }
        d.deserialize_any(V::<IN_PHASE>)
    }
}

/// The checks one rule must pass wherever it is written: its name, and that a ramp has a
/// span to ramp across. Names an unnamed rule `default_name`.
fn check_rule(rule: &mut RuleFile, default_name: String, in_phase: bool) -> Result<(), String> {
    if rule.name.as_deref().is_some_and(|n| n.is_empty() || n.contains('/')) {
        return Err("a rule name must be non-empty and without `/` (a phase's rules are shown as `phase/rule`)".into());
    }
    let name = rule.name.get_or_insert(default_name);
    if rule.nth.is_some() && (rule.skip > 0 || rule.every.is_some()) {
        return Err(format!(
            "rule `{name}` has `nth` with `skip` or `every`: `nth: N` counts the calls itself (the N-th logical call, retries not counted); drop `skip` and `every`"
        ));
    }
    let ramps = rule.probability.is_ramp() || rule.fault.ramps();
    if ramps && !in_phase && rule.until.is_none() {
        return Err(format!(
            "rule `{name}` ramps (`from`/`to`) but has no end to ramp to: give it `until:`, or move it into a phase (a ramp runs across its phase)"
        ));
    }
    if let (Some(after), Some(until)) = (rule.after, rule.until)
        && after >= until
    {
        return Err(format!(
            "rule `{name}`: `after` ({}) must come before `until` ({})",
            humantime::format_duration(after.0),
            humantime::format_duration(until.0)
        ));
    }
    Ok(())
}

/// A rule added at run time through the admin API, parsed once: adding the next rule, or
/// reloading the file, never parses it again. Shown as `api/NAME`.
#[derive(Debug, Clone)]
pub struct ApiRule {
    /// The name as given (without `api/`).
    pub name: String,
    pub ttl: Option<Duration>,
    spec: RuleSpec,
}

/// The phase name that would collide with the names of rules added at run time.
pub const API_PREFIX: &str = "api";

impl ApiRule {
    /// Validates one rule written as YAML or JSON (JSON is YAML); `default_name` names it if
    /// it has no name.
    pub fn parse(text: &str, origin: &str, default_name: String) -> Result<ApiRule, ScenarioError> {
        super::limits::check(text, origin)?;
        let mut rule: RuleFile = super::budget::from_str(text).map_err(|e| yaml_error(e, text, origin))?;
        check_rule(&mut rule, default_name, false).map_err(|message| ScenarioError {
            origin: origin.to_owned(),
            position: None,
            message,
        })?;
        let name = rule.name.clone().expect("named by check_rule");
        let ttl = rule.ttl.map(|t| t.0);
        Ok(ApiRule {
            name,
            ttl,
            spec: compile_rule(rule, Some(API_PREFIX)),
        })
    }

    /// The rule as plain data, named `api/NAME`.
    pub fn spec(&self) -> &RuleSpec {
        &self.spec
    }
}

impl<'de> Deserialize<'de> for PhaseList {
    /// Phase names must be unique and usable in rule names (`phase/rule`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PhaseList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of phases, each with a name and a duration")
            }
            fn visit_unit<E: de::Error>(self) -> Result<PhaseList, E> {
                Ok(PhaseList::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PhaseList, A::Error> {
                let mut phases: Vec<PhaseFile> = Vec::new();
                while let Some(phase) = seq.next_element::<PhaseFile>()? {
                    if phase.name.is_empty() || phase.name.contains('/') {
                        return Err(de::Error::custom("a phase name must be non-empty and without `/`"));
                    }
                    if phase.name == API_PREFIX {
                        return Err(de::Error::custom(
                            "the phase name `api` is reserved: rules added through the admin API are shown as `api/NAME`",
                        ));
                    }
                    if phases.iter().any(|p| p.name == phase.name) {
                        return Err(de::Error::custom(format!(
                            "two phases are named `{}`; phase names must be unique",
                            phase.name
                        )));
                    }
                    phases.push(phase);
                }
                Ok(PhaseList(phases))
            }
        }
        d.deserialize_any(V)
    }
}

pub(super) fn parse(text: &str, origin: &str) -> Result<Spec, ScenarioError> {
    super::limits::check(text, origin)?;
    let file: ScenarioFile = super::budget::from_str(text).map_err(|e| yaml_error(e, text, origin))?;
    if file.repeat && file.phases.0.is_empty() {
        return Err(ScenarioError {
            origin: origin.to_owned(),
            position: None,
            message: "`repeat: true` needs `phases:` to repeat".into(),
        });
    }
    let meta = Meta {
        name: file.name,
        description: file.description,
        seed: file.seed,
        start_at: file.start_at.map(|t| t.0),
        repeat: file.repeat,
        max_duration: file.max_duration.map(|d| d.0),
        scope_keys: file.scope_keys,
        expect: file.expect,
        safety: Safety {
            stop_if: file.stop_if.map(|s| StopCondition {
                upstream_error_rate: s.upstream_error_rate,
                window: s.window.0,
                min_requests: s.min_requests,
            }),
            max_active_faults: file.max_active_faults,
        },
    };
    let top = file.rules.0.into_iter().map(|r| compile_rule(r, None)).collect();
    let phases = file
        .phases
        .0
        .into_iter()
        .map(|p| PhaseSpec {
            rules: p.rules.0.into_iter().map(|r| compile_rule(r, Some(&p.name))).collect(),
            name: p.name,
            duration: p.duration.0,
            connections: match (p.refuse_connections, p.close_connections) {
                (_, true) => Connections::Close,
                (true, false) => Connections::Refuse,
                (false, false) => Connections::Accept,
            },
        })
        .collect();
    Ok(Spec {
        meta,
        rules: top,
        phases,
    })
}

/// One rule's match and trigger; a phase's rule is named `phase/rule`.
fn compile_rule(r: RuleFile, phase: Option<&str>) -> RuleSpec {
    let m = r.matcher;
    let headers = m
        .header
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| {
            let name = http::HeaderName::from_bytes(name.0.as_bytes()).expect("validated while parsing");
            let matcher = if value == "*" {
                HeaderMatch::Present
            } else {
                HeaderMatch::Exact(value)
            };
            (name, matcher)
        })
        .collect();
    let matcher = MatchSpec {
        operations: m.operation.map(|o| o.0),
        methods: m.method.map(|ms| ms.0.into_iter().map(|m| m.0).collect()),
        bucket: m.bucket,
        key: m.key,
        headers,
        access_keys: m.access_key.map(|k| k.0),
        attempts: m.attempt.map(|a| a.0.into_iter().map(|a| a.0).collect()),
        scope: r.scope,
        idle_for: m.idle_for.map(|d| d.0),
    };
    let trigger = Trigger {
        probability: r.probability,
        skip: r.skip,
        limit: r.limit,
        every: r.every,
        nth: r.nth,
        after: r.after.map(|d| d.0),
        until: r.until.map(|d| d.0),
    };
    let name = r.name.expect("named while parsing");
    let name = match phase {
        Some(phase) => format!("{phase}/{name}"),
        None => name,
    };
    RuleSpec {
        name,
        matcher,
        trigger,
        faults: r.fault,
        expect: r.expect,
    }
}

fn yaml_error(e: serde_yaml_ng::Error, text: &str, origin: &str) -> ScenarioError {
    let parser_position = e.location().map(|l| (l.line(), l.column()));
    let position = e
        .location()
        .map(|l| editor_position(text, l.index()).unwrap_or((l.line(), l.column())));
    // The crate appends " at line L column C" to its message; we print the position first,
    // compiler-style, so drop the suffix.
    let mut message = e.to_string();
    if let Some((line, column)) = parser_position {
        for suffix in [
            format!(" at line {line} column {column}"),
            format!("at line {line} column {column}"),
        ] {
            if let Some(stripped) = message.strip_suffix(suffix.as_str()) {
                message = stripped.trim_end_matches([',', ' ']).to_owned();
                break;
            }
        }
    }
    ScenarioError {
        origin: origin.to_owned(),
        position,
        message,
    }
}

/// Line and column (both from 1, the column in characters) of byte `index` as an editor
/// counts them. The YAML parser also breaks lines at U+0085, U+2028 and U+2029, which no
/// editor's "go to line" does, so its own line number can point past the end of the file.
fn editor_position(text: &str, index: usize) -> Option<(usize, usize)> {
    let before = text.get(..index)?;
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Some((line, column))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz case that failed: U+2028 is a line break to the YAML parser, which put the
    /// error on line 3 of a one-line file.
    #[test]
    fn an_error_position_is_the_line_an_editor_shows() {
        let e = parse("?\u{2028}A", "x.yaml").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");

        let e = parse("name: x\nrules:\n  - name: a\n    fault: {nope: 1}\n", "x.yaml").unwrap_err();
        let (line, column) = e.position.expect("a position");
        assert_eq!(line, 4, "{e}");
        assert!(column > 1, "{e}");
    }

    #[test]
    fn editor_positions_count_characters_not_bytes() {
        assert_eq!(editor_position("é: x\nab", 7), Some((2, 2)));
        assert_eq!(editor_position("é", 1), None, "inside a character");
    }
}
