//! `s3chaos report`: turns an event log (`--events FILE`) into a drill report, a
//! self-contained HTML page (an SVG timeline, no scripts, nothing fetched) or a Markdown
//! summary.
//!
//! The timeline shows, per time bucket, the request rate, the error rate (5xx and requests
//! never answered), and p50/p99 latency, with the drill's phases shaded and the buckets
//! where faults were injected marked. The table shows each operation, including how often
//! clients retried: a request the SDK marked as attempt 2 or later, or (for clients that do
//! not say) the same operation on the same key again within a second of a failure.

mod html;
mod markdown;

pub use html::{STYLE, escape};

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::telemetry::{DrillEvent, RequestEvent};
use crate::verdict::{Expectations, Verdicts};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} holds no request events (is it an `--events` file?)")]
    Empty { path: String },
}

/// One time bucket of the timeline.
#[derive(Debug, Clone, Default)]
pub struct Bucket {
    /// Seconds from the first request.
    pub start: f64,
    pub requests: u64,
    pub errors: u64,
    pub injected: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The phase most requests in the bucket were in.
    pub phase: Option<String>,
}

/// One row of the per-operation table.
#[derive(Debug, Clone, Default)]
pub struct OperationRow {
    pub operation: String,
    pub requests: u64,
    pub errors: u64,
    pub injected: u64,
    pub retries: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub source: String,
    pub first: SystemTime,
    pub span: Duration,
    pub bucket_width: f64,
    pub buckets: Vec<Bucket>,
    pub operations: Vec<OperationRow>,
    pub requests: u64,
    pub errors: u64,
    pub injected: u64,
    pub retries: u64,
    /// Lines that were not request events.
    pub skipped_lines: u64,
    /// Faults by rule, most first.
    pub rules: Vec<RuleOutcome>,
    /// Whether the app passed: its clients judged against the drill's `expect:`.
    pub verdicts: Verdicts,
    /// The drill's phases as its timeline ran them (from the log's drill lines), or, for a
    /// log without them, as the requests recorded them; with each phase's figures.
    pub phases: Vec<PhaseSpan>,
    /// Halts (start, end or `None` while still halted), seconds from the first request.
    pub halts: Vec<(f64, Option<f64>)>,
}

/// One phase of the drill: when, and what happened in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseSpan {
    pub name: String,
    /// Seconds from the report's start.
    pub start: f64,
    pub end: f64,
    pub requests: u64,
    pub failures: u64,
    pub faults: u64,
    pub p99_ms: f64,
}

/// What one rule did and whether the clients got over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOutcome {
    pub rule: String,
    /// Requests it faulted.
    pub faulted: u64,
    /// Whether a request of the same operation succeeded after the rule's last fault (the
    /// faulted request itself counts when it succeeded anyway, e.g. under latency).
    pub recovered: bool,
}

/// [`load`], with the verdicts judged against the drill's expectations (its scenario's
/// `expect:`), where `load` knows only the default checks.
pub fn load_judged(path: &Path, expect: &Expectations) -> Result<Report, ReportError> {
    from_text(path, &read(path)?, expect)
}

fn read(path: &Path) -> Result<String, ReportError> {
    std::fs::read_to_string(path).map_err(|source| ReportError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub fn load(path: &Path) -> Result<Report, ReportError> {
    load_judged(path, &Expectations::default())
}

fn from_text(path: &Path, text: &str, expect: &Expectations) -> Result<Report, ReportError> {
    let mut skipped = 0;
    let mut events = Vec::new();
    let mut drill = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let at = |time: &str| humantime::parse_rfc3339_weak(time).ok();
        if let Some(pair) = serde_json::from_str::<RequestEvent>(line)
            .ok()
            .and_then(|e| Some((at(&e.time)?, e)))
        {
            events.push(pair);
        } else if let Some(pair) = serde_json::from_str::<DrillEvent>(line)
            .ok()
            .and_then(|e| Some((at(&e.time)?, e)))
        {
            drill.push(pair);
        } else {
            skipped += 1;
        }
    }
    if events.is_empty() {
        return Err(ReportError::Empty {
            path: path.display().to_string(),
        });
    }
    let mut report = build(&mut events, expect);
    report.source = path.display().to_string();
    report.skipped_lines = skipped;
    drill.sort_by_key(|(t, _)| *t);
    report.timeline(&events, &drill);
    Ok(report)
}

impl Report {
    /// Seconds from the report's start to `at` (negative before the first request).
    fn offset(&self, at: SystemTime) -> f64 {
        match at.duration_since(self.first) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    /// The phases and halts from the log's drill lines (each phase from its start to the next
    /// phase, the drill's end, or the log's end), with each phase's figures. A log written
    /// before s3chaos recorded its timeline falls back to the phase each request was in.
    fn timeline(&mut self, events: &[(SystemTime, RequestEvent)], drill: &[(SystemTime, DrillEvent)]) {
        let end = self.buckets.len() as f64 * self.bucket_width;
        let mut spans: Vec<PhaseSpan> = Vec::new();
        for (at, e) in drill {
            let t = self.offset(*at).clamp(0.0, end);
            match e.drill.as_str() {
                "phase" => {
                    let name = e.phase.clone().unwrap_or_default();
                    if spans
                        .last()
                        .is_some_and(|last| last.name == name && (last.start - t).abs() < 0.5)
                    {
                        continue; // the same phase announced again (a reload)
                    }
                    if let Some(last) = spans.last_mut() {
                        last.end = last.end.min(t);
                    }
                    spans.push(PhaseSpan {
                        name,
                        start: t,
                        end,
                        ..PhaseSpan::default()
                    });
                }
                "over" | "expired" => {
                    if let Some(last) = spans.last_mut() {
                        last.end = last.end.min(t);
                    }
                }
                "halt" => self.halts.push((t, None)),
                "resume" => {
                    if let Some(open) = self.halts.iter_mut().rev().find(|(_, e)| e.is_none()) {
                        open.1 = Some(t);
                    }
                }
                _ => {}
            }
        }
        if spans.is_empty() {
            spans = phase_spans(self)
                .into_iter()
                .map(|(name, start, end)| PhaseSpan {
                    name,
                    start,
                    end,
                    ..PhaseSpan::default()
                })
                .collect();
        }
        let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); spans.len()];
        for (at, e) in events {
            let t = self.offset(*at);
            let Some(i) = spans.iter().position(|p| t >= p.start && t < p.end).or_else(|| {
                // The last request of the log ends the last phase.
                spans.iter().position(|p| (p.end - end).abs() < 1e-9 && t >= p.start)
            }) else {
                continue;
            };
            let span = &mut spans[i];
            span.requests += 1;
            span.failures += u64::from(is_error(e));
            span.faults += u64::from(e.rule.is_some());
            latencies[i].push(e.latency_ms);
        }
        for (span, mut lat) in spans.iter_mut().zip(latencies) {
            sort(&mut lat);
            span.p99_ms = percentile(&lat, 0.99);
        }
        self.phases = spans;
    }
}

/// A request the client did not get a good answer to: a 5xx, no response at all (a
/// blackhole, a reset, a client that gave up waiting for the head), or a body that did not
/// arrive whole because a fault cut it or the upstream broke off. A client that had its
/// answer's head and then stopped reading (an SDK that drops a body it does not need) is not
/// a failure. Logs written before the outcome was recorded are judged by status alone.
fn is_error(e: &RequestEvent) -> bool {
    e.status.is_none_or(|s| s >= 500) || matches!(e.outcome.as_deref(), Some("cut" | "upstream_error"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sort(v: &mut [f64]) {
    v.sort_by(|a, b| a.total_cmp(b));
}

/// Aggregates events (sorted here by time).
pub fn build(events: &mut [(SystemTime, RequestEvent)], expect: &Expectations) -> Report {
    events.sort_by_key(|(t, _)| *t);
    let first = events[0].0;
    let last = events[events.len() - 1].0;
    let span = last.duration_since(first).unwrap_or_default();
    // About one bucket a second, at most 600 buckets.
    let bucket_width = (span.as_secs_f64() / 600.0).ceil().max(1.0);
    let count = (span.as_secs_f64() / bucket_width).floor() as usize + 1;
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); count];
    let mut phases: Vec<HashMap<String, u64>> = vec![HashMap::new(); count];
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            start: i as f64 * bucket_width,
            ..Bucket::default()
        })
        .collect();
    let mut ops: BTreeMap<String, (OperationRow, Vec<f64>)> = BTreeMap::new();
    // Per rule: requests faulted, and the operation of its last fault with whether a request
    // of that operation has succeeded since.
    let mut rules: HashMap<String, (u64, String, bool)> = HashMap::new();
    // When each (operation, bucket, key) last failed, for the retry heuristic.
    let mut last_failure: HashMap<(String, String, String), SystemTime> = HashMap::new();
    let (mut errors, mut injected, mut retries) = (0, 0, 0);

    for (at, e) in events.iter() {
        let offset = at.duration_since(first).unwrap_or_default().as_secs_f64();
        let i = ((offset / bucket_width) as usize).min(count - 1);
        let failed = is_error(e);
        let b = &mut buckets[i];
        b.requests += 1;
        b.errors += u64::from(failed);
        b.injected += u64::from(e.rule.is_some());
        latencies[i].push(e.latency_ms);
        if let Some(phase) = &e.phase {
            *phases[i].entry(phase.clone()).or_default() += 1;
        }
        if !failed {
            for (_, op, recovered) in rules.values_mut() {
                *recovered |= *op == e.operation;
            }
        }
        for rule in e.rule.iter().flat_map(|r| r.split(',')) {
            let entry = rules.entry(rule.to_owned()).or_default();
            *entry = (entry.0 + 1, e.operation.clone(), !failed);
        }
        let id = (e.operation.clone(), e.bucket.clone(), e.key.clone());
        let retry = match &e.attempt {
            Some(attempt) => attempt_number(attempt).is_some_and(|n| n > 1),
            None => last_failure
                .get(&id)
                .is_some_and(|t| at.duration_since(*t).unwrap_or_default() <= Duration::from_secs(1)),
        };
        if failed {
            last_failure.insert(id, *at);
        }
        let (row, lat) = ops.entry(e.operation.clone()).or_insert_with(|| {
            (
                OperationRow {
                    operation: e.operation.clone(),
                    ..OperationRow::default()
                },
                Vec::new(),
            )
        });
        row.requests += 1;
        row.errors += u64::from(failed);
        row.injected += u64::from(e.rule.is_some());
        row.retries += u64::from(retry);
        lat.push(e.latency_ms);
        errors += u64::from(failed);
        injected += u64::from(e.rule.is_some());
        retries += u64::from(retry);
    }
    for ((b, mut lat), phase) in buckets.iter_mut().zip(latencies).zip(phases) {
        sort(&mut lat);
        b.p50_ms = percentile(&lat, 0.5);
        b.p99_ms = percentile(&lat, 0.99);
        b.phase = phase.into_iter().max_by_key(|(_, n)| *n).map(|(p, _)| p);
    }
    let operations = ops
        .into_values()
        .map(|(mut row, mut lat)| {
            sort(&mut lat);
            row.p50_ms = percentile(&lat, 0.5);
            row.p99_ms = percentile(&lat, 0.99);
            row
        })
        .collect();
    let mut rules: Vec<RuleOutcome> = rules
        .into_iter()
        .map(|(rule, (faulted, _, recovered))| RuleOutcome {
            rule,
            faulted,
            recovered,
        })
        .collect();
    rules.sort_by(|a, b| b.faulted.cmp(&a.faulted).then(a.rule.cmp(&b.rule)));
    Report {
        source: String::new(),
        first,
        span,
        bucket_width,
        buckets,
        operations,
        requests: events.len() as u64,
        errors,
        injected,
        retries,
        skipped_lines: 0,
        rules,
        verdicts: crate::verdict::judge(events.iter().map(|(_, e)| e), expect),
        phases: Vec::new(),
        halts: Vec::new(),
    }
}

/// `attempt=2; max=3` → 2.
fn attempt_number(header: &str) -> Option<u32> {
    header
        .split(';')
        .find_map(|part| part.trim().strip_prefix("attempt="))
        .and_then(|n| n.trim().parse().ok())
}

/// Contiguous runs of the same phase: (name, start seconds, end seconds).
pub fn phase_spans(report: &Report) -> Vec<(String, f64, f64)> {
    let mut spans: Vec<(String, f64, f64)> = Vec::new();
    for b in &report.buckets {
        let end = b.start + report.bucket_width;
        match (&b.phase, spans.last_mut()) {
            (Some(p), Some(last)) if &last.0 == p && (last.2 - b.start).abs() < 1e-9 => last.2 = end,
            (Some(p), _) => spans.push((p.clone(), b.start, end)),
            (None, _) => {}
        }
    }
    spans
}

impl OperationRow {
    /// Failed requests as a percentage of all.
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 * 100.0 / self.requests as f64
        }
    }
}

/// A table as both report formats show it: a header row, then rows of cells (plain text;
/// each format escapes and marks up on its own).
pub struct Table {
    pub header: &'static [&'static str],
    pub rows: Vec<Vec<Cell>>,
}

/// One cell; `bad` ones are highlighted (a rule the clients did not recover from).
pub struct Cell {
    pub text: String,
    pub bad: bool,
}

impl Cell {
    fn plain(text: impl ToString) -> Cell {
        Cell {
            text: text.to_string(),
            bad: false,
        }
    }
}

impl Report {
    /// The per-operation table.
    pub fn operation_table(&self) -> Table {
        Table {
            header: &[
                "operation",
                "requests",
                "failed",
                "injected",
                "retries",
                "p50 ms",
                "p99 ms",
            ],
            rows: self
                .operations
                .iter()
                .map(|o| {
                    vec![
                        Cell::plain(&o.operation),
                        Cell::plain(o.requests),
                        Cell::plain(format!("{} ({:.1}%)", o.errors, o.error_percent())),
                        Cell::plain(o.injected),
                        Cell::plain(o.retries),
                        Cell::plain(format!("{:.1}", o.p50_ms)),
                        Cell::plain(format!("{:.1}", o.p99_ms)),
                    ]
                })
                .collect(),
        }
    }

    /// The per-rule table: what each rule faulted and whether the clients got over it.
    /// One row per phase: when, requests, failures, p99, faults.
    pub fn phase_table(&self) -> Table {
        Table {
            header: &["phase", "from", "to", "requests", "failed", "p99 ms", "faults"],
            rows: self
                .phases
                .iter()
                .map(|p| {
                    let pct = if p.requests == 0 {
                        0.0
                    } else {
                        p.failures as f64 * 100.0 / p.requests as f64
                    };
                    vec![
                        Cell::plain(p.name.clone()),
                        Cell::plain(format!("{:.1} s", p.start)),
                        Cell::plain(format!("{:.1} s", p.end)),
                        Cell::plain(p.requests.to_string()),
                        Cell {
                            text: format!("{} ({pct:.1}%)", p.failures),
                            bad: p.failures > 0,
                        },
                        Cell::plain(format!("{:.1}", p.p99_ms)),
                        Cell::plain(p.faults.to_string()),
                    ]
                })
                .collect(),
        }
    }

    pub fn rule_table(&self) -> Table {
        Table {
            header: &["rule", "requests faulted", "clients recovered"],
            rows: self
                .rules
                .iter()
                .map(|o| {
                    vec![
                        Cell::plain(&o.rule),
                        Cell::plain(o.faulted),
                        Cell {
                            text: if o.recovered { "yes" } else { "no" }.into(),
                            bad: !o.recovered,
                        },
                    ]
                })
                .collect(),
        }
    }

    pub fn html(&self) -> String {
        html::render(self)
    }

    pub fn markdown(&self) -> String {
        markdown::render(self)
    }

    fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// Whether the last bucket with traffic had no errors: the clients recovered.
    pub fn recovered(&self) -> bool {
        self.buckets
            .iter()
            .rev()
            .find(|b| b.requests > 0)
            .is_some_and(|b| b.errors == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        ms: u64,
        op: &str,
        key: &str,
        status: Option<u16>,
        rule: Option<&str>,
        phase: &str,
    ) -> (SystemTime, RequestEvent) {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms);
        (
            at,
            RequestEvent {
                time: humantime::format_rfc3339_millis(at).to_string(),
                operation: op.into(),
                bucket: "b".into(),
                key: key.into(),
                status,
                latency_ms: ms as f64 % 7.0,
                bytes: None,
                outcome: None,
                promised_bytes: None,
                upload_bytes: None,
                duration_ms: None,
                rule: rule.map(str::to_owned),
                fault: None,
                phase: Some(phase.into()),
                ..Default::default()
            },
        )
    }

    #[test]
    fn buckets_phases_and_retries() {
        let mut events = vec![
            event(0, "GetObject", "a", Some(200), None, "calm"),
            event(500, "GetObject", "a", Some(200), None, "calm"),
            event(1200, "GetObject", "a", Some(503), Some("outage/down"), "outage"),
            event(1400, "GetObject", "a", Some(503), Some("outage/down"), "outage"),
            event(2100, "PutObject", "b", None, Some("outage/rst"), "outage"),
            event(3100, "GetObject", "a", Some(200), None, "calm"),
        ];
        let r = build(&mut events, &Expectations::default());
        assert_eq!(r.requests, 6);
        assert_eq!((r.errors, r.injected), (3, 3));
        assert_eq!(r.buckets.len(), 4);
        assert_eq!(r.buckets[1].errors, 2);
        assert_eq!(r.retries, 1, "the GET of `a` again 200 ms after a failure");
        assert!(r.recovered());
        let spans = phase_spans(&r);
        assert_eq!(
            spans.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["calm", "outage", "calm"]
        );
        assert_eq!(
            r.rules[0],
            RuleOutcome {
                rule: "outage/down".into(),
                faulted: 2,
                recovered: true
            },
            "a GET of the same operation succeeded later"
        );
        assert!(!r.rules[1].recovered, "no PutObject succeeded after the reset");
        let get = r.operations.iter().find(|o| o.operation == "GetObject").unwrap();
        assert_eq!((get.requests, get.errors), (5, 2));
        assert_eq!(attempt_number("attempt=2; max=3"), Some(2));
        assert!(r.markdown().contains("| GetObject | 5 | 2 (40.0%)"));
        assert!(r.html().contains("<svg"));
    }

    #[test]
    fn cut_bodies_and_answers_never_given_are_failures() {
        let with = |ms, outcome: &str| {
            let mut e = event(ms, "GetObject", "a", Some(200), Some("cut"), "p");
            e.1.outcome = Some(outcome.into());
            e
        };
        let mut events = vec![
            with(0, "complete"),
            with(100, "cut"),
            with(200, "client_gone"),
            event(300, "GetObject", "a", Some(200), None, "p"),
        ];
        events[2].1.status = None; // The client gave up before the head.
        let mut late = with(400, "client_gone"); // ... or stopped reading after a 200 head.
        late.1.rule = None;
        events.push(late);
        let r = build(&mut events, &Expectations::default());
        assert_eq!(
            r.errors, 2,
            "a cut body and an answer never given failed the client; a body left unread did not"
        );
        assert_eq!(r.operations[0].errors, 2);
    }

    /// The phases come from the drill's own lines: one span each, even across a second
    /// without requests (the client backing off in the outage), with each phase's figures;
    /// a halt and its resume are kept.
    #[test]
    fn phases_come_from_the_drill_timeline_not_from_where_requests_fell() {
        let drill = |ms: u64, kind: &str, phase: Option<&str>| {
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms);
            serde_json::to_string(&DrillEvent {
                time: humantime::format_rfc3339_micros(at).to_string(),
                drill: kind.into(),
                phase: phase.map(str::to_owned),
                ..DrillEvent::default()
            })
            .unwrap()
        };
        let mut lines = vec![drill(0, "phase", Some("calm"))];
        for ms in (0..2000).step_by(100) {
            lines.push(serde_json::to_string(&event(ms, "GetObject", "k", Some(200), None, "calm").1).unwrap());
        }
        lines.push(drill(2000, "phase", Some("outage")));
        // Requests in the outage only at its start and its end: nothing from 2.3 s to 4.6 s.
        for ms in [2000, 2100, 2200, 4600, 4700, 4800] {
            lines.push(
                serde_json::to_string(&event(ms, "GetObject", "k", Some(503), Some("down"), "outage").1).unwrap(),
            );
        }
        lines.push(drill(3000, "halt", None));
        lines.push(drill(3500, "resume", None));
        lines.push(drill(5000, "phase", Some("recovery")));
        lines.push(serde_json::to_string(&event(5500, "GetObject", "k", Some(200), None, "recovery").1).unwrap());
        lines.push(drill(6000, "over", None));
        let text = lines.join("\n");
        let r = from_text(Path::new("x.jsonl"), &text, &Expectations::default()).unwrap();
        let spans: Vec<(&str, f64, f64, u64, u64)> = r
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.start, p.end, p.requests, p.failures))
            .collect();
        assert_eq!(
            spans,
            vec![
                ("calm", 0.0, 2.0, 20, 0),
                ("outage", 2.0, 5.0, 6, 6),
                ("recovery", 5.0, 6.0, 1, 0)
            ]
        );
        assert_eq!(r.halts, vec![(3.0, Some(3.5))]);
        assert_eq!(r.skipped_lines, 0, "drill lines are not skipped lines");
        let html = r.html();
        assert_eq!(
            html.matches(r#"data-phase="outage""#).count(),
            3,
            "one outage band per chart"
        );
        assert!(html.contains(r#"class="halt""#));
    }
}
