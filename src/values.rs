//! Validated leaf values of a scenario file. Each type checks itself while it is being
//! deserialised, so a bad value is reported by the YAML parser with its line and column, and
//! a value of these types is valid by construction (a `Probability` cannot hold 1.7).

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// A probability in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Probability(f64);

impl Probability {
    pub const ALWAYS: Probability = Probability(1.0);

    pub fn new(p: f64) -> Result<Probability, String> {
        if (0.0..=1.0).contains(&p) {
            Ok(Probability(p))
        } else {
            Err(format!("probability must be between 0 and 1, got {p}"))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Default for Probability {
    fn default() -> Self {
        Probability::ALWAYS
    }
}

impl<'de> Deserialize<'de> for Probability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Checked inside the visitor, so the YAML parser pins the error on the value itself.
        struct V;
        impl Visitor<'_> for V {
            type Value = Probability;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a probability between 0 and 1, e.g. 0.05")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Probability, E> {
                Probability::new(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Probability, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_f64(V)
    }
}

/// A duration written as `250ms`, `2s`, `1m30s`, `5m` (humantime syntax). A bare number is
/// refused: `latency: 5` could mean seconds or milliseconds, and a guess is a bad drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurationValue(pub Duration);

/// The longest duration a scenario may give. Longer ones are surely mistakes, and they
/// would overflow the time arithmetic of phases and deadlines (found by tests/fuzz).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

impl FromStr for DurationValue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s.trim())
            .map_err(|e| format!("invalid duration `{s}` ({e}); write it with a unit, e.g. 250ms, 2s, 5m"))?;
        if d > MAX_DURATION {
            return Err(format!(
                "the duration `{s}` is longer than a year, the longest a scenario takes"
            ));
        }
        Ok(DurationValue(d))
    }
}

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromStrVisitor::<DurationValue>::new(
            "a duration such as 250ms, 2s or 5m",
        ))
    }
}

/// A byte count: a plain integer, or a string with a unit (`512KiB`, `1MiB`, `10MB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim()
            .parse::<bytesize::ByteSize>()
            .map(|b| ByteSize(b.as_u64()))
            .map_err(|e| {
                format!("invalid size `{s}` ({e}); write bytes as a number or with a unit, e.g. 4096, 512KiB, 1MiB")
            })
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes, e.g. 4096 or 1MiB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(format!("a size cannot be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A transfer rate written as a size per second: `512KiB/s`, `10MB/s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    pub bytes_per_second: u64,
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let size = s
            .trim()
            .strip_suffix("/s")
            .ok_or_else(|| format!("invalid rate `{s}`; write a size per second, e.g. 512KiB/s"))?;
        let ByteSize(bytes_per_second) = size.parse()?;
        if bytes_per_second == 0 {
            return Err("a rate of 0 would never deliver a byte; use `stall` for that".into());
        }
        Ok(Rate { bytes_per_second })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromStrVisitor::<Rate>::new("a rate such as 512KiB/s"))
    }
}

/// A shell-style glob for bucket names and keys: `*` matches any run of characters
/// (including `/`, so `thumbs/*` covers every key under the prefix), `?` one character,
/// `[abc]` a class. Compiled once when the scenario loads.
#[derive(Clone)]
pub struct Glob {
    /// Shared: the engine's rule index files a literal bucket under this same string.
    pattern: std::sync::Arc<str>,
    matcher: GlobKind,
}

#[derive(Clone)]
enum GlobKind {
    /// `*`: matches everything, no work at all.
    Any,
    /// No wildcard: a string comparison.
    Literal,
    /// `abc*`: a prefix comparison (the common `thumbs/*` case, no regex). The first byte is
    /// kept inline: with many prefix rules most differ there, and it saves a pointer chase.
    Prefix(u8, String),
    /// `*abc`: a suffix comparison (`*.jpg`), with the last byte inline.
    Suffix(u8, String),
    Compiled(Box<globset::GlobMatcher>),
}

const GLOB_META: [char; 5] = ['*', '?', '[', '{', '\\'];

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let matcher = if pattern == "*" {
            GlobKind::Any
        } else if !pattern.contains(GLOB_META) {
            GlobKind::Literal
        } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| !p.contains(GLOB_META)) {
            GlobKind::Prefix(prefix.as_bytes()[0], prefix.to_owned())
        } else if let Some(suffix) = pattern.strip_prefix('*').filter(|p| !p.contains(GLOB_META)) {
            GlobKind::Suffix(suffix.as_bytes()[suffix.len() - 1], suffix.to_owned())
        } else {
            let glob = globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))?;
            GlobKind::Compiled(Box::new(glob.compile_matcher()))
        };
        Ok(Glob {
            pattern: pattern.into(),
            matcher,
        })
    }

    /// The pattern that matches exactly `s` and nothing else (its wildcards escaped).
    pub fn escape(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if GLOB_META.contains(&c) || c == ']' || c == '}' {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    pub fn is_match(&self, s: &str) -> bool {
        match &self.matcher {
            GlobKind::Any => true,
            GlobKind::Literal => &*self.pattern == s,
            // Compare one byte before calling memcmp: with many prefix rules, most differ there.
            GlobKind::Prefix(first, p) => s.as_bytes().first() == Some(first) && s.starts_with(p.as_str()),
            GlobKind::Suffix(last, p) => s.as_bytes().last() == Some(last) && s.ends_with(p.as_str()),
            GlobKind::Compiled(m) => m.is_match(s),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The pattern, when it has no wildcard at all (so the engine can index it).
    pub fn literal(&self) -> Option<&std::sync::Arc<str>> {
        matches!(self.matcher, GlobKind::Literal).then_some(&self.pattern)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.pattern)
    }
}

impl FromStr for Glob {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Glob::new(s)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromStrVisitor::<Glob>::new("a glob such as `photos` or `thumbs/*`"))
    }
}

/// A value that may be written once or as a list: `operation: GetObject` or
/// `operation: [GetObject, HeadObject]`. Each element is parsed with `FromStr`, and its error
/// carries the element's own position.
#[derive(Debug, Clone)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T> Deserialize<'de> for OneOrMany<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T> Visitor<'de> for V<T>
        where
            T: FromStr,
            T::Err: fmt::Display,
        {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one name or a list of names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map(|t| OneOrMany(vec![t])).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Parsed(t)) = seq.next_element::<Parsed<T>>()? {
                    out.push(t);
                }
                if out.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list matches nothing; leave the field out to match everything",
                    ));
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// One scalar parsed with `FromStr`.
struct Parsed<T>(T);

impl<'de, T> Deserialize<'de> for Parsed<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromStrVisitor::<T>::new("a name")).map(Parsed)
    }
}

/// Deserialises a scalar (string or number, as YAML may type `5m` or `10` either way)
/// through `FromStr`.
pub(crate) struct FromStrVisitor<T> {
    expecting: &'static str,
    _t: PhantomData<T>,
}

impl<T> FromStrVisitor<T> {
    pub(crate) fn new(expecting: &'static str) -> Self {
        FromStrVisitor {
            expecting,
            _t: PhantomData,
        }
    }
}

impl<T> Visitor<'_> for FromStrVisitor<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

/// A value that is either fixed or ramps linearly from `from` to `to` across the rule's time
/// span (its phase, or its `after`..`until` window): `0.05` or `{from: 0.05, to: 0.5}`.
/// A brownout that worsens is one rule, not a staircase of rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Ramp<T> {
    Fixed(T),
    Linear { from: T, to: T },
}

/// Linear interpolation between two values of a type, `t` in [0, 1].
pub trait Lerp: Copy {
    fn lerp(from: Self, to: Self, t: f64) -> Self;
}

impl<T: Lerp> Ramp<T> {
    /// The value at `progress` (0 at the start of the span, 1 at its end).
    pub fn at(&self, progress: f64) -> T {
        match *self {
            Ramp::Fixed(v) => v,
            Ramp::Linear { from, to } => T::lerp(from, to, progress.clamp(0.0, 1.0)),
        }
    }

    pub fn is_ramp(&self) -> bool {
        matches!(self, Ramp::Linear { .. })
    }
}

impl<T: Default> Default for Ramp<T> {
    fn default() -> Self {
        Ramp::Fixed(T::default())
    }
}

impl Lerp for Probability {
    fn lerp(from: Self, to: Self, t: f64) -> Self {
        Probability(from.0 + (to.0 - from.0) * t)
    }
}

impl Lerp for Duration {
    fn lerp(from: Self, to: Self, t: f64) -> Self {
        if to >= from {
            from + (to - from).mul_f64(t)
        } else {
            from - (from - to).mul_f64(t)
        }
    }
}

impl Lerp for Rate {
    fn lerp(from: Self, to: Self, t: f64) -> Self {
        let bps = from.bytes_per_second as f64 + (to.bytes_per_second as f64 - from.bytes_per_second as f64) * t;
        Rate {
            bytes_per_second: (bps.round() as u64).max(1),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ramp<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::IntoDeserializer;
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ramp<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or a ramp {from: ..., to: ...}")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Ramp<T>, A::Error> {
                let (mut from, mut to) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "from" => from = Some(map.next_value::<T>()?),
                        "to" => to = Some(map.next_value::<T>()?),
                        other => return Err(de::Error::unknown_field(other, &["from", "to"])),
                    }
                }
                Ok(Ramp::Linear {
                    from: from.ok_or_else(|| de::Error::missing_field("from"))?,
                    to: to.ok_or_else(|| de::Error::missing_field("to"))?,
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Ramp<T>, E> {
                T::deserialize(v.into_deserializer()).map(Ramp::Fixed)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ramp<T>, E> {
                T::deserialize(v.into_deserializer()).map(Ramp::Fixed)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ramp<T>, E> {
                T::deserialize(v.into_deserializer()).map(Ramp::Fixed)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ramp<T>, E> {
                T::deserialize(v.into_deserializer()).map(Ramp::Fixed)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A wall-clock instant written in RFC 3339, `2026-12-01T14:00:00Z`: the anchor that lets
/// several replicas run one drill in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp(pub std::time::SystemTime);

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339_weak(s.trim())
            .map(Timestamp)
            .map_err(|e| format!("invalid time `{s}` ({e}); write it as RFC 3339 in UTC, e.g. 2026-12-01T14:00:00Z"))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FromStrVisitor::<Timestamp>::new("a time such as 2026-12-01T14:00:00Z"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_key_matches_itself_only() {
        for key in ["plain/key.txt", "a*b", "q?[x]{y,z}\\w", "*"] {
            let glob = Glob::new(&Glob::escape(key)).unwrap();
            assert!(glob.is_match(key), "{key}");
            assert!(!glob.is_match(&format!("{key}x")), "{key}");
        }
        assert!(!Glob::new(&Glob::escape("a*b")).unwrap().is_match("aXXb"));
    }

    #[test]
    fn ramps_interpolate_and_parse_both_forms() {
        let p: Ramp<Probability> = serde_yaml_ng::from_str("{from: 0.1, to: 0.5}").unwrap();
        assert!(p.is_ramp());
        assert!((p.at(0.5).get() - 0.3).abs() < 1e-9);
        assert_eq!(p.at(2.0).get(), 0.5, "progress is clamped");
        let fixed: Ramp<Probability> = serde_yaml_ng::from_str("0.25").unwrap();
        assert_eq!(fixed.at(0.9).get(), 0.25);
        assert!(serde_yaml_ng::from_str::<Ramp<Probability>>("{from: 0.1, to: 1.5}").is_err());
        assert!(serde_yaml_ng::from_str::<Ramp<Probability>>("{from: 0.1}").is_err());
        assert!(serde_yaml_ng::from_str::<Ramp<Probability>>("1.5").is_err());
        let down: Ramp<Rate> = serde_yaml_ng::from_str("{from: 10KiB/s, to: 2KiB/s}").unwrap();
        assert_eq!(down.at(0.5).bytes_per_second, 6 * 1024);
        assert_eq!(
            Duration::lerp(Duration::from_secs(2), Duration::from_secs(1), 0.5),
            Duration::from_millis(1500)
        );
        let t: Timestamp = serde_yaml_ng::from_str("2026-12-01T14:00:00Z").unwrap();
        assert_eq!(
            t.0.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
            1_796_133_600
        );
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn probability_bounds() {
        assert!(Probability::new(0.0).is_ok());
        assert!(Probability::new(1.0).is_ok());
        assert!(Probability::new(1.7).is_err());
        assert!(Probability::new(-0.1).is_err());
        assert!(Probability::new(f64::NAN).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!("250ms".parse::<DurationValue>().unwrap().0, Duration::from_millis(250));
        assert_eq!("2s".parse::<DurationValue>().unwrap().0, Duration::from_secs(2));
        assert_eq!("5m".parse::<DurationValue>().unwrap().0, Duration::from_secs(300));
        assert_eq!("1m30s".parse::<DurationValue>().unwrap().0, Duration::from_secs(90));
        assert!("5".parse::<DurationValue>().is_err());
        assert!("fast".parse::<DurationValue>().is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!("1MiB".parse::<ByteSize>().unwrap().0, 1 << 20);
        assert_eq!("512KiB".parse::<ByteSize>().unwrap().0, 512 << 10);
        assert_eq!("4096".parse::<ByteSize>().unwrap().0, 4096);
        assert!("lots".parse::<ByteSize>().is_err());
    }

    #[test]
    fn rates() {
        assert_eq!("512KiB/s".parse::<Rate>().unwrap().bytes_per_second, 512 * 1024);
        assert_eq!("1MB/s".parse::<Rate>().unwrap().bytes_per_second, 1_000_000);
        assert!("512KiB".parse::<Rate>().is_err());
        assert!("0B/s".parse::<Rate>().is_err());
    }

    #[test]
    fn globs() {
        let g = Glob::new("thumbs/*").unwrap();
        assert!(g.is_match("thumbs/a.jpg"));
        assert!(g.is_match("thumbs/2024/a.jpg"));
        assert!(!g.is_match("photos/thumbs/a.jpg"));
        assert!(Glob::new("photos").unwrap().is_match("photos"));
        assert!(!Glob::new("photos").unwrap().is_match("photos2"));
        assert!(Glob::new("*").unwrap().is_match(""));
        assert!(Glob::new("log-20??").unwrap().is_match("log-2024"));
        assert!(Glob::new("a[").is_err());
        let suffix = Glob::new("*.jpg").unwrap();
        assert!(suffix.is_match("a/b.jpg") && !suffix.is_match("a.jpeg"));
        let both = Glob::new("*thumbs*").unwrap();
        assert!(both.is_match("x/thumbs/y") && !both.is_match("thumb"));
        assert!(Glob::new("a*b*").unwrap().is_match("a-b-c"));
    }
}

#[cfg(test)]
mod size_tests {
    /// Rules are scanned by the thousand on the hot path: keep a glob small so a matcher
    /// spans few cache lines (the compiled regex is boxed).
    #[test]
    fn glob_stays_small() {
        assert!(
            std::mem::size_of::<super::Glob>() <= 56,
            "{}",
            std::mem::size_of::<super::Glob>()
        );
    }
}
