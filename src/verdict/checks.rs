//! One function per expectation. Each says what it looks at and where it can be wrong.

use std::collections::{BTreeMap, HashMap};

use super::calls::{Attempt, Call, Grouping};
use super::{Expectations, Status, Verdict};

/// What the judge saw of a drill.
pub struct Seen<'s, 'a> {
    pub attempts: &'s [Attempt<'a>],
    pub calls: &'s [Call<'a>],
    /// The first arrival, seconds since the epoch.
    pub start: f64,
    pub expect: &'s Expectations,
}

/// A retry this soon after the attempt before it ended is a tight loop (no backoff at all:
/// the SDKs' standard backoff waits tens of milliseconds at the least, on average).
pub const TIGHT_GAP: f64 = 0.005;

/// Errors that cannot succeed by retrying, when `no_retry_on` is not stated.
/// (`RequestTimeout`, `ExpiredToken` and `RequestTimeTooSkewed` are retried legitimately,
/// after the SDK fixes the request up.)
pub const NEVER_RETRY: &[&str] = &[
    "AccessDenied",
    "NoSuchBucket",
    "NoSuchKey",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidBucketName",
    "MethodNotAllowed",
];

/// What is shown for the reader but never passes or fails: no `expect:` key states it.
pub const OBSERVATIONS: &[&str] = &["ambiguous_writes"];

pub fn all(seen: &Seen<'_, '_>) -> Vec<Verdict> {
    vec![
        recovers_within(seen),
        max_attempts(seen),
        backoff(seen),
        honours_retry_after(seen),
        gives_up_within(seen),
        no_retry_on(seen),
        max_amplification(seen),
        no_open_multipart_uploads(seen),
        no_silent_corruption(seen),
        ambiguous_writes(seen),
    ]
}

fn verdict(expectation: &'static str, status: Status, summary: String, evidence: Vec<String>) -> Verdict {
    Verdict {
        expectation,
        status,
        summary,
        evidence,
    }
}

fn not_judged(expectation: &'static str, why: &str) -> Verdict {
    verdict(expectation, Status::NotJudged, why.to_owned(), Vec::new())
}

/// `Pass`/`Fail` when stated, `Info` when not.
fn judged(stated: bool, ok: bool) -> Status {
    match (stated, ok) {
        (false, _) => Status::Info,
        (true, true) => Status::Pass,
        (true, false) => Status::Fail,
    }
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.1} ms", s * 1000.0)
    } else {
        format!("{s:.2} s")
    }
}

impl Seen<'_, '_> {
    /// Drill time of an instant, `+12.345s`.
    fn t(&self, at: f64) -> String {
        format!("+{:.3}s", at - self.start)
    }

    fn attempt_line(&self, a: &Attempt<'_>) -> String {
        let fault = a.event.fault.as_deref().map(|f| format!(" [{f}]")).unwrap_or_default();
        format!("{} {}{fault}", self.t(a.at), a.what())
    }

    /// A call as evidence: what it was, then each attempt.
    fn call_lines(&self, call: &Call<'_>) -> Vec<String> {
        let e = call.first().event;
        let how = match (call.grouping, e.invocation.as_deref()) {
            (Grouping::Invocation, Some(id)) => format!("invocation {id}"),
            (Grouping::Invocation, None) => "one request".to_owned(),
            (Grouping::Inferred, _) => {
                "attempts grouped by inference (same operation and key after a failure)".to_owned()
            }
        };
        let mut lines = vec![format!(
            "{} {}/{} ({how}): {} attempts",
            e.operation,
            e.bucket,
            e.key,
            call.attempts.len()
        )];
        lines.extend(call.attempts.iter().map(|a| format!("  {}", self.attempt_line(a))));
        lines
    }

    fn retried(&self) -> impl Iterator<Item = &Call<'_>> {
        self.calls.iter().filter(|c| c.attempts.len() > 1)
    }
}

/// Per rule and faulted operation: the time from the rule's last fault to the first success
/// of that operation (any key) after it; the faulted request itself counts when it succeeded
/// anyway (latency). Can be wrong when the drill ends while a rule still fires: that reads
/// as "never recovered".
fn recovers_within(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "recovers_within";
    // (rule, operation) → its last faulted attempt.
    let mut last: BTreeMap<(&str, &str), &Attempt<'_>> = BTreeMap::new();
    for a in seen.attempts {
        for rule in a.event.rule.iter().flat_map(|r| r.split(',')).filter(|r| !r.is_empty()) {
            last.insert((rule, a.event.operation.as_str()), a);
        }
    }
    if last.is_empty() {
        return not_judged(NAME, "no fault was injected");
    }
    let (mut stated, mut ok) = (false, true);
    let (mut evidence, mut slowest): (Vec<String>, Option<(f64, String)>) = (Vec::new(), None);
    for ((rule, op), fault) in &last {
        let limit = seen.expect.for_rule(Some(rule)).recovers_within;
        stated |= limit.is_some();
        let success = seen
            .attempts
            .iter()
            .filter(|a| a.event.operation == *op && a.at >= fault.at && !a.failed())
            .map(|a| a.end)
            .next();
        match success {
            None => {
                ok &= limit.is_none();
                evidence.push(format!(
                    "rule {rule}: {op} never succeeded after its last fault at {}",
                    seen.t(fault.end)
                ));
            }
            Some(end) => {
                let took = (end - fault.end).max(0.0);
                if let Some(limit) = limit
                    && took > limit.as_secs_f64()
                {
                    ok = false;
                    evidence.push(format!(
                        "rule {rule}: {op} succeeded again {} after its last fault (limit {})",
                        secs(took),
                        secs(limit.as_secs_f64())
                    ));
                }
                if slowest.as_ref().is_none_or(|(s, _)| took > *s) {
                    slowest = Some((took, format!("rule {rule}, {op}")));
                }
            }
        }
    }
    let never = evidence.iter().filter(|e| e.contains("never")).count();
    let mut summary = match &slowest {
        Some((took, what)) => format!("slowest recovery {} ({what})", secs(*took)),
        None => "no faulted operation succeeded again".to_owned(),
    };
    if never > 0 && slowest.is_some() {
        summary.push_str(&format!("; {never} never recovered"));
    }
    verdict(NAME, judged(stated, ok), summary, evidence)
}

/// The most attempts one logical call made.
fn max_attempts(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "max_attempts";
    let Some(worst) = seen.calls.iter().max_by_key(|c| c.attempts.len()) else {
        return not_judged(NAME, "no request");
    };
    let over: Vec<&Call<'_>> = seen
        .calls
        .iter()
        .filter(|c| {
            seen.expect
                .for_rule(c.rule())
                .max_attempts
                .is_some_and(|n| c.attempts.len() > n as usize)
        })
        .collect();
    let stated =
        seen.expect.drill.max_attempts.is_some() || seen.expect.rules.values().any(|e| e.max_attempts.is_some());
    let shown = over.iter().max_by_key(|c| c.attempts.len()).copied().unwrap_or(worst);
    let limit = seen.expect.for_rule(shown.rule()).max_attempts;
    let summary = format!(
        "at most {} attempts in one call{}; {} of {} calls retried",
        worst.attempts.len(),
        limit.map(|n| format!(" (limit {n})")).unwrap_or_default(),
        seen.retried().count(),
        seen.calls.len()
    );
    verdict(NAME, judged(stated, over.is_empty()), summary, seen.call_lines(shown))
}

/// Tight loops: a call whose retries (two or more) all came within [`TIGHT_GAP`] of the
/// attempt before, its attempts grouped by the SDK's invocation id or all on one connection.
/// One short gap alone is not counted: full jitter draws one now and then.
/// Jitter (only judged when `backoff` is stated): across calls grouped by invocation id, the
/// gaps before the same attempt number must vary; with five or more such gaps spread less
/// than 5 ms (or 20% of their mean), the retries are not jittered. (A fixed backoff's gaps
/// still vary by the client's timer and a loaded machine's scheduling: a few ms, which is
/// not jitter; the SDKs' full jitter spreads gaps over the whole backoff.)
fn backoff(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "backoff";
    let retried: Vec<&Call<'_>> = seen.retried().collect();
    if retried.is_empty() {
        return not_judged(NAME, "no call was retried");
    }
    let tight: Vec<&Call<'_>> = retried
        .iter()
        .copied()
        .filter(|c| c.attempts.len() >= 3 && c.gaps().all(|g| g < TIGHT_GAP))
        // Grouped by the SDK, or one connection's: not concurrent callers of one key.
        .filter(|c| c.grouping == Grouping::Invocation || c.one_connection())
        .filter(|c| seen.expect.for_rule(c.rule()).backoff != Some(false))
        .collect();
    let mut by_attempt: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for c in retried.iter().filter(|c| c.grouping == Grouping::Invocation) {
        for (i, gap) in c.gaps().enumerate() {
            by_attempt.entry(i + 2).or_default().push(gap);
        }
    }
    let stated = seen.expect.drill.backoff == Some(true) || seen.expect.rules.values().any(|e| e.backoff == Some(true));
    let unjittered: Vec<(usize, f64, f64)> = by_attempt
        .iter()
        .filter(|(_, gaps)| gaps.len() >= 5)
        .filter_map(|(n, gaps)| {
            let (min, max) = gaps
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
            let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
            (max - min < (0.005f64).max(0.2 * mean)).then_some((*n, min, max))
        })
        .collect();
    let shortest = retried.iter().flat_map(|c| c.gaps()).fold(f64::MAX, f64::min);
    let mut summary = format!(
        "{} retried calls, shortest gap before a retry {}",
        retried.len(),
        secs(shortest)
    );
    let mut evidence = Vec::new();
    if let Some(worst) = tight.iter().max_by_key(|c| c.attempts.len()) {
        summary.push_str(&format!(
            "; {} in a tight loop (every retry within {})",
            tight.len(),
            secs(TIGHT_GAP)
        ));
        evidence = seen.call_lines(worst);
    }
    for (n, min, max) in &unjittered {
        summary.push_str(&format!(
            "; attempt {n} always after {}-{} (not jittered)",
            secs(*min),
            secs(*max)
        ));
    }
    // A tight loop fails unless a rule says `backoff: false`; missing jitter only when stated.
    let status = if !tight.is_empty() || (stated && !unjittered.is_empty()) {
        Status::Fail
    } else if stated {
        Status::Pass
    } else {
        Status::Info
    };
    verdict(NAME, status, summary, evidence)
}

/// After an answer carrying `Retry-After: R`, the call's next attempt came at least R later
/// (with 10% and 50 ms of slack for clocks and scheduling).
fn honours_retry_after(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "honours_retry_after";
    let mut checked = 0;
    let mut broken: Vec<(&Call<'_>, f64, f64)> = Vec::new();
    for call in seen.calls {
        for (w, gap) in call.attempts.windows(2).zip(call.gaps()) {
            if let Some(wait) = w[0].event.retry_after_s {
                checked += 1;
                if gap < wait * 0.9 - 0.05 {
                    broken.push((call, wait, gap));
                }
            }
        }
    }
    if checked == 0 {
        return not_judged(NAME, "no retry followed an answer with Retry-After");
    }
    let stated = seen.expect.drill.honours_retry_after == Some(true)
        || seen.expect.rules.values().any(|e| e.honours_retry_after == Some(true));
    let (summary, evidence) = match broken.iter().max_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2))) {
        Some((call, wait, gap)) => (
            format!(
                "{} of {checked} retries came before the Retry-After (worst: {} of {})",
                broken.len(),
                secs(*gap),
                secs(*wait)
            ),
            seen.call_lines(call),
        ),
        None => (
            format!("all {checked} retries after a Retry-After waited for it"),
            Vec::new(),
        ),
    };
    verdict(NAME, judged(stated, broken.is_empty()), summary, evidence)
}

/// Held requests: blackholed (`no_response` under a blackhole) or kept waiting by a fault
/// and left by the client (`client_gone`): how long the client waited, from arrival to
/// leaving. A request still held when the proxy stopped (`still_held`) means the client has
/// no read timeout: a failure by default.
fn gives_up_within(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "gives_up_within";
    let held: Vec<&Attempt<'_>> = seen
        .attempts
        .iter()
        .filter(|a| a.rule().is_some())
        .filter(|a| match a.event.outcome.as_deref() {
            Some("still_held" | "client_gone") => true,
            Some("no_response") => a.event.fault.as_deref().is_some_and(|f| f.contains("blackhole")),
            _ => false,
        })
        .collect();
    if held.is_empty() {
        return not_judged(NAME, "no request was held by a fault");
    }
    let still: Vec<&&Attempt<'_>> = held
        .iter()
        .filter(|a| a.event.outcome.as_deref() == Some("still_held"))
        .collect();
    let waited = |a: &Attempt<'_>| a.end - a.at;
    let mut stated = false;
    let late: Vec<&&Attempt<'_>> = held
        .iter()
        .filter(|a| a.event.outcome.as_deref() != Some("still_held"))
        .filter(|a| {
            let limit = seen.expect.for_rule(a.rule()).gives_up_within;
            stated |= limit.is_some();
            limit.is_some_and(|l| waited(a) > l.as_secs_f64())
        })
        .collect();
    let longest = held
        .iter()
        .filter(|a| a.event.outcome.as_deref() != Some("still_held"))
        .map(|a| waited(a))
        .fold(0.0, f64::max);
    let mut summary = format!("{} held requests, the longest left after {}", held.len(), secs(longest));
    if !still.is_empty() {
        summary.push_str(&format!(
            "; {} still held when the drill ended (no read timeout?)",
            still.len()
        ));
    }
    let mut evidence: Vec<String> = still
        .iter()
        .take(10)
        .map(|a| {
            format!(
                "{} {}/{} still waiting after {} (rule {})",
                a.event.operation,
                a.event.bucket,
                a.event.key,
                secs(waited(a)),
                a.rule().unwrap_or("?")
            )
        })
        .collect();
    evidence.extend(late.iter().take(10).map(|a| {
        format!(
            "{} {}/{} left after {} ({})",
            a.event.operation,
            a.event.bucket,
            a.event.key,
            secs(waited(a)),
            seen.attempt_line(a)
        )
    }));
    let status = if !still.is_empty() || !late.is_empty() {
        Status::Fail
    } else {
        judged(stated, true)
    };
    verdict(NAME, status, summary, evidence)
}

/// A call that got an error which cannot succeed by retrying and then tried again. Within
/// one invocation id that is the SDK's doing (certain); across invocations it is inferred (an
/// app that polls for a key to appear looks the same: say `no_retry_on: []`).
fn no_retry_on(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "no_retry_on";
    let stated = seen.expect.drill.no_retry_on.is_some() || seen.expect.rules.values().any(|e| e.no_retry_on.is_some());
    let codes_for = |call: &Call<'_>| -> Vec<String> {
        seen.expect
            .for_rule(call.rule())
            .no_retry_on
            .unwrap_or_else(|| NEVER_RETRY.iter().map(|c| c.to_string()).collect())
    };
    let matches = |codes: &[String], code: &str| {
        codes
            .iter()
            .any(|c| c == code || (c == "NoSuchKey" && code == "NotFound"))
    };
    let mut met = 0;
    let mut retried: Vec<(&Call<'_>, String)> = Vec::new();
    for call in seen.calls {
        let codes = codes_for(call);
        for (i, a) in call.attempts.iter().enumerate() {
            let Some(code) = a.event.error_code.as_deref() else {
                continue;
            };
            if !matches(&codes, code) {
                continue;
            }
            met += 1;
            if i + 1 < call.attempts.len() {
                retried.push((call, code.to_owned()));
                break;
            }
        }
    }
    if met == 0 {
        return not_judged(NAME, "no answer carried an error that retrying cannot fix");
    }
    let (summary, evidence) = match retried
        .iter()
        .max_by_key(|(c, _)| (c.grouping == Grouping::Invocation, c.attempts.len()))
    {
        Some((call, code)) => (
            format!(
                "{} calls retried an error retrying cannot fix (e.g. {code}); {} of them within one invocation",
                retried.len(),
                retried
                    .iter()
                    .filter(|(c, _)| c.grouping == Grouping::Invocation)
                    .count()
            ),
            seen.call_lines(call),
        ),
        None => (format!("{met} such errors, none retried"), Vec::new()),
    };
    verdict(NAME, judged(stated, retried.is_empty()), summary, evidence)
}

/// Per rule, over its fault window (its first fault to its last): requests per logical call
/// among the calls that began in it, and the request rate in it against the rate in as long
/// a window just before (when there was traffic before).
fn max_amplification(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "max_amplification";
    let mut windows: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for a in seen.attempts {
        for rule in a.event.rule.iter().flat_map(|r| r.split(',')).filter(|r| !r.is_empty()) {
            let w = windows.entry(rule).or_insert((a.at, a.end));
            w.0 = w.0.min(a.at);
            w.1 = w.1.max(a.end);
        }
    }
    if windows.is_empty() {
        return not_judged(NAME, "no fault was injected");
    }
    let (mut stated, mut ok) = (false, true);
    let mut worst: Option<(f64, String)> = None;
    let mut evidence = Vec::new();
    for (rule, (from, to)) in &windows {
        let calls: Vec<&Call<'_>> = seen
            .calls
            .iter()
            .filter(|c| c.first().at >= *from && c.first().at <= *to)
            .collect();
        if calls.is_empty() {
            continue;
        }
        let requests: usize = calls.iter().map(|c| c.attempts.len()).sum();
        let ratio = requests as f64 / calls.len() as f64;
        let span = (to - from).max(0.001);
        let during = seen.attempts.iter().filter(|a| a.at >= *from && a.at <= *to).count() as f64 / span;
        let before = seen
            .attempts
            .iter()
            .filter(|a| a.at >= from - span && a.at < *from)
            .count() as f64
            / span;
        let rate = if from - span >= seen.start - 1e-9 && before > 0.0 {
            format!(", request rate {:.1}x the rate before", during / before)
        } else {
            String::new()
        };
        let line = format!(
            "rule {rule}: {requests} requests for {} calls ({ratio:.2} per call){rate}",
            calls.len()
        );
        let limit = seen.expect.for_rule(Some(rule)).max_amplification;
        stated |= limit.is_some();
        if let Some(limit) = limit
            && ratio > limit
        {
            ok = false;
            evidence.push(format!("{line}, limit {limit}"));
        }
        if worst.as_ref().is_none_or(|(r, _)| ratio > *r) {
            worst = Some((ratio, line));
        }
    }
    let Some((_, line)) = worst else {
        return not_judged(NAME, "no call began while faults fired");
    };
    verdict(NAME, judged(stated, ok), format!("worst: {line}"), evidence)
}

/// Multipart uploads created through s3chaos (CreateMultipartUpload answered with an
/// `UploadId`) and neither completed nor aborted through it by the end. Uploads made before
/// the drill, or through another path, are not seen.
fn no_open_multipart_uploads(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "no_open_multipart_uploads";
    let mut open: BTreeMap<&str, &Attempt<'_>> = BTreeMap::new();
    let mut created = 0;
    for a in seen.attempts {
        let (Some(id), Some(status)) = (a.event.upload_id.as_deref(), a.event.status) else {
            continue;
        };
        match a.event.operation.as_str() {
            "CreateMultipartUpload" if (200..300).contains(&status) => {
                created += 1;
                open.insert(id, a);
            }
            "CompleteMultipartUpload" | "AbortMultipartUpload"
                if (200..300).contains(&status) || a.event.error_code.as_deref() == Some("NoSuchUpload") =>
            {
                open.remove(id);
            }
            _ => {}
        }
    }
    if created == 0 {
        return not_judged(NAME, "no multipart upload was created");
    }
    let off = seen.expect.drill.no_open_multipart_uploads == Some(false);
    let evidence: Vec<String> = open
        .iter()
        .take(20)
        .map(|(id, a)| {
            format!(
                "{}/{} upload {id}, created {}",
                a.event.bucket,
                a.event.key,
                seen.t(a.at)
            )
        })
        .collect();
    let summary = format!("{created} uploads created, {} left open", open.len());
    let status = match (off, open.is_empty()) {
        (true, _) => Status::Info,
        (false, true) => Status::Pass,
        (false, false) => Status::Fail,
    };
    verdict(NAME, status, summary, evidence)
}

/// GETs whose body s3chaos corrupted or cut, and whose key the client never read whole again
/// afterwards: it may have kept bad or partial data ("may": it may also have thrown it away).
fn no_silent_corruption(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "no_silent_corruption";
    let damaged: Vec<&Attempt<'_>> = seen
        .attempts
        .iter()
        .filter(|a| a.event.operation == "GetObject")
        .filter(|a| {
            a.event.outcome.as_deref() == Some("cut")
                || a.event
                    .fault
                    .as_deref()
                    .is_some_and(|f| f.contains("corrupt") && !f.contains("of the upload"))
        })
        .collect();
    if damaged.is_empty() {
        return not_judged(NAME, "no GET body was corrupted or cut");
    }
    let mut reread: HashMap<(&str, &str), Vec<f64>> = HashMap::new();
    for a in seen
        .attempts
        .iter()
        .filter(|a| a.event.operation == "GetObject" && !a.failed())
    {
        reread
            .entry((a.event.bucket.as_str(), a.event.key.as_str()))
            .or_default()
            .push(a.at);
    }
    let kept: Vec<&&Attempt<'_>> = damaged
        .iter()
        .filter(|a| {
            let later = reread.get(&(a.event.bucket.as_str(), a.event.key.as_str()));
            !later.is_some_and(|times| times.iter().any(|t| *t > a.at))
        })
        .collect();
    let stated = seen.expect.drill.no_silent_corruption == Some(true)
        || seen.expect.rules.values().any(|e| e.no_silent_corruption == Some(true));
    let summary = format!(
        "{} GET bodies corrupted or cut; {} never read again (the client may have kept bad data)",
        damaged.len(),
        kept.len()
    );
    let evidence = kept
        .iter()
        .take(20)
        .map(|a| format!("{} {}", seen.attempt_line(a), a.event.key))
        .collect();
    verdict(NAME, judged(stated, kept.is_empty()), summary, evidence)
}

/// Writes done upstream whose client was told they failed (`when: after_upstream`), and what
/// the client did next with that key: read it back (it found out what happened), wrote it
/// again (fine if the write is idempotent: same key, same bytes, or conditional), something
/// else, or nothing. Never fails: whether the next step was right depends on the app.
fn ambiguous_writes(seen: &Seen<'_, '_>) -> Verdict {
    const NAME: &str = "ambiguous_writes";
    let ambiguous: Vec<&Attempt<'_>> = seen
        .attempts
        .iter()
        .filter(|a| a.event.fault.as_deref().is_some_and(|f| f.contains("after upstream")))
        .collect();
    if ambiguous.is_empty() {
        return not_judged(NAME, "no write was done upstream and reported failed");
    }
    let mut next_steps: BTreeMap<&str, usize> = BTreeMap::new();
    let mut evidence = Vec::new();
    for a in &ambiguous {
        let next = seen.attempts.iter().find(|n| {
            n.at > a.at
                && n.event.bucket == a.event.bucket
                && n.event.key == a.event.key
                && !std::ptr::eq(n.event, a.event)
        });
        let step = match next.map(|n| n.event.operation.as_str()) {
            None => "did nothing more with the key",
            Some("GetObject" | "HeadObject") => "read it back",
            Some(op) if op == a.event.operation => "wrote it again",
            Some(_) => "did something else with it",
        };
        *next_steps.entry(step).or_default() += 1;
        if evidence.len() < 10 {
            let then = next
                .map(|n| format!(", then {} {}", seen.t(n.at), n.event.operation))
                .unwrap_or_default();
            evidence.push(format!(
                "{} {}/{} {}{then}",
                a.event.operation,
                a.event.bucket,
                a.event.key,
                seen.attempt_line(a)
            ));
        }
    }
    let steps: Vec<String> = next_steps.iter().map(|(step, n)| format!("{n} {step}")).collect();
    let summary = format!(
        "{} writes done but reported failed: the client {}",
        ambiguous.len(),
        steps.join(", ")
    );
    verdict(NAME, Status::Info, summary, evidence)
}

#[cfg(test)]
mod tests {
    use crate::scenario::Expect;
    use crate::telemetry::RequestEvent;
    use crate::verdict::{Expectations, Status, judge};

    fn at(ms: f64, op: &str, key: &str, status: Option<u16>, invocation: &str) -> RequestEvent {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_800_000_000_000_000 + (ms * 1000.0) as u64);
        RequestEvent {
            time: humantime::format_rfc3339_micros(t).to_string(),
            operation: op.into(),
            bucket: "b".into(),
            key: key.into(),
            status,
            latency_ms: 0.2,
            duration_ms: Some(0.2),
            outcome: Some(if status.is_some() { "complete" } else { "no_response" }.into()),
            invocation: (!invocation.is_empty()).then(|| invocation.to_owned()),
            conn: Some(1),
            ..Default::default()
        }
    }

    fn faulted(mut e: RequestEvent, rule: &str, fault: &str, code: &str) -> RequestEvent {
        e.rule = Some(rule.into());
        e.fault = Some(fault.into());
        e.error_code = (!code.is_empty()).then(|| code.to_owned());
        e
    }

    fn status_of(events: &[RequestEvent], expect: &Expectations, name: &str) -> (Status, String) {
        let v = judge(events, expect);
        let v = v.verdicts.iter().find(|v| v.expectation == name).unwrap();
        (v.status, format!("{}\n{}", v.summary, v.evidence.join("\n")))
    }

    #[test]
    fn a_tight_retry_loop_fails_backoff_by_default_and_spaced_retries_do_not() {
        let mut tight = Vec::new();
        for i in 0..5 {
            tight.push(faulted(
                at(i as f64 * 0.5, "GetObject", "k", Some(503), ""),
                "storm",
                "error SlowDown",
                "SlowDown",
            ));
        }
        tight.push(at(3.0, "GetObject", "k", Some(200), ""));
        let (status, text) = status_of(&tight, &Expectations::default(), "backoff");
        assert_eq!(status, Status::Fail, "{text}");
        assert!(text.contains("tight loop") && text.contains("GetObject b/k"), "{text}");

        let spaced: Vec<RequestEvent> = [0.0, 80.0, 260.0]
            .iter()
            .enumerate()
            .map(|(i, ms)| {
                let e = at(*ms, "GetObject", "k", Some(if i < 2 { 503 } else { 200 }), "inv-1");
                if i < 2 {
                    faulted(e, "storm", "error SlowDown", "SlowDown")
                } else {
                    e
                }
            })
            .collect();
        let (status, text) = status_of(&spaced, &Expectations::default(), "backoff");
        assert_eq!(status, Status::Info, "{text}");
    }

    #[test]
    fn attempts_over_the_limit_and_retried_access_denied_fail_when_stated() {
        let mut events: Vec<RequestEvent> = (0..4)
            .map(|i| {
                faulted(
                    at(i as f64 * 100.0, "PutObject", "k", Some(403), "inv"),
                    "deny",
                    "error AccessDenied",
                    "AccessDenied",
                )
            })
            .collect();
        events.push(at(500.0, "PutObject", "k", Some(200), "inv"));
        let expect = Expectations {
            drill: Expect {
                max_attempts: Some(3),
                no_retry_on: Some(vec!["AccessDenied".into()]),
                ..Default::default()
            },
            ..Default::default()
        };
        let (status, text) = status_of(&events, &expect, "max_attempts");
        assert_eq!(status, Status::Fail, "{text}");
        assert!(text.contains("(invocation inv): 5 attempts"), "{text}");
        let (status, text) = status_of(&events, &expect, "no_retry_on");
        assert_eq!(status, Status::Fail, "{text}");
        assert_eq!(
            status_of(&events, &Expectations::default(), "no_retry_on").0,
            Status::Info
        );
    }

    #[test]
    fn held_requests_open_uploads_and_unread_corruption_are_found() {
        let mut held = faulted(at(0.0, "GetObject", "h", None, "i1"), "hole", "blackhole", "");
        held.outcome = Some("still_held".into());
        held.duration_ms = Some(30_000.0);
        let mut left = faulted(at(10.0, "GetObject", "g", None, "i2"), "hole", "blackhole", "");
        left.duration_ms = Some(2_000.0);
        let mut create = at(20.0, "CreateMultipartUpload", "m", Some(200), "i3");
        create.upload_id = Some("U1".into());
        let mut create2 = at(30.0, "CreateMultipartUpload", "n", Some(200), "i4");
        create2.upload_id = Some("U2".into());
        let mut done = at(40.0, "CompleteMultipartUpload", "n", Some(200), "i5");
        done.upload_id = Some("U2".into());
        let bad = faulted(at(50.0, "GetObject", "c", Some(200), "i6"), "flip", "corrupt 1 bit", "");
        let events = vec![held, left, create, create2, done, bad];
        let none = Expectations::default();
        let (status, text) = status_of(&events, &none, "gives_up_within");
        assert_eq!(status, Status::Fail, "{text}");
        assert!(text.contains("1 still held") && text.contains("b/h"), "{text}");
        let (status, text) = status_of(&events, &none, "no_open_multipart_uploads");
        assert_eq!(status, Status::Fail, "{text}");
        assert!(text.contains("upload U1") && !text.contains("U2"), "{text}");
        let (status, text) = status_of(&events, &none, "no_silent_corruption");
        assert_eq!(status, Status::Info, "{text}");
        assert!(text.contains("1 never read again"), "{text}");
        let stated = Expectations {
            drill: Expect {
                gives_up_within: Some(std::time::Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        };
        let (_, text) = status_of(&events, &stated, "gives_up_within");
        assert!(text.contains("b/g left after 2.00 s"), "{text}");
    }

    #[test]
    fn what_the_client_did_after_an_ambiguous_write_is_shown_and_never_fails() {
        let events = vec![
            faulted(
                at(0.0, "PutObject", "a", Some(500), "1"),
                "amb",
                "error InternalError (500) after upstream",
                "InternalError",
            ),
            at(40.0, "HeadObject", "a", Some(200), "2"),
            faulted(
                at(50.0, "PutObject", "b", Some(500), "3"),
                "amb",
                "error InternalError (500) after upstream",
                "InternalError",
            ),
            at(90.0, "PutObject", "b", Some(200), "4"),
        ];
        let (status, text) = status_of(&events, &Expectations::default(), "ambiguous_writes");
        assert_eq!(status, Status::Info, "{text}");
        assert!(
            text.contains("2 writes done but reported failed")
                && text.contains("1 read it back")
                && text.contains("1 wrote it again"),
            "{text}"
        );
    }

    #[test]
    fn recovery_is_timed_from_the_last_fault_to_the_next_success() {
        let events = vec![
            faulted(at(0.0, "GetObject", "a", Some(503), "1"), "outage", "error", "SlowDown"),
            faulted(
                at(1000.0, "GetObject", "b", Some(503), "2"),
                "outage",
                "error",
                "SlowDown",
            ),
            at(3500.0, "GetObject", "c", Some(200), "3"),
        ];
        let quick = Expectations {
            drill: Expect {
                recovers_within: Some(std::time::Duration::from_secs(1)),
                ..Default::default()
            },
            ..Default::default()
        };
        let (status, text) = status_of(&events, &quick, "recovers_within");
        assert_eq!(status, Status::Fail, "{text}");
        assert!(text.contains("2.50 s after its last fault"), "{text}");
        let mut rules = std::collections::HashMap::new();
        rules.insert(
            "outage".to_owned(),
            Expect {
                recovers_within: Some(std::time::Duration::from_secs(5)),
                ..Default::default()
            },
        );
        let per_rule = Expectations { rules, ..quick };
        assert_eq!(
            status_of(&events, &per_rule, "recovers_within").0,
            Status::Pass,
            "the rule's own expect wins"
        );
    }
}
