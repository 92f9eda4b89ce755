//! One request through the proxy's phases (see the module docs of [`crate::proxy`]).

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::Shared;
use super::body::{self, BoxError, InjectedFault, ProxyBody};
use super::conn::ConnControl;
use super::headers::strip_hop_by_hop;
use crate::engine::Decision;
use crate::faults::{FaultCtx, RequestAction};
use crate::s3::{RequestInfo, S3ErrorResponse};

/// How the request phase ended, when a fault ended it.
enum Ending {
    Respond(Response<ProxyBody>),
    ReadBodyThenRespond(Response<ProxyBody>),
    Blackhole,
    Reset,
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, BoxError> {
    // Phases 1-3: classify, decide, request faults. Skipped outright with no rules.
    let mut decision = None;
    let mut delay = Duration::ZERO;
    let mut ending = None;
    if !shared.engine.is_idle() {
        let info = shared.classifier.classify(req.method(), req.uri(), req.headers());
        tracing::trace!(operation = %info.operation, bucket = ?info.bucket, key = ?info.key, "classified");
        if let Some(d) = shared.engine.decide(&info) {
            (delay, ending) = request_phase(&d, &info);
            decision = Some(d);
        }
    }
    if !delay.is_zero() {
        crate::timer::sleep(delay).await;
    }
    match ending {
        None => {}
        Some(Ending::Respond(response)) => return Ok(response),
        Some(Ending::ReadBodyThenRespond(response)) => {
            // Read the upload to its end (discarding it, frame by frame), then answer.
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            return Ok(response);
        }
        Some(Ending::Blackhole) => {
            conn.blackhole(decision.map(|d| Box::new(d) as _));
            return Err(Box::new(InjectedFault("blackhole")));
        }
        Some(Ending::Reset) => {
            conn.reset();
            return Err(Box::new(InjectedFault("reset")));
        }
    }

    // Phase 4: upstream.
    // Kept for the error answer if the upstream fails; both clones are reference counts.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (mut parts, incoming) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let mut upload = body::stream(incoming);
    if let Some(decision) = &decision {
        for (rule, draw) in decision.fired() {
            for fault in rule.faults().iter() {
                upload = fault.on_request_body(upload, &conn, draw.clone());
            }
        }
    }
    let upstream_req = Request::from_parts(parts, upload);
    let outcome = shared.upstream.send(upstream_req).await;
    if decision.is_none() && shared.engine.watches_upstream() {
        // Only what the upstream did on its own counts toward the stop condition.
        let failed = outcome.as_ref().map_or(true, |r| r.status().is_server_error());
        shared.engine.record_upstream(failed);
    }
    let response = match outcome {
        Ok(response) => response,
        Err(e) => {
            tracing::warn!(upstream = %shared.upstream.origin(), error = %error_chain(&e), %method, resource = uri.path(), "upstream unavailable; answering 503 ServiceUnavailable");
            return Ok(upstream_unavailable(&method, uri.path()));
        }
    };

    // Phase 5: response body faults.
    let (mut parts, mut body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if let Some(decision) = decision {
        for (rule, draw) in decision.fired() {
            for fault in rule.faults().iter() {
                body = fault.on_response_body(body, &conn, draw.clone());
            }
        }
        // The request counts among the active faults until its body is done.
        body = body::Holding::wrap(body, decision);
    }
    Ok(Response::from_parts(parts, body))
}

/// Runs every fired fault's request phase: sums the delays and finds what ends the request
/// (the first fault that ends it wins; later ones do not run). Logs one line per injected
/// fault.
fn request_phase(decision: &Decision, info: &RequestInfo<'_>) -> (Duration, Option<Ending>) {
    let mut delay = Duration::ZERO;
    for (rule, draw) in decision.fired() {
        for fault in rule.faults().iter() {
            let ending = match fault.on_request(&FaultCtx {
                request: info,
                draw: draw.clone(),
            }) {
                RequestAction::Pass => continue,
                RequestAction::Continue => None,
                RequestAction::Delay(d) => {
                    delay += d;
                    None
                }
                RequestAction::Respond(r) => Some(Ending::Respond(r)),
                RequestAction::ReadBodyThenRespond(r) => Some(Ending::ReadBodyThenRespond(r)),
                RequestAction::Blackhole => Some(Ending::Blackhole),
                RequestAction::Reset => Some(Ending::Reset),
            };
            let request_id = match &ending {
                Some(Ending::Respond(r) | Ending::ReadBodyThenRespond(r)) => {
                    r.headers().get("x-amz-request-id").and_then(|v| v.to_str().ok())
                }
                _ => None,
            };
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

/// The answer when the upstream is down, refusing or too slow: what S3's own front end says
/// when it cannot reach a backend.
fn upstream_unavailable(method: &Method, resource: &str) -> Response<ProxyBody> {
    crate::faults::error::answer(&S3ErrorResponse::standard("ServiceUnavailable"), method, resource)
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
