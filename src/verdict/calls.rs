//! From requests to logical calls: the attempts one call of the app made.
//!
//! - Attempts that carry the same `amz-sdk-invocation-id` are one call (the SDKs send the
//!   same id on every retry of a call): exact.
//! - Requests without one (clients that do not send it) are grouped by operation, bucket and
//!   key: a repeat within [`RETRY_WINDOW`] of the end of a failed attempt is a retry of the
//!   same call. Inferred.
//! - An app's own retry loop makes a new invocation per try: a call that ended in failure,
//!   followed within the window by a call of the same operation, bucket and key, is the same
//!   logical call too. Inferred.
//! - Either way the retry must come on the connection the failed answer came on (clients
//!   keep it alive and reuse it), unless that connection itself was lost or the answer
//!   closed it (`Connection: close`): another connection's request is more likely another
//!   thread's call.
//!
//! Where it can be wrong: two parts of an app reading the same key one after the other after
//! a failure look like one call retrying; a client that hides its attempts (retries inside
//! one connection's request, a cache) looks like fewer.

use std::collections::HashMap;

use crate::telemetry::RequestEvent;

/// How long after a failed attempt a repeat of the same operation, bucket and key counts as
/// its retry, seconds: the engine's (`nth:` counts calls the same way).
pub const RETRY_WINDOW: f64 = crate::engine::nth::RETRY_WINDOW.as_secs_f64();

/// One request as the judge sees it.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    pub event: &'a RequestEvent,
    /// Arrival, seconds since the Unix epoch.
    pub at: f64,
    /// When it ended (its last byte, the cut, the client leaving), seconds since the epoch.
    pub end: f64,
}

impl Attempt<'_> {
    /// What the client got was not a good answer: an error status, no answer, a body cut
    /// short, or it gave up waiting.
    pub fn failed(&self) -> bool {
        let e = self.event;
        e.status.is_none_or(|s| s >= 400)
            || matches!(
                e.outcome.as_deref(),
                Some("cut" | "upstream_error" | "client_gone" | "still_held" | "no_response")
            )
    }

    /// It ended without an answer the client could read: no response, a cut body, the
    /// connection lost.
    pub fn lost_connection(&self) -> bool {
        self.event.status.is_none()
            || matches!(
                self.event.outcome.as_deref(),
                Some("cut" | "no_response" | "client_gone" | "still_held")
            )
    }

    /// After it the client had to open a new connection: it lost this one, or the answer
    /// closed it (`Connection: close`).
    pub fn connection_ended(&self) -> bool {
        self.lost_connection() || self.event.closed == Some(true)
    }

    /// What the attempt got, in a word: the error code, the status, or the outcome.
    pub fn what(&self) -> String {
        let e = self.event;
        match (&e.error_code, e.status, e.outcome.as_deref()) {
            (_, _, Some(outcome @ ("cut" | "client_gone" | "still_held" | "upstream_error"))) => outcome.to_owned(),
            (Some(code), Some(status), _) => format!("{status} {code}"),
            (None, Some(status), _) => status.to_string(),
            (_, None, _) => "no response".to_owned(),
        }
    }

    /// The rule that faulted it (the first, when several fired).
    pub fn rule(&self) -> Option<&str> {
        self.event
            .rule
            .as_deref()
            .and_then(|r| r.split(',').next())
            .filter(|r| !r.is_empty())
    }
}

/// How a call's attempts were found to belong together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grouping {
    /// One invocation id: the SDK said so.
    Invocation,
    /// Same operation, bucket and key after a failure: inferred.
    Inferred,
}

/// One logical call: its attempts in order of arrival.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub attempts: Vec<Attempt<'a>>,
    pub grouping: Grouping,
}

impl<'a> Call<'a> {
    pub fn first(&self) -> &Attempt<'a> {
        &self.attempts[0]
    }

    pub fn last(&self) -> &Attempt<'a> {
        self.attempts.last().expect("a call has an attempt")
    }

    pub fn succeeded(&self) -> bool {
        !self.last().failed()
    }

    /// The rule that faulted the call's first faulted attempt.
    pub fn rule(&self) -> Option<&'a str> {
        self.attempts.iter().find_map(|a| {
            let e: &'a RequestEvent = a.event;
            e.rule
                .as_deref()
                .and_then(|r| r.split(',').next())
                .filter(|r| !r.is_empty())
        })
    }

    /// Every attempt came on one client connection.
    pub fn one_connection(&self) -> bool {
        let first = self.first().event.conn;
        first.is_some() && self.attempts.iter().all(|a| a.event.conn == first)
    }

    /// Gaps between the end of each attempt and the arrival of the next, seconds.
    pub fn gaps(&self) -> impl Iterator<Item = f64> + '_ {
        self.attempts.windows(2).map(|w| (w[1].at - w[0].end).max(0.0))
    }

    fn id(&self) -> (&'a str, &'a str, &'a str) {
        let e: &'a RequestEvent = self.attempts[0].event;
        (e.operation.as_str(), e.bucket.as_str(), e.key.as_str())
    }
}

/// The drill's requests in order of arrival, then its logical calls (ordered by their first
/// attempt).
pub fn attempts<'a>(events: impl IntoIterator<Item = &'a RequestEvent>) -> Vec<Attempt<'a>> {
    let mut out: Vec<Attempt<'a>> = events
        .into_iter()
        .filter_map(|event| {
            let at = humantime::parse_rfc3339_weak(&event.time)
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs_f64();
            let took = event.duration_ms.unwrap_or(event.latency_ms) / 1000.0;
            Some(Attempt {
                event,
                at,
                end: at + took,
            })
        })
        .collect();
    out.sort_by(|a, b| a.at.total_cmp(&b.at));
    out
}

pub fn calls<'a>(attempts: &[Attempt<'a>]) -> Vec<Call<'a>> {
    // 1. By invocation id, or inferred per (operation, bucket, key) for requests without one.
    let mut calls: Vec<Call<'a>> = Vec::new();
    let mut by_invocation: HashMap<&'a str, usize> = HashMap::new();
    let mut open_inferred: HashMap<(&'a str, &'a str, &'a str), usize> = HashMap::new();
    for attempt in attempts {
        let e: &'a RequestEvent = attempt.event;
        if let Some(id) = e.invocation.as_deref() {
            match by_invocation.get(id) {
                Some(&i) => calls[i].attempts.push(attempt.clone()),
                None => {
                    by_invocation.insert(id, calls.len());
                    calls.push(Call {
                        attempts: vec![attempt.clone()],
                        grouping: Grouping::Invocation,
                    });
                }
            }
            continue;
        }
        let key = (e.operation.as_str(), e.bucket.as_str(), e.key.as_str());
        if let Some(&i) = open_inferred.get(&key) {
            let last = calls[i].last();
            // A client retries an answer on the connection it came on (keep-alive); after the
            // connection itself failed, on a new one. Another connection's request after an
            // answered failure is more likely another thread's call.
            let same_client = last.event.conn == e.conn || last.connection_ended();
            if last.failed() && same_client && attempt.at - last.end <= RETRY_WINDOW {
                calls[i].attempts.push(attempt.clone());
                calls[i].grouping = Grouping::Inferred;
                continue;
            }
        }
        open_inferred.insert(key, calls.len());
        calls.push(Call {
            attempts: vec![attempt.clone()],
            grouping: Grouping::Invocation,
        });
    }
    // 2. The app's own retries: a failed call followed soon by one of the same target.
    let mut merged: Vec<Call<'a>> = Vec::with_capacity(calls.len());
    let mut last_of: HashMap<(&'a str, &'a str, &'a str), usize> = HashMap::new();
    for call in calls {
        let id = call.id();
        if let Some(&i) = last_of.get(&id) {
            let before: &Call<'a> = &merged[i];
            // Only once the failed call is over: calls that overlap are concurrent, not retries.
            let same_client = before.last().event.conn == call.first().event.conn || before.last().connection_ended();
            if !before.succeeded()
                && same_client
                && call.first().at - before.last().end <= RETRY_WINDOW
                && call.first().at >= before.last().end
            {
                let target = &mut merged[i];
                target.attempts.extend(call.attempts);
                target.attempts.sort_by(|a, b| a.at.total_cmp(&b.at));
                target.grouping = Grouping::Inferred;
                continue;
            }
        }
        last_of.insert(id, merged.len());
        merged.push(call);
    }
    merged
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn event(ms: u64, op: &str, key: &str, status: Option<u16>, invocation: Option<&str>) -> RequestEvent {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_800_000_000_000 + ms);
        RequestEvent {
            time: humantime::format_rfc3339_micros(at).to_string(),
            operation: op.into(),
            bucket: "b".into(),
            key: key.into(),
            status,
            latency_ms: 1.0,
            duration_ms: Some(1.0),
            outcome: Some(if status.is_some() { "complete" } else { "no_response" }.into()),
            invocation: invocation.map(str::to_owned),
            ..Default::default()
        }
    }

    /// Eight threads of a client that sends no invocation id read one key at once, each on
    /// its own connection; some get a 503. They are eight calls, not one call retrying.
    #[test]
    fn concurrent_readers_on_their_own_connections_are_not_one_call() {
        let events: Vec<RequestEvent> = (0..8u64)
            .map(|i| {
                let mut e = event(i, "GetObject", "hot", Some(if i % 2 == 0 { 503 } else { 200 }), None);
                e.conn = Some(i + 1);
                e
            })
            .collect();
        let attempts = attempts(&events);
        assert_eq!(calls(&attempts).len(), 8);
    }

    /// An answer that closed its connection (an error before the upload was read) is
    /// retried on a new one: still the same call.
    #[test]
    fn a_retry_after_an_answer_that_closed_the_connection_is_the_same_call() {
        let mut first = event(0, "PutObject", "k", Some(403), None);
        first.conn = Some(1);
        let mut again = event(100, "PutObject", "k", Some(403), None);
        again.conn = Some(2);
        let attempts_open = attempts([&first, &again]);
        assert_eq!(
            calls(&attempts_open).len(),
            2,
            "a kept-alive connection: another client's call"
        );
        first.closed = Some(true);
        let attempts_closed = attempts([&first, &again]);
        assert_eq!(calls(&attempts_closed).len(), 1);
    }

    #[test]
    fn attempts_group_by_invocation_then_by_target_after_a_failure() {
        let events = vec![
            event(0, "GetObject", "a", Some(503), Some("i1")),
            event(100, "GetObject", "a", Some(200), Some("i1")),
            // No invocation ids: a repeat after a failure is a retry; after a success, a new call.
            event(200, "PutObject", "p", Some(500), None),
            event(300, "PutObject", "p", Some(200), None),
            event(400, "PutObject", "p", Some(200), None),
            // The app's own loop: new invocation per try, after a failure.
            event(500, "HeadObject", "h", None, Some("x1")),
            event(700, "HeadObject", "h", Some(200), Some("x2")),
        ];
        let attempts = attempts(&events);
        let calls = calls(&attempts);
        let shape: Vec<(usize, Grouping)> = calls.iter().map(|c| (c.attempts.len(), c.grouping)).collect();
        assert_eq!(
            shape,
            vec![
                (2, Grouping::Invocation),
                (2, Grouping::Inferred),
                (1, Grouping::Invocation),
                (2, Grouping::Inferred)
            ]
        );
        assert!(calls.iter().all(Call::succeeded));
        let gap: Vec<f64> = calls[0].gaps().collect();
        assert!((gap[0] - 0.099).abs() < 1e-6, "{gap:?}");
    }
}
