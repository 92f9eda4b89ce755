//! One request through the proxy's phases (see the module docs of [`crate::proxy`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::conn::{ConnControl, Fate, Hold, Keep};
use super::context::{CountUpload, HeldRequest, ReplyBody, RequestCtx};
use super::headers::{strip_control_headers, strip_hop_by_hop};
use super::upload::{ClientFailure, Upload};
use super::{Shared, Upstream};
use crate::body::{BoxError, InjectedFault, ProxyBody};
use crate::engine::Decision;
use crate::faults::{BodyCtx, Ending, FaultCtx, FaultSpec, RequestAction};
use crate::s3::{Code, RequestInfo, S3ErrorResponse};
use crate::telemetry::{FaultEvent, Outcome};

/// Where a request goes, and whether the scenario applies to it.
pub(super) struct Destination {
    pub upstream: Arc<Upstream>,
    /// False for a forward-proxy request to a host `--intercept` does not name: it is
    /// forwarded untouched.
    pub inject: bool,
}

/// A request for the proxy's own upstream (reverse-proxy mode).
pub(super) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, BoxError> {
    let destination = Destination {
        upstream: shared.upstream.clone(),
        inject: true,
    };
    handle_for(shared, conn, destination, req).await
}

/// A request for `destination`'s upstream.
pub(super) async fn handle_for(
    shared: Arc<Shared>,
    conn: Arc<ConnControl>,
    destination: Destination,
    mut req: Request<Incoming>,
) -> Result<Response<ReplyBody>, BoxError> {
    let arrived = Instant::now();
    if req.version() == http::Version::HTTP_2 {
        conn.set_multiplexed();
        // HTTP/2 carries the host as `:authority`, which hyper puts in the URI. The client
        // signed it as `host`, and both the classifier (virtual-hosted buckets) and an
        // HTTP/1.1 upstream read it from there.
        if !req.headers().contains_key(http::header::HOST)
            && let Some(host) = req
                .uri()
                .authority()
                .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    // Phases 1-3: classify, decide, request faults. Classification is needed for the
    // per-operation counters anyway; deciding is skipped outright with no rules.
    let mut info = shared.classifier.classify(req.method(), req.uri(), req.headers());
    info.idle = conn.idle_at(arrived);
    let mut ctx = RequestCtx::begin(shared.clone(), &info, arrived, conn.clone());
    if let Some(problem) = host_problem(&req) {
        drop(info);
        let response = bad_host(problem, req.method(), req.uri().path(), req.version());
        ctx.responded(&response);
        return Ok(response.map(|body| ReplyBody::new(body, ctx)));
    }
    let mut delay = Duration::ZERO;
    let mut ending = None;
    if destination.inject
        && !shared.engine.is_idle()
        && let Some(decision) = shared.engine.decide(&info)
    {
        tracing::trace!(operation = %info.operation, bucket = ?info.bucket, key = ?info.key, "classified");
        (delay, ending) = request_phase(&shared, &decision, &info);
        ctx.decided(decision, &info);
    }
    drop(info);
    match respond(&shared, &conn, &destination.upstream, req, &mut ctx, delay, ending).await {
        Ok(response) => {
            ctx.responded(&response);
            Ok(response.map(|body| ReplyBody::new(body, ctx)))
        }
        Err(e) => {
            let by = e.downcast_ref::<InjectedFault>().map_or("fault", |f| f.0);
            if conn.fate() == Fate::Blackhole && !conn.is_multiplexed() {
                // Held with the socket: recorded when the client leaves, with how long it
                // waited, or as still held if the proxy stops first.
                ctx.if_dropped(Outcome::StillHeld);
                conn.keep_while_held(Box::new(HeldRequest(ctx)));
            } else {
                ctx.finish(Outcome::Injected { by });
            }
            Err(e)
        }
    }
}

/// Phases 3 (the wait and the ending) to 5.
async fn respond(
    shared: &Shared,
    conn: &Arc<ConnControl>,
    upstream: &Upstream,
    req: Request<Incoming>,
    ctx: &mut RequestCtx,
    delay: Duration,
    ending: Option<Ending>,
) -> Result<Response<ProxyBody>, BoxError> {
    if !delay.is_zero() {
        let _silence = conn.silence();
        crate::timer::sleep(delay).await;
    }
    let mut after_upstream = None;
    match ending {
        None => {}
        Some(Ending::AfterUpstream { answer, connection }) => after_upstream = Some((answer, connection)),
        Some(Ending::Respond(mut response)) => {
            // Answered before the upload was read (with `Expect: 100-continue`, before it was
            // even sent): the connection cannot carry another request, so say so (RFC 9110
            // §10.1.1), or a client pools it and loses its next request as it closes.
            if req.version() < http::Version::HTTP_2 && !http_body::Body::is_end_stream(req.body()) {
                response
                    .headers_mut()
                    .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            return Ok(response);
        }
        Some(Ending::ReadBodyThenRespond(response)) => {
            // Read the upload to its end (discarding it, frame by frame), then answer. A
            // client that trickles or breaks its body hears about that instead.
            let (method, resource) = (req.method().clone(), req.uri().path().to_owned());
            let (mut body, client) = Upload::watch(req.into_body(), shared.body_read_timeout);
            while let Some(Ok(_)) = body.frame().await {}
            return Ok(match client.failure() {
                Some(failure) => client_failed(ctx, failure, &method, &resource),
                None => response,
            });
        }
        Some(Ending::Blackhole { connection }) => {
            // On HTTP/1.1 the request's context goes with the held socket (`handle_for`), so
            // the request ends when the client leaves; an HTTP/2 connection's serving task
            // may let go of the socket at once, so only the decision is kept.
            let keep = conn
                .is_multiplexed()
                .then(|| ctx.take_decision().map(|d| Box::new(d) as Keep))
                .flatten();
            match conn.blackhole(connection, keep) {
                Hold::Connection => {}
                Hold::Stream(keep) => {
                    // Held until the client resets the stream or leaves: then this future is
                    // dropped, and the context records the blackhole.
                    ctx.if_dropped(Outcome::Injected { by: "blackhole" });
                    conn.hold_stream(keep).await
                }
            }
            return Err(Box::new(InjectedFault("blackhole")));
        }
        Some(Ending::Reset { connection }) => {
            conn.reset(connection);
            return Err(Box::new(InjectedFault("reset")));
        }
        Some(Ending::Close) => {
            // Read the request whole (so the close is a FIN: nothing unread in the socket),
            // then fail it: hyper drops the connection without an answer (on HTTP/2, resets
            // the stream).
            let (mut body, _) = Upload::watch(req.into_body(), shared.body_read_timeout);
            while let Some(Ok(_)) = body.frame().await {}
            return Err(Box::new(InjectedFault("close")));
        }
    }

    // Phase 4: upstream.
    // Kept for the error answer if the upstream fails; both clones are reference counts.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (mut parts, incoming) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_control_headers(&mut parts.headers, parts.uri.query());
    let (mut upload, client) = Upload::watch(incoming, shared.body_read_timeout);
    if let Some(counter) = ctx.upload_counter() {
        upload = CountUpload::wrap(upload, counter);
    }
    upload = through_faults(ctx, conn, false, upload, |fault, body, ctx| {
        fault.on_request_body(body, ctx)
    });
    let upstream_req = Request::from_parts(parts, upload);
    let sent = Instant::now();
    let outcome = upstream.send(upstream_req).await;
    if let (Err(e), Some(failure)) = (&outcome, client.failure()) {
        // The client's side broke first (it left, went idle, framed its chunks wrongly): the
        // upstream is not to blame, and nothing is counted against it.
        tracing::info!(error = %error_chain(e), ?failure, %method, resource = uri.path(), "the client's upload failed");
        return Ok(client_failed(ctx, failure, &method, uri.path()));
    }
    match &outcome {
        Ok(_) => shared.metrics.upstream_latency(sent.elapsed()),
        Err(_) => shared.metrics.upstream_unavailable(),
    }
    if !ctx.decision().is_some_and(Decision::injects) && shared.engine.watches_upstream() {
        // Only what the upstream did on its own counts toward the stop condition.
        let failed = !outcome.as_ref().is_ok_and(|r| !r.status().is_server_error());
        shared.engine.record_upstream(failed);
    }
    let response = match outcome {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(upstream = %upstream.origin(), error = %error_chain(&e), %method, resource = uri.path(), "upstream unavailable; answering 503 ServiceUnavailable");
            ctx.upstream_failed();
            return Ok(upstream_unavailable(&method, uri.path()));
        }
    };
    if let Some((answer, connection)) = after_upstream {
        // The upstream has done the request (the object is stored, the key deleted); the
        // client hears otherwise. Its answer is read to the end in the background, so the
        // upstream connection goes back to the pool, and the request counts among the active
        // faults until then.
        let upstream_body = response.into_body();
        let decision = ctx.take_decision();
        tokio::spawn(async move {
            let _ = upstream_body.collect().await;
            drop(decision);
        });
        return match answer {
            Some(response) => Ok(response),
            None => {
                conn.reset(connection);
                Err(Box::new(InjectedFault("reset after upstream")))
            }
        };
    }

    // Phase 5: response body faults.
    let (mut parts, mut body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    body = through_faults(ctx, conn, true, body, |fault, body, ctx| {
        fault.on_response(&mut parts, body, ctx)
    });
    Ok(Response::from_parts(parts, body))
}

/// `body` wrapped by each fault of the decision in turn (with `watchers`, also the rules
/// that only watch the request).
fn through_faults(
    ctx: &RequestCtx,
    conn: &Arc<ConnControl>,
    watchers: bool,
    mut body: ProxyBody,
    mut wrap: impl FnMut(&FaultSpec, ProxyBody, &BodyCtx<'_>) -> ProxyBody,
) -> ProxyBody {
    let (Some(decision), Some(target)) = (ctx.decision(), ctx.target()) else {
        return body;
    };
    for (rule, draw) in decision.rules(watchers) {
        for (fault, state) in rule.faults_with_state() {
            let fault_ctx = BodyCtx {
                target,
                draw: draw.clone(),
                state,
                conn,
            };
            body = wrap(fault, body, &fault_ctx);
        }
    }
    body
}

/// Runs every fired fault's request phase: sums the delays and finds what ends the request
/// (the first fault that ends it wins; later ones do not run). Logs one line per injected
/// fault. Rules whose faults only watch the request are not run here.
fn request_phase(shared: &Shared, decision: &Decision, info: &RequestInfo<'_>) -> (Duration, Option<Ending>) {
    let mut delay = Duration::ZERO;
    for (rule, draw) in decision.fired() {
        for (fault, state) in rule.faults_with_state() {
            let ending = match fault.on_request(&FaultCtx {
                request: info,
                draw: draw.clone(),
                state,
            }) {
                RequestAction::Continue => None,
                RequestAction::Delay(d) => {
                    delay += d;
                    None
                }
                RequestAction::End(ending) => Some(ending),
            };
            let request_id = ending
                .as_ref()
                .and_then(Ending::response)
                .and_then(|r| r.headers().get("x-amz-request-id"))
                .and_then(|v| v.to_str().ok());
            tracing::info!(
                target: "s3chaos::fault",
                rule = rule.name(),
                fault = %fault.describe(),
                operation = %info.operation,
                bucket = info.bucket.as_deref().unwrap_or(""),
                key = info.key.as_deref().unwrap_or(""),
                request_id = request_id.unwrap_or(""),
                invocation_id = header(info, "amz-sdk-invocation-id"),
                attempt = header(info, "amz-sdk-request"),
                "fault injected"
            );
            shared.telemetry.recent.push(FaultEvent {
                id: 0,
                time: String::new(),
                rule: rule.name().to_owned(),
                fault: fault.describe(),
                operation: info.operation.to_string(),
                bucket: info.bucket.as_deref().unwrap_or("").to_owned(),
                key: info.key.as_deref().unwrap_or("").to_owned(),
                request_id: request_id.unwrap_or("").to_owned(),
                attempt: header(info, "amz-sdk-request").to_owned(),
            });
            if ending.is_some() {
                return (delay, ending);
            }
        }
    }
    (delay, None)
}

fn header<'a>(info: &'a RequestInfo<'_>, name: &str) -> &'a str {
    info.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, or any request with more than one, is
/// answered 400 and never forwarded: the classifier reads the first `Host`, an upstream that
/// takes the last would see another bucket (request smuggling between the two).
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let (first, more) = (hosts.next(), hosts.next().is_some());
    if more {
        Some("The request has more than one Host header.")
    } else if first.is_none() && req.version() == http::Version::HTTP_11 {
        Some("The request has no Host header.")
    } else if req.version() == http::Version::HTTP_2
        && let (Some(host), Some(authority)) = (first, req.uri().authority())
        && !host.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes())
    {
        // RFC 9113 §8.3.1: malformed. The classifier reads one, an upstream the other.
        Some("The request's Host header names another authority than its :authority.")
    } else {
        None
    }
}

/// S3's `400 InvalidRequest` saying what is wrong with the Host, closing the connection (what
/// follows on it cannot be trusted to be framed as the client meant).
fn bad_host(problem: &str, method: &Method, resource: &str, version: http::Version) -> Response<ProxyBody> {
    let mut error = S3ErrorResponse::standard(Code::InvalidRequest);
    error.message = problem.to_owned();
    let mut response = crate::faults::error::answer(&error, method, resource);
    // (HTTP/2 has no Connection header: there the stream alone is refused.)
    if version < http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    response
}

/// S3's `400` for an upload the client broke, closing the connection (the rest of the body,
/// if it ever comes, cannot be framed).
fn client_failed(ctx: &mut RequestCtx, failure: ClientFailure, method: &Method, resource: &str) -> Response<ProxyBody> {
    if failure == ClientFailure::Left {
        ctx.client_left();
    }
    let mut response = crate::faults::error::answer(&failure.answer(), method, resource);
    response
        .headers_mut()
        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

/// The answer when the upstream is down, refusing or too slow: what S3's own front end says
/// when it cannot reach a backend.
fn upstream_unavailable(method: &Method, resource: &str) -> Response<ProxyBody> {
    crate::faults::error::answer(&S3ErrorResponse::standard(Code::ServiceUnavailable), method, resource)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
