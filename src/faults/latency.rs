//! `latency`: delays the whole response by a fixed or uniformly random time before the
//! request goes upstream, so the client's time to first byte grows by exactly that much.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{Fault, FaultCtx, RequestAction};
use crate::values::{DurationValue, Ramp};

/// A delay between `min` and `max` (equal for a fixed delay), or a fixed delay that ramps
/// from one value to another across the rule's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    min: Duration,
    max: Duration,
    /// `{from: min, to: ramp_to}`: the delay moves from `min` to this across the span.
    ramp_to: Option<Duration>,
}

impl Latency {
    pub fn fixed(d: Duration) -> Latency {
        Latency {
            min: d,
            max: d,
            ramp_to: None,
        }
    }

    pub fn range(min: Duration, max: Duration) -> Result<Latency, String> {
        if min > max {
            return Err(format!("latency min ({min:?}) is greater than max ({max:?})"));
        }
        Ok(Latency {
            min,
            max,
            ramp_to: None,
        })
    }

    pub fn ramp(from: Duration, to: Duration) -> Latency {
        Latency {
            min: from,
            max: from,
            ramp_to: Some(to),
        }
    }

    /// The delay for one request, `unit` being a uniform draw in [0, 1) and `progress` how far
    /// through its ramp the rule is.
    pub fn sample(&self, unit: f64, progress: f64) -> Duration {
        match self.ramp_to {
            Some(to) => Ramp::Linear { from: self.min, to }.at(progress),
            None => self.min + (self.max - self.min).mul_f64(unit),
        }
    }
}

impl Fault for Latency {
    const KIND: &'static str = "latency";

    const TERMINAL: bool = false;

    fn ramps(&self) -> bool {
        self.ramp_to.is_some()
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let unit = if self.min == self.max {
            0.0
        } else {
            ctx.draw.clone().unit()
        };
        RequestAction::Delay(self.sample(unit, ctx.draw.progress()))
    }

    fn describe(&self) -> String {
        let f = humantime::format_duration;
        match self.ramp_to {
            Some(to) => format!("latency {} -> {}", f(self.min), f(to)),
            None if self.min == self.max => format!("latency {}", f(self.min)),
            None => format!("latency {}..{}", f(self.min), f(self.max)),
        }
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Latency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 250ms, {min: 100ms, max: 900ms}, or a ramp {from: 50ms, to: 2s}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Latency, E> {
                v.parse::<DurationValue>()
                    .map(|d| Latency::fixed(d.0))
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Latency, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Latency, A::Error> {
                const FIELDS: &[&str] = &["min", "max", "from", "to"];
                let mut values: [Option<Duration>; 4] = [None; 4];
                while let Some(key) = map.next_key::<String>()? {
                    let slot = FIELDS
                        .iter()
                        .position(|f| *f == key)
                        .ok_or_else(|| de::Error::unknown_field(&key, FIELDS))?;
                    values[slot] = Some(map.next_value::<DurationValue>()?.0);
                }
                match values {
                    [Some(min), Some(max), None, None] => Latency::range(min, max).map_err(de::Error::custom),
                    [None, None, Some(from), Some(to)] => Ok(Latency::ramp(from, to)),
                    _ => Err(de::Error::custom(
                        "latency takes either {min, max} (a random delay) or {from, to} (a ramp)",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_stays_in_range() {
        let l = Latency::range(Duration::from_millis(100), Duration::from_millis(900)).unwrap();
        assert_eq!(l.sample(0.0, 0.0), Duration::from_millis(100));
        assert_eq!(l.sample(0.5, 0.0), Duration::from_millis(500));
        assert!(l.sample(0.999_999, 1.0) < Duration::from_millis(900));
        assert!(Latency::range(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn parses_both_forms() {
        let fixed: Latency = serde_yaml_ng::from_str("250ms").unwrap();
        assert_eq!(fixed, Latency::fixed(Duration::from_millis(250)));
        let range: Latency = serde_yaml_ng::from_str("{min: 50ms, max: 200ms}").unwrap();
        assert_eq!(range.sample(0.0, 0.0), Duration::from_millis(50));
        let ramp: Latency = serde_yaml_ng::from_str("{from: 50ms, to: 2s}").unwrap();
        assert!(ramp.ramps());
        assert_eq!(ramp.sample(0.7, 0.0), Duration::from_millis(50));
        assert_eq!(ramp.sample(0.7, 0.5), Duration::from_millis(1025));
        assert_eq!(ramp.sample(0.7, 1.0), Duration::from_secs(2));
        assert!(serde_yaml_ng::from_str::<Latency>("{min: 1s, to: 2s}").is_err());
        assert!(serde_yaml_ng::from_str::<Latency>("{min: 1s}").is_err());
        assert!(serde_yaml_ng::from_str::<Latency>("{min: 2s, max: 1s}").is_err());
        assert!(
            serde_yaml_ng::from_str::<Latency>("250").is_err(),
            "a bare number has no unit"
        );
    }
}
