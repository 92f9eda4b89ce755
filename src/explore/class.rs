//! The fault classes explore puts at a call, and the scenario rule each one becomes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value};

use super::calls::{CallId, Recorded};
use crate::values::Glob;

/// One kind of fault at one call; each asks one question of the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultClass {
    /// `503 SlowDown` on the first attempt only: do retries work?
    Transient,
    /// `500 InternalError` on every attempt: is the error handled, reported, cleaned up?
    Persistent,
    /// The connection reset before the request reaches the store: retried?
    Reset,
    /// A write done by the store, then `500 InternalError` to the client: does the app
    /// assume "error means nothing happened"? Writes only.
    Ambiguous,
    /// A GET's body ends half-way (a clean close short of its length): is the short read
    /// noticed and retried? GETs with a body only.
    Cut,
    /// One bit of a GET's body flipped, length and headers kept: is the checksum checked?
    /// GETs with a body only.
    Corrupt,
    /// No answer at all (a blackhole) on the first attempt: does the client time out and
    /// retry? Only when asked, since each costs the client's timeout.
    Hang,
}

impl FaultClass {
    pub const ALL: [FaultClass; 7] = [
        FaultClass::Transient,
        FaultClass::Persistent,
        FaultClass::Reset,
        FaultClass::Ambiguous,
        FaultClass::Cut,
        FaultClass::Corrupt,
        FaultClass::Hang,
    ];

    /// Every class but `hang`.
    pub const DEFAULT: [FaultClass; 6] = [
        FaultClass::Transient,
        FaultClass::Persistent,
        FaultClass::Reset,
        FaultClass::Ambiguous,
        FaultClass::Cut,
        FaultClass::Corrupt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultClass::Transient => "transient",
            FaultClass::Persistent => "persistent",
            FaultClass::Reset => "reset",
            FaultClass::Ambiguous => "ambiguous",
            FaultClass::Cut => "cut",
            FaultClass::Corrupt => "corrupt",
            FaultClass::Hang => "hang",
        }
    }

    /// Whether the class means something for this call: `ambiguous` for writes, `cut` and
    /// `corrupt` for GETs that returned at least two body bytes.
    pub fn applies_to(self, call: &Recorded) -> bool {
        let op = call.id.operation();
        match self {
            FaultClass::Ambiguous => op.changes_state(),
            FaultClass::Cut | FaultClass::Corrupt => {
                op == crate::s3::Operation::GetObject && call.bytes.is_some_and(|b| b >= 2)
            }
            _ => true,
        }
    }

    /// The scenario rule that puts this fault at `call` (whose last answer had `bytes` body
    /// bytes), named `name`.
    pub fn rule(self, name: &str, call: &CallId, bytes: Option<u64>) -> Value {
        let mut matcher = Mapping::new();
        matcher.insert("operation".into(), call.operation.clone().into());
        if !call.bucket.is_empty() {
            matcher.insert("bucket".into(), Glob::escape(&call.bucket).into());
        }
        if !call.key.is_empty() {
            matcher.insert("key".into(), Glob::escape(&call.key).into());
        }
        let mut rule = Mapping::new();
        rule.insert("name".into(), name.into());
        rule.insert("match".into(), Value::Mapping(matcher));
        rule.insert("nth".into(), call.nth.into());
        if self != FaultClass::Persistent {
            rule.insert("limit".into(), 1.into());
        }
        let fault: Value = match self {
            FaultClass::Transient => map([("error", "SlowDown".into())]),
            FaultClass::Persistent => map([("error", "InternalError".into())]),
            FaultClass::Reset => "reset".into(),
            FaultClass::Ambiguous => map([(
                "error",
                map([("code", "InternalError".into()), ("when", "after_upstream".into())]),
            )]),
            FaultClass::Cut => map([(
                "truncate",
                map([("after_bytes", (bytes.unwrap_or(2) / 2).max(1).into())]),
            )]),
            FaultClass::Corrupt => map([("corrupt", map([("bytes", 1.into())]))]),
            FaultClass::Hang => "blackhole".into(),
        };
        rule.insert("fault".into(), fault);
        Value::Mapping(rule)
    }
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(entries.into_iter().map(|(k, v)| (Value::from(k), v)).collect())
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FaultClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FaultClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                format!(
                    "unknown fault class `{s}`; the classes are {}",
                    FaultClass::ALL.map(FaultClass::as_str).join(", ")
                )
            })
    }
}

/// `--faults transient,persistent,cut`, in the order given, without repeats.
pub fn parse_list(list: &str) -> Result<Vec<FaultClass>, String> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.trim().is_empty()) {
        let class: FaultClass = part.parse()?;
        if !out.contains(&class) {
            out.push(class);
        }
    }
    if out.is_empty() {
        return Err("--faults names no fault class".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(op: &str, bytes: Option<u64>) -> Recorded {
        Recorded {
            id: CallId {
                operation: op.into(),
                bucket: "b".into(),
                key: "data/*weird?".into(),
                nth: 2,
            },
            outcome: "200".into(),
            succeeded: true,
            bytes,
            faulted_by: None,
        }
    }

    #[test]
    fn classes_apply_where_they_mean_something() {
        assert!(FaultClass::Ambiguous.applies_to(&call("PutObject", None)));
        assert!(!FaultClass::Ambiguous.applies_to(&call("GetObject", Some(10))));
        assert!(FaultClass::Cut.applies_to(&call("GetObject", Some(10))));
        assert!(
            !FaultClass::Cut.applies_to(&call("GetObject", Some(1))),
            "nothing to cut"
        );
        assert!(!FaultClass::Corrupt.applies_to(&call("HeadObject", Some(0))));
        assert!(FaultClass::Transient.applies_to(&call("ListObjectsV2", Some(500))));
    }

    /// Every class's rule is a valid scenario rule that faults exactly that call.
    #[test]
    fn every_rule_compiles_and_targets_its_call() {
        for class in FaultClass::ALL {
            let c = call("GetObject", Some(100));
            let rule = class.rule("explore-1", &c.id, c.bytes);
            let mut scenario = Mapping::new();
            scenario.insert("name".into(), "t".into());
            scenario.insert("rules".into(), Value::Sequence(vec![rule]));
            let text = serde_yaml_ng::to_string(&scenario).unwrap();
            let compiled =
                crate::engine::Scenario::parse(&text, "t").unwrap_or_else(|e| panic!("{class}: {e}\n{text}"));
            assert_eq!(compiled.rules().len(), 1);
            assert!(text.contains("nth: 2"), "{text}");
            assert_eq!(
                text.contains("limit: 1"),
                class != FaultClass::Persistent,
                "{class}: {text}"
            );
        }
        assert_eq!(
            parse_list("cut, transient,cut").unwrap(),
            [FaultClass::Cut, FaultClass::Transient]
        );
        assert!(
            parse_list("transient,flaky")
                .unwrap_err()
                .contains("unknown fault class `flaky`")
        );
    }
}
