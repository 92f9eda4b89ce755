//! One request, one context: [`RequestCtx`] is created once when a request arrives and owns
//! what the proxy knows of it (the operation, when it arrived, the phase and the decision it
//! was faulted under, the response head, the bytes sent each way). It rides with the response
//! body ([`ReplyBody`]), and its one end-of-request step, [`RequestCtx::finish`], runs when the
//! body ends, fails or is dropped, or when the request ends without a response, with the
//! request's real [`Outcome`]. The event log line, the request metrics and the release of the
//! active-fault slot all come from there, so what the log says is what the client got.
//!
//! The common case (no event log, no fault) allocates nothing for the context: what only the
//! log or a faulted request needs lives in a box made only for them.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::Shared;
use crate::body::{BoxError, InjectedFault, ProxyBody};
use crate::engine::Decision;
use crate::faults::Target;
use crate::faults::fate::Held;
use crate::s3::{Operation, RequestInfo};
use crate::telemetry::{Outcome, RequestEvent};

/// What one request is and what became of it. See the module docs.
pub struct RequestCtx {
    shared: Arc<Shared>,
    /// The client connection: told when the request ends (its idle time starts then).
    conn: Arc<crate::faults::fate::ConnControl>,
    arrived: Instant,
    operation: Operation,
    is_head: bool,
    /// Set when the response head is ready.
    status: Option<u16>,
    promised: Option<u64>,
    head_at: Option<Duration>,
    /// Response body bytes that went out.
    sent: u64,
    /// The answer was s3chaos's own because the upstream, or the client's upload, failed.
    failed: Option<Failed>,
    /// What the end-of-request step records if the request ends without saying how (its
    /// future dropped: the client left, or a held h2 stream was let go).
    unfinished: Outcome,
    done: bool,
    detail: Option<Box<Detail>>,
}

/// What only a faulted request or the event log needs.
struct Detail {
    decision: Option<Decision>,
    target: Option<Target>,
    /// The event log's view of the request, when the log is on.
    log: Option<LogEntry>,
    /// Upload bytes forwarded so far (counted only for the event log).
    uploaded: Option<Arc<AtomicU64>>,
}

/// A request's line in the event log, begun on arrival.
struct LogEntry {
    time: String,
    bucket: String,
    key: String,
    attempt: Option<String>,
    invocation: Option<String>,
    conn: u64,
    upload_id: Option<String>,
    retry_after_s: Option<f64>,
    error_code: Option<String>,
    /// The answer said `Connection: close`: the client's next request comes on another.
    closes: bool,
    /// The first bytes of an answer whose one value the log wants (an error's `<Code>`,
    /// CreateMultipartUpload's `<UploadId>`), and the element's name.
    sniff: Option<(Vec<u8>, &'static str)>,
    phase: Option<String>,
    rules: Vec<String>,
    faults: Vec<String>,
}

/// How much of an answer is looked at for its `<Code>` or `<UploadId>` (they are a few
/// hundred bytes).
const SNIFF_BYTES: usize = 4096;

/// Whose failure made the proxy answer in the upstream's place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    Upstream,
    ClientLeft,
}

impl RequestCtx {
    /// The context of a request just classified.
    pub fn begin(
        shared: Arc<Shared>,
        info: &RequestInfo<'_>,
        arrived: Instant,
        control: Arc<crate::faults::fate::ConnControl>,
    ) -> RequestCtx {
        let conn = control.id();
        let log = shared.telemetry.request_log().is_some().then(|| {
            let header = |name: &str| {
                info.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .filter(|a| !a.is_empty())
                    .map(str::to_owned)
            };
            let upload_id = form_urlencoded::parse(info.query.as_bytes())
                .find(|(k, _)| k == "uploadId")
                .map(|(_, v)| v.into_owned());
            LogEntry {
                time: crate::telemetry::events::now_rfc3339(),
                bucket: info.bucket.as_deref().unwrap_or("").to_owned(),
                key: info.key.as_deref().unwrap_or("").to_owned(),
                attempt: header("amz-sdk-request"),
                invocation: header("amz-sdk-invocation-id"),
                conn,
                upload_id,
                retry_after_s: None,
                error_code: None,
                closes: false,
                sniff: None,
                phase: None,
                rules: Vec::new(),
                faults: Vec::new(),
            }
        });
        let detail = log.map(|log| {
            Box::new(Detail {
                decision: None,
                target: None,
                log: Some(log),
                uploaded: None,
            })
        });
        let mut ctx = RequestCtx {
            shared,
            conn: control,
            arrived,
            operation: info.operation,
            is_head: info.method == http::Method::HEAD,
            status: None,
            promised: None,
            head_at: None,
            sent: 0,
            failed: None,
            unfinished: Outcome::ClientGone,
            done: false,
            detail,
        };
        if ctx.log_mut().is_some() {
            // An unfaulted request's phase: read once, from one version of the scenario.
            let phase = ctx.shared.engine.phase_name();
            if let Some(log) = ctx.log_mut() {
                log.phase = phase;
            }
        }
        ctx
    }

    fn log_mut(&mut self) -> Option<&mut LogEntry> {
        self.detail.as_mut().and_then(|d| d.log.as_mut())
    }

    fn detail(&mut self) -> &mut Detail {
        self.detail.get_or_insert_with(|| {
            Box::new(Detail {
                decision: None,
                target: None,
                log: None,
                uploaded: None,
            })
        })
    }

    /// The engine's decision for this request: its rules, faults and phase are the request's
    /// from now on, and it holds the request's active-fault slot until the request ends.
    pub fn decided(&mut self, decision: Decision, info: &RequestInfo<'_>) {
        let detail = self.detail();
        if let Some(log) = detail.log.as_mut() {
            for (rule, _) in decision.fired() {
                log.rules.push(rule.name().to_owned());
                log.faults.extend(rule.faults().iter().map(|f| f.describe()));
            }
            if decision.injects() {
                log.phase = decision.phase_name().map(str::to_owned);
            }
        }
        detail.target = Some(Target::of(info));
        detail.decision = Some(decision);
    }

    pub fn decision(&self) -> Option<&Decision> {
        self.detail.as_ref().and_then(|d| d.decision.as_ref())
    }

    /// Takes the decision out, for a fault that must keep it alive past the request (a held
    /// blackhole, an upstream answer drained in the background).
    pub fn take_decision(&mut self) -> Option<Decision> {
        self.detail.as_mut().and_then(|d| d.decision.take())
    }

    /// The faulted request's target (operation, bucket, key), copied once.
    pub fn target(&self) -> Option<&Target> {
        self.detail.as_ref().and_then(|d| d.target.as_ref())
    }

    /// A counter for the upload's bytes, when the event log wants them.
    pub fn upload_counter(&mut self) -> Option<Arc<AtomicU64>> {
        let detail = self.detail.as_mut()?;
        detail.log.as_ref()?;
        Some(detail.uploaded.get_or_insert_with(Default::default).clone())
    }

    /// What is recorded if the request ends without saying how (see [`RequestCtx::finish`]).
    pub fn if_dropped(&mut self, outcome: Outcome) {
        self.unfinished = outcome;
    }

    /// The answer is s3chaos's own: the upstream could not be reached.
    pub fn upstream_failed(&mut self) {
        self.failed = Some(Failed::Upstream);
    }

    /// The answer is s3chaos's own: the client left before its upload was whole.
    pub fn client_left(&mut self) {
        self.failed = Some(Failed::ClientLeft);
    }

    /// The response head is ready.
    pub fn responded<B>(&mut self, response: &http::Response<B>) {
        self.status = Some(response.status().as_u16());
        let operation = self.operation;
        let head = self.is_head;
        if let Some(log) = self.log_mut() {
            let status = response.status();
            log.retry_after_s = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok());
            log.closes = response
                .headers()
                .get(http::header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            if status.as_u16() >= 300 && head {
                // A HEAD's error has no body; SDKs name it from the status.
                log.error_code = Some(
                    match status.as_u16() {
                        404 => "NotFound",
                        403 => "AccessDenied",
                        _ => "Error",
                    }
                    .to_owned(),
                );
            } else if status.as_u16() >= 300 {
                log.sniff = Some((Vec::new(), "Code"));
            } else if operation == Operation::CreateMultipartUpload && status.is_success() {
                log.sniff = Some((Vec::new(), "UploadId"));
            }
        }
        self.promised = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        self.head_at = Some(self.arrived.elapsed());
    }

    /// The end-of-request step: runs once, with how the request really ended.
    pub fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        let outcome = match outcome {
            Outcome::Complete if self.failed == Some(Failed::Upstream) => Outcome::UpstreamError,
            Outcome::Complete if self.failed == Some(Failed::ClientLeft) => Outcome::ClientGone,
            other => other,
        };
        let status = match outcome {
            Outcome::Injected { .. } | Outcome::StillHeld => None,
            _ => self.status,
        };
        self.shared.metrics.request(self.operation, status, outcome);
        let now = Instant::now();
        self.conn.answered(now);
        let took = now.saturating_duration_since(self.arrived);
        let Some(detail) = self.detail.take() else {
            return;
        };
        let Detail {
            decision,
            log,
            uploaded,
            ..
        } = *detail;
        drop(decision); // The active-fault slot is free from here.
        let (Some(mut entry), Some(writer)) = (log, self.shared.telemetry.request_log()) else {
            return;
        };
        if let Some((bytes, tag)) = entry.sniff.take() {
            let found = crate::s3::xml::first_text(&bytes, tag);
            match tag {
                "UploadId" => entry.upload_id = found.or(entry.upload_id),
                _ => entry.error_code = found,
            }
        }
        writer.record(RequestEvent {
            time: entry.time,
            operation: self.operation.to_string(),
            bucket: entry.bucket,
            key: entry.key,
            status,
            latency_ms: self.head_at.unwrap_or(took).as_secs_f64() * 1000.0,
            bytes: status.map(|_| self.sent),
            outcome: Some(outcome.name().to_owned()),
            promised_bytes: self.promised,
            upload_bytes: uploaded.map(|u| u.load(Ordering::Relaxed)),
            duration_ms: Some(took.as_secs_f64() * 1000.0),
            rule: (!entry.rules.is_empty()).then(|| entry.rules.join(",")),
            fault: (!entry.faults.is_empty()).then(|| entry.faults.join(", ")),
            phase: entry.phase,
            attempt: entry.attempt,
            invocation: entry.invocation,
            conn: Some(entry.conn),
            error_code: entry.error_code,
            retry_after_s: entry.retry_after_s,
            upload_id: entry.upload_id,
            closed: entry.closes.then_some(true),
        });
    }
}

impl std::fmt::Debug for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCtx")
            .field("operation", &self.operation)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// A blackholed HTTP/1.1 request, held with its socket: it ends as `no_response` when the
/// client leaves (its duration is how long the client waited), or as `still_held` if the
/// proxy stops first.
#[derive(Debug)]
pub struct HeldRequest(pub RequestCtx);

impl Held for HeldRequest {
    fn client_left(&mut self) {
        self.0.if_dropped(Outcome::Injected { by: "blackhole" });
    }
}

/// An HTTP/2 connection's blackhole keeps only the decision (its active-fault slot).
impl Held for Decision {}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        self.finish(self.unfinished);
    }
}

/// The body of every response the proxy sends: the upstream's (through any body faults) or
/// one s3chaos made, carrying the request's context to its end.
pub struct ReplyBody {
    inner: ProxyBody,
    ctx: Option<RequestCtx>,
}

impl ReplyBody {
    pub fn new(inner: ProxyBody, ctx: RequestCtx) -> ReplyBody {
        ReplyBody { inner, ctx: Some(ctx) }
    }

    /// A body that is not an S3 request's (the forward proxy's own small answers).
    pub fn plain(inner: ProxyBody) -> ReplyBody {
        ReplyBody { inner, ctx: None }
    }

    fn finish(&mut self, outcome: Outcome) {
        if let Some(ctx) = self.ctx.as_mut() {
            ctx.finish(outcome);
        }
    }
}

impl Body for ReplyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let (Some(data), Some(ctx)) = (f.data_ref(), this.ctx.as_mut()) {
                    ctx.sent += data.len() as u64;
                    if let Some((seen, _)) = ctx.log_mut().and_then(|l| l.sniff.as_mut())
                        && seen.len() < SNIFF_BYTES
                    {
                        let room = SNIFF_BYTES - seen.len();
                        seen.extend_from_slice(&data[..data.len().min(room)]);
                    }
                }
                // hyper stops polling once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.finish(Outcome::Complete);
                }
            }
            Some(Err(e)) => {
                let outcome = match e.downcast_ref::<InjectedFault>() {
                    Some(fault) => Outcome::Cut { by: fault.0 },
                    None => Outcome::UpstreamError,
                };
                this.finish(outcome);
            }
            None => this.finish(Outcome::Complete),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReplyBody {
    fn drop(&mut self) {
        // Dropped without an end: complete if nothing was left to send (hyper need not poll
        // an empty body; a client may close as soon as it has every promised byte, before
        // the body's own end is polled), else the client went away mid-body.
        let delivered = self
            .ctx
            .as_ref()
            .is_some_and(|c| c.promised.is_some_and(|p| c.sent >= p));
        let outcome = if delivered || self.inner.is_end_stream() {
            Outcome::Complete
        } else {
            Outcome::ClientGone
        };
        self.finish(outcome);
    }
}

/// Counts the upload's bytes on their way upstream, for the event log.
pub struct CountUpload {
    inner: ProxyBody,
    counter: Arc<AtomicU64>,
}

impl CountUpload {
    pub fn wrap(inner: ProxyBody, counter: Arc<AtomicU64>) -> ProxyBody {
        ProxyBody::new(CountUpload { inner, counter })
    }
}

impl Body for CountUpload {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            self.counter
                .fetch_add(data.map_or(0, |d| d.len() as u64), Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
