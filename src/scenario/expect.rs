//! `expect:`: what a drill expects of its clients, as plain data. The scenario states it (and
//! a rule may override it for the calls it faulted); [`crate::verdict`] judges it against
//! what the proxy saw.

use std::time::Duration;

use serde::Deserialize;

use crate::values::DurationValue;

/// Every expectation a drill may state; `None`: not stated (judged by its default, if any).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Each faulted operation succeeds again within this after its rule's last fault.
    #[serde(default, with = "duration")]
    pub recovers_within: Option<Duration>,
    /// No logical call makes more attempts than this.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Retries are spaced (no tight loop) and jittered.
    #[serde(default)]
    pub backoff: Option<bool>,
    /// After an answer with `Retry-After`, the next attempt waits at least that long.
    #[serde(default)]
    pub honours_retry_after: Option<bool>,
    /// Held requests (blackholed, stalled, delayed) are given up by the client within this.
    #[serde(default, with = "duration")]
    pub gives_up_within: Option<Duration>,
    /// Error codes a call must not retry (they cannot succeed by retrying).
    #[serde(default)]
    pub no_retry_on: Option<Vec<String>>,
    /// At most this many requests per logical call while faults fire.
    #[serde(default)]
    pub max_amplification: Option<f64>,
    /// Every multipart upload created through s3chaos is completed or aborted by the end.
    #[serde(default)]
    pub no_open_multipart_uploads: Option<bool>,
    /// Every GET body s3chaos corrupted or cut is read again.
    #[serde(default)]
    pub no_silent_corruption: Option<bool>,
}

impl Expect {
    /// `self`, with what `over` states taking its place (a rule's `expect:` over the file's).
    pub fn overridden_by(&self, over: &Expect) -> Expect {
        Expect {
            recovers_within: over.recovers_within.or(self.recovers_within),
            max_attempts: over.max_attempts.or(self.max_attempts),
            backoff: over.backoff.or(self.backoff),
            honours_retry_after: over.honours_retry_after.or(self.honours_retry_after),
            gives_up_within: over.gives_up_within.or(self.gives_up_within),
            no_retry_on: over.no_retry_on.clone().or_else(|| self.no_retry_on.clone()),
            max_amplification: over.max_amplification.or(self.max_amplification),
            no_open_multipart_uploads: over.no_open_multipart_uploads.or(self.no_open_multipart_uploads),
            no_silent_corruption: over.no_silent_corruption.or(self.no_silent_corruption),
        }
    }
}

mod duration {
    use super::*;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<DurationValue>::deserialize(d)?.map(|d| d.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_issue_example_and_refuses_unknown_keys() {
        let e: Expect = serde_yaml_ng::from_str(
            "{recovers_within: 30s, max_attempts: 5, backoff: true, honours_retry_after: true, gives_up_within: 20s, no_retry_on: [AccessDenied, NoSuchKey], max_amplification: 3, no_open_multipart_uploads: true, no_silent_corruption: true}",
        )
        .unwrap();
        assert_eq!(e.recovers_within, Some(Duration::from_secs(30)));
        assert_eq!(e.max_attempts, Some(5));
        assert_eq!(e.no_retry_on.as_deref().map(<[String]>::len), Some(2));
        assert!(serde_yaml_ng::from_str::<Expect>("{recover_within: 3s}").is_err());
        let rule: Expect = serde_yaml_ng::from_str("{max_attempts: 2}").unwrap();
        let merged = e.overridden_by(&rule);
        assert_eq!((merged.max_attempts, merged.backoff), (Some(2), Some(true)));
    }
}
