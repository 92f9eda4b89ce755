//! `nth: N`: a rule that fires on the N-th logical call it matches, and on that call's
//! retries, never on another call. This is how `s3chaos explore` puts one fault at exactly
//! one recorded call: counting requests (`skip`) would be shifted by every SDK retry before
//! it, and counting attempts (`match: {attempt: 1}`) needs clients that number them.
//!
//! A request starts a new logical call unless it says it is a retry (`amz-sdk-request:
//! attempt=2` or later); clients that say nothing (rclone, s3cmd, curl) make one call per
//! request until the N-th. Once the N-th call is seen, a later request is one of its
//! attempts when it carries the same `amz-sdk-invocation-id`, or, from a client that sends
//! none, when it targets the same bucket and key, within [`RETRY_WINDOW`] of the last
//! attempt, and does not say it is a first attempt. That is the rule `s3chaos verdict` uses
//! to group attempts into calls, so what explore records and what it faults agree.
//!
//! `limit: 1` on top makes the fault transient (the first attempt only); without a limit
//! every attempt of the call fails (persistent).

use std::sync::Mutex;
use std::time::Duration;

use crate::s3::{RequestInfo, auth};

/// How long after an attempt of the chosen call a repeat of it (same bucket and key, no
/// invocation id) still counts as its retry: the SDKs' longest standard backoff.
pub const RETRY_WINDOW: Duration = Duration::from_secs(20);

/// The counter and the chosen call of one `nth` rule (the engine's state: it goes on across
/// reloads of the same drill).
#[derive(Debug)]
pub struct NthCall {
    n: u64,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Default)]
struct State {
    /// First attempts seen so far, up to `n`.
    calls: u64,
    /// The N-th call, once seen.
    chosen: Option<Chosen>,
}

#[derive(Debug, Clone)]
struct Chosen {
    invocation: Option<Box<str>>,
    bucket: Option<Box<str>>,
    key: Option<Box<str>>,
    /// Drill time of its latest attempt.
    last: Duration,
}

impl NthCall {
    pub fn new(n: std::num::NonZeroU64) -> NthCall {
        NthCall {
            n: n.get(),
            state: Mutex::default(),
        }
    }

    /// Whether `req`, which the rule matched at drill time `at`, is an attempt of the N-th
    /// call (and so may be faulted).
    pub fn admits(&self, req: &RequestInfo<'_>, at: Duration) -> bool {
        let attempt = auth::attempt(req.headers);
        let invocation = req.headers.get("amz-sdk-invocation-id").and_then(|v| v.to_str().ok());
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(chosen) = &mut state.chosen {
            let same = match (&chosen.invocation, invocation) {
                (Some(a), Some(b)) => **a == *b,
                _ => {
                    attempt != Some(1)
                        && chosen.bucket.as_deref() == req.bucket.as_deref()
                        && chosen.key.as_deref() == req.key.as_deref()
                        && at.saturating_sub(chosen.last) <= RETRY_WINDOW
                }
            };
            if same {
                chosen.last = at;
            }
            return same;
        }
        if attempt.is_some_and(|a| a > 1) {
            // A retry of an earlier call: not a call of its own.
            return false;
        }
        state.calls += 1;
        if state.calls < self.n {
            return false;
        }
        state.chosen = Some(Chosen {
            invocation: invocation.map(Into::into),
            bucket: req.bucket.as_deref().map(Into::into),
            key: req.key.as_deref().map(Into::into),
            last: at,
        });
        true
    }

    /// Goes on from `from`'s count (a new version of the same rule).
    pub fn take_over(&self, from: &NthCall) {
        if self.n != from.n {
            return;
        }
        let old = from.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = old;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, Method, Uri};

    fn request(key: &str, headers: &[(&'static str, &str)], nth: &NthCall, at_ms: u64) -> bool {
        let mut map = HeaderMap::new();
        map.insert("host", "127.0.0.1".parse().unwrap());
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let uri: Uri = format!("/b/{key}").parse().unwrap();
        let req = crate::s3::Classifier::default().classify(&Method::GET, &uri, &map);
        nth.admits(&req, Duration::from_millis(at_ms))
    }

    fn nth(n: u64) -> NthCall {
        NthCall::new(n.try_into().unwrap())
    }

    #[test]
    fn sdk_retries_of_earlier_calls_do_not_count_and_the_chosen_calls_retries_do() {
        let rule = nth(2);
        let sdk = |inv: &str, attempt: u32| {
            [
                ("amz-sdk-invocation-id", inv.to_owned()),
                ("amz-sdk-request", format!("attempt={attempt}; max=3")),
            ]
        };
        let send = |inv: &str, attempt: u32, at: u64| {
            let h = sdk(inv, attempt);
            let h: Vec<(&'static str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
            request("k", &h, &rule, at)
        };
        assert!(!send("a", 1, 0), "call 1");
        assert!(!send("a", 2, 10), "call 1's retry is not call 2");
        assert!(send("b", 1, 20), "call 2");
        assert!(send("b", 2, 30), "call 2's retry");
        assert!(send("b", 3, 40));
        assert!(!send("c", 1, 50), "call 3 is left alone");
    }

    #[test]
    fn clients_without_headers_count_requests_and_retry_the_same_key_soon() {
        let rule = nth(1);
        assert!(request("k", &[], &rule, 0));
        assert!(
            request("k", &[], &rule, 500),
            "a repeat of the key soon after: its retry"
        );
        assert!(!request("other", &[], &rule, 600), "another key: another call");
        assert!(
            !request("k", &[], &rule, 500 + RETRY_WINDOW.as_millis() as u64 + 1),
            "long after: a new call"
        );
        assert!(
            !request("k", &[("amz-sdk-request", "attempt=1")], &rule, 700),
            "a client that says it starts a new call"
        );
    }

    #[test]
    fn a_new_version_of_the_rule_goes_on_counting() {
        let old = nth(3);
        assert!(!request("k", &[], &old, 0));
        assert!(!request("k", &[], &old, 1));
        let new = nth(3);
        new.take_over(&old);
        assert!(request("k", &[], &new, 2), "the third call, counted across the reload");
    }
}
