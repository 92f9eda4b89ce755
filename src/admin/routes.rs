//! The admin API's routes: one function per call.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::{AdminState, MAX_BODY, constant_time_eq};
use crate::control::ControlError;
use crate::engine::timeline::DrillState;
use crate::scenario::API_PREFIX;
use crate::telemetry::prometheus;

type Reply = Response<Full<Bytes>>;

pub(super) async fn handle(
    state: Arc<AdminState>,
    req: Request<Incoming>,
    body_timeout: Option<std::time::Duration>,
) -> Result<Reply, std::convert::Infallible> {
    // Probes (Docker HEALTHCHECK, Kubernetes) cannot carry a secret; /healthz says nothing.
    // The dashboard's page holds no data either (it asks for the token, then calls the API).
    let probe = req.method() == Method::GET && matches!(req.uri().path(), "/healthz" | "/");
    if let Some(token) = &state.token
        && !probe
        && !authorized(&req, token)
    {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong `Authorization: Bearer` token",
        ));
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let reply = match (&method, path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/") => text(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::dashboard::PAGE.to_owned(),
        ),
        (&Method::GET, "/status") => status(&state),
        (&Method::GET, "/scenario") => get_scenario(&state),
        (&Method::PUT, "/scenario") => match body(req, body_timeout).await {
            Ok(text) => off_thread(&state, move |state| put_scenario(state, &text)).await,
            Err(reply) => reply,
        },
        (&Method::GET, "/rules") => list_rules(&state),
        (&Method::POST, "/rules") => match body(req, body_timeout).await {
            Ok(text) => off_thread(&state, move |state| add_rule(state, &text)).await,
            Err(reply) => reply,
        },
        (&Method::POST, p) if p.starts_with("/rules/") && (p.ends_with("/disable") || p.ends_with("/enable")) => {
            let (name, switch) = p["/rules/".len()..]
                .rsplit_once('/')
                .expect("a /rules/NAME/SWITCH path");
            let name = percent_encoding::percent_decode_str(name)
                .decode_utf8_lossy()
                .into_owned();
            let on = switch == "enable";
            match state.control.set_enabled(&name, on) {
                Ok(()) => {
                    tracing::info!(rule = %name, enabled = on, "rule switched through the admin API");
                    json_reply(StatusCode::OK, json!({"rule": name, "enabled": on}))
                }
                Err(e) => control_error(e),
            }
        }
        (&Method::GET, "/library") => json_reply(
            StatusCode::OK,
            json!({"scenarios": crate::library::BUILTIN.iter().map(|(name, _)| *name).collect::<Vec<_>>()}),
        ),
        (&Method::GET, p) if p.starts_with("/library/") => match crate::library::text(&p["/library/".len()..]) {
            Some(text) => self::text(StatusCode::OK, "application/yaml", text.to_owned()),
            None => error(StatusCode::NOT_FOUND, "no built-in scenario by that name"),
        },
        (&Method::DELETE, p) if p.starts_with("/rules/") => {
            let name = p["/rules/".len()..].to_owned();
            off_thread(&state, move |state| remove_rule(state, &name)).await
        }
        (&Method::POST, "/halt") => match body(req, body_timeout).await {
            Ok(text) => halt(&state, &text),
            Err(reply) => reply,
        },
        (&Method::POST, "/resume") => resume(&state),
        (&Method::GET, "/events") => events(&state, &query),
        (&Method::GET, "/metrics") => metrics(&state),
        (&Method::GET, "/verdicts") => off_thread(&state, verdicts).await,
        (
            _,
            "/healthz" | "/status" | "/scenario" | "/rules" | "/halt" | "/resume" | "/events" | "/metrics"
            | "/verdicts",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, &format!("no such call: {method} {path}")),
    };
    Ok(reply)
}

/// Runs a change of the scenario on a blocking thread: parsing and compiling a large scenario
/// (up to a second for the largest one the limits let through) must not hold up a thread that
/// serves S3 requests, as the embedded store's are.
async fn off_thread(state: &Arc<AdminState>, change: impl FnOnce(&AdminState) -> Reply + Send + 'static) -> Reply {
    let state = state.clone();
    tokio::task::spawn_blocking(move || change(&state))
        .await
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the change failed: {e}")))
}

fn authorized(req: &Request<Incoming>, token: &str) -> bool {
    let Some(given) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), token.as_bytes())
}

/// The request body as text, at most [`MAX_BODY`] bytes, all in at most `timeout`.
async fn body(req: Request<Incoming>, timeout: Option<std::time::Duration>) -> Result<String, Reply> {
    let collect = Limited::new(req.into_body(), MAX_BODY).collect();
    let limit = timeout.unwrap_or(std::time::Duration::MAX);
    let collected = tokio::time::timeout(limit, collect)
        .await
        .map_err(|_| {
            let mut reply = error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the body did not all come within {limit:?}"),
            );
            reply
                .headers_mut()
                .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
            reply
        })?
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is larger than {MAX_BODY} bytes"),
            )
        })?;
    String::from_utf8(collected.to_bytes().to_vec())
        .map_err(|_| error(StatusCode::BAD_REQUEST, "the body is not UTF-8"))
}

fn status(state: &AdminState) -> Reply {
    let engine = state.control.engine();
    // One load: the phase number and the phases come from the same version of the scenario.
    let (scenario, drill_state) = engine.scenario_and_state();
    let timeline = scenario.timeline();
    let (drill, phase) = match drill_state {
        DrillState::Pending { starts_in } => (
            json!({"state": "pending", "starts_in_s": starts_in.as_secs_f64()}),
            Value::Null,
        ),
        DrillState::Running { phase, at } => {
            let p = &timeline.phases()[phase];
            let phase = match p.name() {
                Some(name) => json!({
                    "name": name,
                    "index": phase,
                    "of": timeline.phases().len(),
                    "left_s": p.end().map(|end| end.saturating_sub(at).as_secs_f64() / timeline.clock().speed()),
                }),
                None => Value::Null,
            };
            (json!({"state": "running"}), phase)
        }
        DrillState::Over => (json!({"state": "over"}), Value::Null),
        DrillState::Expired => (json!({"state": "expired"}), Value::Null),
    };
    let totals = state.telemetry.totals();
    let injected: u64 = engine.stats().iter().map(|s| s.injected).sum();
    json_reply(
        StatusCode::OK,
        json!({
            "scenario": scenario.name(),
            "description": scenario.description(),
            "seed": scenario.seed(),
            "drill": drill,
            "phase": phase,
            "uptime_s": state.telemetry.uptime().as_secs_f64(),
            "halted": engine.halted().is_some(),
            "halt_reason": engine.halted(),
            "dry_run": engine.options().dry_run,
            "requests": totals.requests_total(),
            "faults_injected": injected,
            "active_faults": engine.active_faults(),
            "capped_faults": engine.capped(),
            "blackholed_connections": state.blackholed.load(std::sync::atomic::Ordering::Relaxed),
            "open_connections": totals.open_connections,
            "upstream_idle_connections": state.upstream_idle.load(std::sync::atomic::Ordering::Relaxed),
            "rules": scenario.rules().len(),
            // For the dashboard's rates: requests that failed (5xx or no answer), and the
            // upstream latency histogram (cumulative, seconds).
            "failed": totals.failed_total(),
            "operations": operations(&totals),
            "upstream_latency_buckets": crate::telemetry::LATENCY_BUCKETS,
            "upstream_latency_counts": totals.upstream_buckets,
        }),
    )
}

/// Requests and failures (5xx or no answer) so far, by operation, for the dashboard's
/// per-operation view.
fn operations(totals: &crate::telemetry::Totals) -> Value {
    let mut by: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for (op, class, n) in &totals.requests {
        let entry = by.entry(op.to_string()).or_default();
        entry.0 += n;
        if *class == 0 || *class == 5 {
            entry.1 += n;
        }
    }
    Value::Object(
        by.into_iter()
            .map(|(op, (requests, failed))| (op, json!({"requests": requests, "failed": failed})))
            .collect(),
    )
}

fn get_scenario(state: &AdminState) -> Reply {
    let scenario = state.control.engine().scenario();
    let (text, origin) = state.control.source();
    let phases: Vec<Value> = if scenario.timeline().has_phases() {
        scenario
            .timeline()
            .phases()
            .iter()
            .map(|p| json!({"name": p.name(), "duration_s": p.duration().map(|d| d.as_secs_f64())}))
            .collect()
    } else {
        Vec::new()
    };
    json_reply(
        StatusCode::OK,
        json!({
            "name": scenario.name(),
            "description": scenario.description(),
            "seed": scenario.seed(),
            "origin": origin,
            "phases": phases,
            "rules": scenario.rules().iter().map(|r| r.name()).collect::<Vec<_>>(),
            "yaml": text,
        }),
    )
}

fn put_scenario(state: &AdminState, text: &str) -> Reply {
    match state.control.apply(text, "PUT /scenario") {
        Ok(()) => {
            let scenario = state.control.engine().scenario();
            tracing::info!(
                scenario = scenario.name(),
                rules = scenario.rules().len(),
                "scenario replaced through the admin API"
            );
            json_reply(
                StatusCode::OK,
                json!({"applied": scenario.name(), "rules": scenario.rules().len()}),
            )
        }
        Err(e) => control_error(e),
    }
}

fn list_rules(state: &AdminState) -> Reply {
    let scenario = state.control.engine().scenario();
    let api = state.control.api_rules();
    let api: std::collections::HashMap<&str, _> = api.iter().map(|a| (a.name.as_str(), a)).collect();
    let rules: Vec<Value> = scenario
        .rules()
        .iter()
        .map(|rule| {
            let stats = rule.stats();
            let added = api.get(rule.name());
            json!({
                "name": rule.name(),
                "source": if rule.name().starts_with(&format!("{API_PREFIX}/")) { "api" } else { "file" },
                "enabled": rule.enabled(),
                "faults": rule.faults().iter().map(|f| f.describe()).collect::<Vec<_>>(),
                "matched": stats.matched,
                "injected": stats.injected,
                "expires_in_s": added.and_then(|a| a.expires_in).map(|d| d.as_secs_f64()),
            })
        })
        .collect();
    json_reply(StatusCode::OK, json!({"rules": rules}))
}

fn add_rule(state: &AdminState, text: &str) -> Reply {
    match state.control.add_rule(text) {
        Ok(name) => {
            tracing::info!(rule = %name, "rule added through the admin API");
            json_reply(StatusCode::CREATED, json!({"added": name}))
        }
        Err(e) => control_error(e),
    }
}

fn remove_rule(state: &AdminState, name: &str) -> Reply {
    let name = percent_encoding::percent_decode_str(name).decode_utf8_lossy();
    match state.control.remove_rule(&name) {
        Ok(()) => {
            tracing::info!(rule = %name, "rule removed through the admin API");
            json_reply(StatusCode::OK, json!({"removed": name}))
        }
        Err(e) => control_error(e),
    }
}

fn halt(state: &AdminState, text: &str) -> Reply {
    let reason = if text.trim().is_empty() {
        "admin API".to_owned()
    } else {
        match serde_json::from_str::<Value>(text) {
            Ok(v) => v
                .get("reason")
                .and_then(Value::as_str)
                .map_or_else(|| "admin API".to_owned(), |r| format!("admin API: {r}")),
            Err(e) => return error(StatusCode::BAD_REQUEST, &format!("the body is not JSON: {e}")),
        }
    };
    let engine = state.control.engine();
    if engine.halt(reason.clone()) {
        tracing::warn!(target: "s3chaos::drill", "HALTED by the {reason} — every fault is off, traffic passes untouched");
    }
    json_reply(StatusCode::OK, json!({"halted": true, "reason": engine.halted()}))
}

fn resume(state: &AdminState) -> Reply {
    if state.control.engine().resume() {
        tracing::warn!(target: "s3chaos::drill", "resumed through the admin API — faults apply again");
    }
    json_reply(StatusCode::OK, json!({"halted": false}))
}

fn events(state: &AdminState, query: &str) -> Reply {
    let mut since = 0;
    for (key, value) in url_pairs(query) {
        if key == "since" {
            match value.parse() {
                Ok(n) => since = n,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("`since` must be an event id, got `{value}`"),
                    );
                }
            }
        }
    }
    let events = state.telemetry.recent.since(since);
    let next = events.last().map_or(since, |e| e.id);
    json_reply(
        StatusCode::OK,
        json!({"events": events, "next": next, "total": state.telemetry.recent.total()}),
    )
}

fn metrics(state: &AdminState) -> Reply {
    let totals = state.telemetry.totals();
    let body = prometheus::render(&prometheus::Snapshot {
        totals: &totals,
        engine: state.control.engine(),
        blackholed_connections: state.blackholed.load(std::sync::atomic::Ordering::Relaxed),
        upstream_idle_connections: state.upstream_idle.load(std::sync::atomic::Ordering::Relaxed),
        events_dropped: state.telemetry.request_log().map_or(0, |l| l.dropped()),
    });
    text(StatusCode::OK, prometheus::CONTENT_TYPE, body)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        (decode(k), decode(v))
    })
}

fn control_error(e: ControlError) -> Reply {
    match e {
        ControlError::Invalid(e) => json_reply(
            StatusCode::BAD_REQUEST,
            json!({
                "error": e.to_string(),
                "message": e.message,
                "line": e.position.map(|p| p.0),
                "column": e.position.map(|p| p.1),
            }),
        ),
        ControlError::Conflict(_) => error(StatusCode::CONFLICT, &e.to_string()),
        ControlError::NotFound(_) | ControlError::NoSuchRule(_) => error(StatusCode::NOT_FOUND, &e.to_string()),
    }
}

/// The verdicts so far: the event log judged against the running scenario's `expect:`. The
/// log is read whole, off the serving threads (a long game day's log takes a while).
fn verdicts(state: &AdminState) -> Reply {
    let Some(log) = state.telemetry.request_log() else {
        return error(
            StatusCode::CONFLICT,
            "verdicts are judged from the event log: run s3chaos with --events FILE",
        );
    };
    let expect = crate::verdict::Expectations::of_scenario(&state.control.engine().scenario());
    match crate::verdict::read_events(log.path()) {
        Ok(events) => {
            let verdicts = crate::verdict::judge(&events, &expect);
            json_reply(StatusCode::OK, serde_json::to_value(&verdicts).unwrap_or_default())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Reply {
    json_reply(status, json!({"error": message}))
}

fn json_reply(status: StatusCode, value: Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    body.push(b'\n');
    text_bytes(status, "application/json", body.into())
}

fn text(status: StatusCode, content_type: &str, body: String) -> Reply {
    text_bytes(status, content_type, body.into())
}

fn text_bytes(status: StatusCode, content_type: &str, body: Bytes) -> Reply {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .expect("a valid response")
}
