//! `latency`: delays the whole response by a fixed or uniformly random time before the
//! request goes upstream, so the client's time to first byte grows by exactly that much.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{Fault, FaultCtx, RequestAction};
use crate::scenario::values::DurationValue;

/// A delay between `min` and `max` (equal for a fixed delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    min: Duration,
    max: Duration,
}

impl Latency {
    pub fn fixed(d: Duration) -> Latency {
        Latency { min: d, max: d }
    }

    pub fn range(min: Duration, max: Duration) -> Result<Latency, String> {
        if min > max {
            return Err(format!("latency min ({min:?}) is greater than max ({max:?})"));
        }
        Ok(Latency { min, max })
    }

    /// The delay for one request, `unit` being a uniform draw in [0, 1).
    pub fn sample(&self, unit: f64) -> Duration {
        self.min + (self.max - self.min).mul_f64(unit)
    }
}

impl Fault for Latency {
    fn kind(&self) -> &'static str {
        "latency"
    }

    fn is_terminal(&self) -> bool {
        false
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let unit = if self.min == self.max {
            0.0
        } else {
            ctx.draw.clone().unit()
        };
        RequestAction::Delay(self.sample(unit))
    }

    fn describe(&self) -> String {
        if self.min == self.max {
            format!("latency {}", humantime::format_duration(self.min))
        } else {
            format!(
                "latency {}..{}",
                humantime::format_duration(self.min),
                humantime::format_duration(self.max)
            )
        }
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Latency;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 250ms, or {min: 100ms, max: 900ms}")
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
                let (mut min, mut max) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "min" => min = Some(map.next_value::<DurationValue>()?.0),
                        "max" => max = Some(map.next_value::<DurationValue>()?.0),
                        other => return Err(de::Error::unknown_field(other, &["min", "max"])),
                    }
                }
                let min = min.ok_or_else(|| de::Error::missing_field("min"))?;
                let max = max.ok_or_else(|| de::Error::missing_field("max"))?;
                Latency::range(min, max).map_err(de::Error::custom)
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
        assert_eq!(l.sample(0.0), Duration::from_millis(100));
        assert_eq!(l.sample(0.5), Duration::from_millis(500));
        assert!(l.sample(0.999_999) < Duration::from_millis(900));
        assert!(Latency::range(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    }

    #[test]
    fn parses_both_forms() {
        let fixed: Latency = serde_yaml_ng::from_str("250ms").unwrap();
        assert_eq!(fixed, Latency::fixed(Duration::from_millis(250)));
        let range: Latency = serde_yaml_ng::from_str("{min: 50ms, max: 200ms}").unwrap();
        assert_eq!(range.sample(0.0), Duration::from_millis(50));
        assert!(serde_yaml_ng::from_str::<Latency>("{min: 1s}").is_err());
        assert!(serde_yaml_ng::from_str::<Latency>("{min: 2s, max: 1s}").is_err());
        assert!(
            serde_yaml_ng::from_str::<Latency>("250").is_err(),
            "a bare number has no unit"
        );
    }
}
