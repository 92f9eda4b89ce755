//! `rate_limit`: S3's request-rate throttling. Matching requests pass while a token bucket
//! (per `global`, `bucket` or `prefix`) has tokens, and get the error (`SlowDown` by
//! default) above the rate, as S3 answers a prefix that exceeds its request rate.
//! `s3_defaults: true` uses S3's documented rates per partitioned prefix: 3,500
//! PUT/COPY/POST/DELETE and 5,500 GET/HEAD requests per second.
//!
//! Whether a request is above the rate is decided by the engine when the rule matches
//! ([`Fault::applies`]): under the rate, the rule does not fire at all. The token buckets are
//! the engine's state for the rule ([`Fault::new_state`]), so a reload, a rule added through
//! the admin API or one that expires does not refill them.
//!
//! State is per key and bounded: when more than [`MAX_KEYS`] keys are tracked, buckets that
//! have refilled completely (indistinguishable from new ones) are dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use http::Method;
use serde::Deserialize;

use super::{Applies, ErrorFault, Fault, FaultCtx, FaultState, Ending, RequestAction, state_of};
use crate::s3::{Code, RequestInfo, S3ErrorResponse};

/// Keys tracked before idle ones are swept.
pub const MAX_KEYS: usize = 100_000;

const S3_READS_PER_SECOND: f64 = 5_500.0;
const S3_WRITES_PER_SECOND: f64 = 3_500.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Global,
    Bucket,
    /// Bucket plus the key up to its last `/`: S3's partitioned prefix, roughly.
    #[default]
    Prefix,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFile {
    rps: Option<f64>,
    burst: Option<f64>,
    #[serde(default)]
    per: Per,
    error: Option<ErrorFault>,
    #[serde(default)]
    s3_defaults: bool,
}

#[derive(Debug, Clone, Copy)]
enum Limits {
    Fixed {
        rps: f64,
        burst: f64,
    },
    /// S3's rates by read/write class, burst one second's worth.
    S3Defaults,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RateLimitFile")]
pub struct RateLimit {
    limits: Limits,
    per: Per,
    error: S3ErrorResponse,
}

/// The engine-owned state: one token bucket per key.
#[derive(Debug, Default)]
pub struct Buckets(Mutex<HashMap<String, TokenBucket>>);

impl TryFrom<RateLimitFile> for RateLimit {
    type Error = String;
    fn try_from(f: RateLimitFile) -> Result<Self, String> {
        let limits = match (f.s3_defaults, f.rps) {
            (true, None) => Limits::S3Defaults,
            (true, Some(_)) => return Err("rate_limit takes `rps` or `s3_defaults: true`, not both".into()),
            (false, None) => return Err("rate_limit needs `rps` (requests per second) or `s3_defaults: true`".into()),
            (false, Some(rps)) if !(rps > 0.0 && rps.is_finite()) => {
                return Err(format!("rate_limit: rps must be positive, got {rps}"));
            }
            (false, Some(rps)) => {
                let burst = f.burst.unwrap_or(rps.max(1.0));
                if !(burst >= 1.0 && burst.is_finite()) {
                    return Err(format!("rate_limit: burst must be at least 1, got {burst}"));
                }
                Limits::Fixed { rps, burst }
            }
        };
        let error = match f.error {
            Some(e) => e.response,
            None => S3ErrorResponse::standard(Code::SlowDown),
        };
        Ok(RateLimit {
            limits,
            per: f.per,
            error,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    fn key(&self, req: &RequestInfo<'_>, class: &str) -> String {
        let bucket = req.bucket.as_deref().unwrap_or("");
        match self.per {
            Per::Global => class.to_owned(),
            Per::Bucket => format!("{class}:{bucket}"),
            Per::Prefix => {
                let key = req.key.as_deref().unwrap_or("");
                let prefix = key.rfind('/').map_or("", |i| &key[..=i]);
                format!("{class}:{bucket}/{prefix}")
            }
        }
    }

    /// Takes a token for this request from `buckets`; false when its bucket is empty.
    fn admit(&self, buckets: &Buckets, req: &RequestInfo<'_>) -> bool {
        let (rps, burst, class) = match self.limits {
            Limits::Fixed { rps, burst } => (rps, burst, ""),
            Limits::S3Defaults if matches!(*req.method, Method::GET | Method::HEAD) => {
                (S3_READS_PER_SECOND, S3_READS_PER_SECOND, "r")
            }
            Limits::S3Defaults => (S3_WRITES_PER_SECOND, S3_WRITES_PER_SECOND, "w"),
        };
        let key = self.key(req, class);
        let now = Instant::now();
        let mut buckets = buckets.0.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(&key) {
            // A bucket that has refilled is the same as a new one: forget those.
            buckets.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rps < burst);
        }
        let bucket = buckets.entry(key).or_insert(TokenBucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rps).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

}

impl Fault for RateLimit {
    const KIND: &'static str = "rate_limit";

    /// It fires only above the rate, and then answers: a request under the rate never sees
    /// the rule fire, and goes on to later rules and the upstream.
    const TERMINAL: bool = true;

    fn new_state(&self) -> Option<FaultState> {
        Some(std::sync::Arc::new(Buckets::default()))
    }

    /// Under the rate the request passes and the rule does not fire; above it, it fires.
    fn applies(&self, request: &RequestInfo<'_>, state: Option<&FaultState>) -> Applies {
        let Some(buckets) = state_of::<Buckets>(state) else {
            return Applies::Fire;
        };
        if self.admit(buckets, request) {
            Applies::Skip
        } else {
            Applies::Fire
        }
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        RequestAction::End(Ending::Respond(super::error::answer(
            &self.error,
            ctx.request.method,
            ctx.request.path,
        )))
    }

    fn describe(&self) -> String {
        let per = match self.per {
            Per::Global => "global",
            Per::Bucket => "bucket",
            Per::Prefix => "prefix",
        };
        match self.limits {
            Limits::Fixed { rps, burst } => {
                format!("rate_limit {rps}/s burst {burst} per {per} -> {}", self.error.code)
            }
            Limits::S3Defaults => format!("rate_limit S3 defaults per {per} -> {}", self.error.code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::Classifier;

    fn admit(limit: &RateLimit, buckets: &Buckets, target: &str) -> bool {
        let (method, uri) = (Method::GET, target.parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        limit.admit(buckets, &Classifier::default().classify(&method, &uri, &headers))
    }

    #[test]
    fn burst_then_refused_per_prefix() {
        let limit: RateLimit = serde_yaml_ng::from_str("{rps: 1, burst: 3, per: prefix}").unwrap();
        let b = Buckets::default();
        let hot: Vec<bool> = (0..5).map(|_| admit(&limit, &b, "/bkt/hot/a")).collect();
        assert_eq!(hot, [true, true, true, false, false]);
        assert!(!admit(&limit, &b, "/bkt/hot/b"), "same prefix as hot/a, same bucket");
        assert!(admit(&limit, &b, "/bkt/cold/a"), "another prefix has its own bucket");
        assert!(admit(&limit, &b, "/other/hot/a"), "another bucket too");
    }

    #[test]
    fn parse_errors() {
        assert!(serde_yaml_ng::from_str::<RateLimit>("{burst: 3}").is_err());
        assert!(serde_yaml_ng::from_str::<RateLimit>("{rps: 0}").is_err());
        assert!(serde_yaml_ng::from_str::<RateLimit>("{rps: 5, s3_defaults: true}").is_err());
        assert!(serde_yaml_ng::from_str::<RateLimit>("{rps: 5, per: object}").is_err());
        let custom: RateLimit = serde_yaml_ng::from_str("{rps: 5, error: ServiceUnavailable}").unwrap();
        assert_eq!(custom.error.code, "ServiceUnavailable");
        let s3: RateLimit = serde_yaml_ng::from_str("{s3_defaults: true}").unwrap();
        assert!(s3.describe().contains("S3 defaults per prefix -> SlowDown"));
    }

    #[test]
    fn memory_is_bounded() {
        let limit: RateLimit = serde_yaml_ng::from_str("{rps: 1000000, burst: 1, per: prefix}").unwrap();
        let b = Buckets::default();
        for i in 0..(MAX_KEYS + 10) {
            admit(&limit, &b, &format!("/bkt/p{i}/k"));
        }
        std::thread::sleep(std::time::Duration::from_millis(5)); // all refill at 1M/s
        admit(&limit, &b, "/bkt/new/k");
        let tracked = b.0.lock().unwrap().len();
        assert!(tracked < MAX_KEYS, "{tracked} keys tracked");
    }
}
