//! Two records of what happened: the recent injected faults (a bounded ring the admin API
//! serves at `/events`), and the optional per-request event log (`--events FILE`, one JSON
//! line per proxied request) that `s3chaos report` turns into a drill report.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

/// One injected fault, as `/events` reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultEvent {
    pub id: u64,
    /// RFC 3339, milliseconds.
    pub time: String,
    pub rule: String,
    pub fault: String,
    pub operation: String,
    pub bucket: String,
    pub key: String,
    /// The `x-amz-request-id` of an injected error answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub request_id: String,
    /// The SDK's `amz-sdk-request` header (`attempt=2; max=3`), when sent.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attempt: String,
}

/// The last N injected faults, numbered from 1.
pub struct RecentFaults {
    capacity: usize,
    ring: Mutex<VecDeque<FaultEvent>>,
    next_id: AtomicU64,
}

impl RecentFaults {
    pub fn new(capacity: usize) -> RecentFaults {
        RecentFaults {
            capacity,
            ring: Mutex::new(VecDeque::with_capacity(capacity)),
            next_id: AtomicU64::new(1),
        }
    }

    /// Records a fault; `id` and `time` are filled in here.
    pub fn push(&self, mut event: FaultEvent) {
        event.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        event.time = now_rfc3339();
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == self.capacity {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// Events with an id above `since`, oldest first (at most the ring's capacity).
    pub fn since(&self, since: u64) -> Vec<FaultEvent> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().filter(|e| e.id > since).cloned().collect()
    }

    /// Faults recorded so far (including those the ring has forgotten).
    pub fn total(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed) - 1
    }
}

/// One proxied request, as a line of the event log.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RequestEvent {
    /// RFC 3339, milliseconds: when the request arrived.
    pub time: String,
    pub operation: String,
    #[serde(default)]
    pub bucket: String,
    #[serde(default)]
    pub key: String,
    /// `None`: no response (blackhole, reset).
    pub status: Option<u16>,
    /// Arrival to response head, milliseconds.
    pub latency_ms: f64,
    /// Response body bytes that went out to the client (for a cut body, fewer than promised).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// How the request really ended: `complete`, `cut`, `no_response`, `client_gone` or
    /// `upstream_error` (absent in logs written before s3chaos recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The response's `Content-Length`: what the head promised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promised_bytes: Option<u64>,
    /// Upload bytes forwarded to the upstream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_bytes: Option<u64>,
    /// Arrival to the end of the request (the last body byte, the cut, the client leaving),
    /// milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
    /// The rules that fired, comma-separated, and what they injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The SDK's `amz-sdk-request` header (`attempt=2; max=3`), when sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<String>,
    /// The SDK's `amz-sdk-invocation-id`: the same on every attempt of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
    /// The client connection, numbered from 1 in the order they were accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// The S3 error code of the answer (`<Code>` of its body; for a HEAD, which has none,
    /// `NotFound`, `AccessDenied` or `Error` from the status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// The answer's `Retry-After`, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<f64>,
    /// The multipart upload: `uploadId` of the query, or of CreateMultipartUpload's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// `true`: the answer closed the connection (`Connection: close`), so the client's next
    /// request, a retry included, comes on a new one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
}

/// A line of the event log about the drill itself, not a request: where the drill's own
/// timeline stands, so a report draws the phases as the scenario ran them (and not only
/// where requests happened to fall).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DrillEvent {
    /// RFC 3339, microseconds: when it happened (a phase's start as the timeline placed it).
    pub time: String,
    /// `phase` (a phase began), `over` (the last phase ended), `expired` (`max_duration`),
    /// `halt`, `resume`.
    pub drill: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The phase's place (from 0) and how many there are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<usize>,
    /// Why the drill was halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One line of the event log. (Requests are nearly every line: boxing them to shrink the
/// rare drill line's slot would cost an allocation per request.)
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
enum Line {
    Request(RequestEvent),
    Drill(DrillEvent),
}

/// What the writer thread is sent: a line, or a request to say when every line sent before
/// is on disk. (Lines are nearly every message: boxing them would cost an allocation per
/// request for the sake of the rare flush.)
#[allow(clippy::large_enum_variant)]
enum Message {
    Line(Line),
    Flush(mpsc::SyncSender<()>),
}

/// The `--events FILE` writer: a bounded queue drained by its own thread, so proxying never
/// waits on the disk. A full queue drops the line and counts it ([`RequestLog::dropped`]); so
/// does a line the disk refuses (full, or failing), with a warning when that starts and a
/// note when lines are written again.
pub struct RequestLog {
    sender: Mutex<Option<mpsc::SyncSender<Message>>>,
    dropped: Arc<AtomicU64>,
    writer: Mutex<Option<JoinHandle<()>>>,
    path: std::path::PathBuf,
}

impl RequestLog {
    /// Appends to `path` (created if missing).
    pub fn open(path: &Path, queue: usize) -> std::io::Result<RequestLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        let (tx, rx) = mpsc::sync_channel::<Message>(queue);
        let dropped = Arc::new(AtomicU64::new(0));
        let writer = {
            let (dropped, path) = (dropped.clone(), path.to_owned());
            std::thread::Builder::new()
                .name("s3chaos-events".into())
                .spawn(move || write_lines(file, &path, rx, &dropped))?
        };
        Ok(RequestLog {
            sender: Mutex::new(Some(tx)),
            path: path.to_owned(),
            dropped,
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn record(&self, event: RequestEvent) {
        self.send(Line::Request(event));
    }

    /// A line about the drill itself (a phase began, a halt).
    pub fn record_drill(&self, event: DrillEvent) {
        self.send(Line::Drill(event));
    }

    fn send(&self, line: Line) {
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner());
        let sent = sender.as_ref().is_some_and(|s| s.try_send(Message::Line(line)).is_ok());
        if !sent {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The file the log is written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines lost because the queue was full or the disk refused them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Returns once every line recorded before the call is written to the file (or after
    /// five seconds of a disk that does not take it). For tests and harnesses that read the
    /// log while the proxy runs; the proxy itself never waits on it.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        let sender = self.sender.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if sender.is_some_and(|s| s.send(Message::Flush(done)).is_ok()) {
            let _ = wait.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    /// Writes out what is queued and closes the file.
    pub fn close(&self) {
        self.sender.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

fn write_lines(file: std::fs::File, path: &Path, rx: mpsc::Receiver<Message>, dropped: &AtomicU64) {
    let mut out = std::io::BufWriter::new(file);
    let mut line = Vec::with_capacity(512);
    let mut failing = false;
    let mut report = |result: std::io::Result<()>, lines: u64| match result {
        Ok(()) if failing => {
            failing = false;
            tracing::warn!(path = %path.display(), "the event log is written again");
        }
        Ok(()) => {}
        Err(e) => {
            dropped.fetch_add(lines, Ordering::Relaxed);
            if !failing {
                failing = true;
                tracing::error!(path = %path.display(), error = %e, "the event log cannot be written: its lines are dropped (counted in s3chaos_events_dropped_total) until it can");
            }
        }
    };
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Line(event) => {
                    line.clear();
                    if serde_json::to_writer(&mut line, &event).is_ok() {
                        line.push(b'\n');
                        report(out.write_all(&line), 1);
                    }
                }
                Message::Flush(done) => {
                    report(out.flush(), 0);
                    let _ = done.send(());
                }
            }
            next = rx.try_recv().ok();
        }
        // The queue is empty: flush, so a reader (or a report) sees every line so far. (Lines
        // a failed flush leaves in the buffer go out with the next one that succeeds.)
        report(out.flush(), 0);
    }
    report(out.flush(), 0);
}

/// RFC 3339, microseconds (a tight retry loop's gaps are well under a millisecond).
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(rule: &str) -> FaultEvent {
        FaultEvent {
            id: 0,
            time: String::new(),
            rule: rule.into(),
            fault: "reset".into(),
            operation: "GetObject".into(),
            bucket: "b".into(),
            key: "k".into(),
            request_id: String::new(),
            attempt: String::new(),
        }
    }

    /// `flush` returns with every line recorded before it in the file, while the log stays
    /// open for more.
    #[test]
    fn flush_waits_for_the_lines_recorded_before_it() {
        let dir = std::env::temp_dir().join(format!("s3chaos-flush-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.jsonl");
        let log = RequestLog::open(&path, 1024).unwrap();
        for _ in 0..500 {
            log.record(sample());
        }
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 500);
        log.record(sample());
        log.flush();
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 501);
        log.close();
        log.flush(); // closed: returns at once
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_ring_keeps_the_newest_and_numbers_them() {
        let recent = RecentFaults::new(3);
        for i in 0..5 {
            recent.push(fault(&format!("r{i}")));
        }
        let all = recent.since(0);
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(recent.since(4).len(), 1);
        assert_eq!(recent.total(), 5);
    }

    #[test]
    fn the_log_writes_json_lines_and_counts_what_it_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = RequestLog::open(&path, 4).unwrap();
        let event = sample();
        for _ in 0..1000 {
            log.record(event.clone());
        }
        log.close();
        let lines = std::fs::read_to_string(&path).unwrap();
        let written = lines.lines().count() as u64;
        assert_eq!(written + log.dropped(), 1000, "every line is written or counted");
        let back: RequestEvent = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
        assert_eq!(back, event);
    }

    fn sample() -> RequestEvent {
        RequestEvent {
            time: now_rfc3339(),
            operation: "GetObject".into(),
            bucket: "b".into(),
            key: "k".into(),
            status: Some(200),
            latency_ms: 1.5,
            bytes: Some(10),
            outcome: Some("complete".into()),
            promised_bytes: Some(10),
            upload_bytes: None,
            duration_ms: Some(2.0),
            rule: None,
            fault: None,
            phase: None,
            attempt: None,
            invocation: None,
            conn: None,
            error_code: None,
            retry_after_s: None,
            upload_id: None,
            closed: None,
        }
    }

    /// A disk that refuses every write (`/dev/full`: ENOSPC) lost every line and counted none:
    /// `s3chaos_events_dropped_total` said 0 and a report built on the log looked complete.
    #[test]
    fn lines_the_disk_refuses_are_counted_as_dropped() {
        let log = RequestLog::open(Path::new("/dev/full"), 10_000).unwrap();
        for _ in 0..5000 {
            log.record(sample());
        }
        log.close();
        // Lines still in the writer's buffer at the last failed flush are not counted: at
        // most a buffer's worth (8 KiB, some 30 lines).
        assert!(log.dropped() >= 4900, "{} of 5000 counted", log.dropped());
    }
}
