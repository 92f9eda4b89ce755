//! `clock_skew`: answers `403 RequestTimeTooSkewed` as S3 does when a request's signing time
//! is more than 15 minutes from S3's clock, and makes the claim true on the wire: the
//! response's `Date` header and `<ServerTime>` are really off by the amount the rule says,
//! and `<RequestTime>` echoes the request's own time. SDKs with clock-skew correction read
//! that `Date`, shift their clock and retry; apps that sign with a fixed clock keep failing.

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use super::{Fault, FaultCtx, Ending, RequestAction};
use crate::body::full;
use crate::s3::{Code, S3ErrorResponse};
use crate::s3::error::{RequestIds, SkewFields};
use crate::values::DurationValue;

/// How far "S3's" clock is from the real one: ahead (`15m`) or behind (`-15m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew {
    pub by: Duration,
    pub behind: bool,
}

impl ClockSkew {
    /// The time "S3" believes it is.
    fn server_time(&self) -> SystemTime {
        let now = SystemTime::now();
        if self.behind { now - self.by } else { now + self.by }
    }
}

impl Fault for ClockSkew {
    const KIND: &'static str = "clock_skew";

    const TERMINAL: bool = true;

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let server_time = self.server_time();
        let request_time = ctx
            .request
            .headers
            .get("x-amz-date")
            .or_else(|| ctx.request.headers.get(http::header::DATE))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let skew = SkewFields {
            request_time,
            server_time: humantime::format_rfc3339_seconds(server_time).to_string(),
            max_allowed_skew_ms: 900_000,
        };
        let error = S3ErrorResponse::standard(Code::RequestTimeTooSkewed);
        let mut response = error.render_skewed(ctx.request.method, &RequestIds::generate(), &skew);
        let date = HeaderValue::from_str(&httpdate::fmt_http_date(server_time)).expect("an HTTP date is ASCII");
        response.headers_mut().insert(http::header::DATE, date);
        RequestAction::End(Ending::Respond(response.map(full)))
    }

    fn describe(&self) -> String {
        format!(
            "clock_skew {}{} (403 RequestTimeTooSkewed)",
            if self.behind { "-" } else { "+" },
            humantime::format_duration(self.by)
        )
    }
}

impl<'de> Deserialize<'de> for ClockSkew {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ClockSkew;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("how far S3's clock is off, e.g. 20m (ahead) or -20m (behind)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ClockSkew, E> {
                let (behind, rest) = match v.trim().strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, v.trim().strip_prefix('+').unwrap_or(v.trim())),
                };
                let by = rest.parse::<DurationValue>().map_err(E::custom)?.0;
                if by.is_zero() {
                    return Err(E::custom("a clock skew of zero is no skew"));
                }
                Ok(ClockSkew { by, behind })
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ahead_and_behind() {
        let ahead: ClockSkew = serde_yaml_ng::from_str("20m").unwrap();
        assert_eq!((ahead.by, ahead.behind), (Duration::from_secs(1200), false));
        let behind: ClockSkew = serde_yaml_ng::from_str("\"-1h\"").unwrap();
        assert_eq!((behind.by, behind.behind), (Duration::from_secs(3600), true));
        assert!(serde_yaml_ng::from_str::<ClockSkew>("0s").is_err());
        assert!(serde_yaml_ng::from_str::<ClockSkew>("soon").is_err());
    }
}
