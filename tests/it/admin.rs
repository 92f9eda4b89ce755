//! The admin API over real HTTP: every call, bad input to each (a clear 4xx, nothing
//! changed), metrics parsed as Prometheus text, and the token.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::harness::{Harness, seed_object};

const SCENARIO: &str =
    "name: admin-test\nrules:\n  - {name: file-rule, match: {bucket: elsewhere}, fault: {error: InternalError}}\n";

/// One call: status and body (JSON when it parses, else a JSON string).
pub async fn call(addr: SocketAddr, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client
        .request(req.body(Full::new(Bytes::from(body.to_owned()))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn get(addr: SocketAddr, path: &str) -> (u16, Value) {
    call(addr, "GET", path, "", None).await
}

#[tokio::test]
async fn every_call_works_and_bad_input_changes_nothing() {
    let h = Harness::start(SCENARIO).await;
    seed_object(&h, "live", "k", 100).await;
    let (admin, _control) = h.admin(SCENARIO, None).await;
    let c = h.single_attempt_client(None);
    let get_object = || c.get_object().bucket("live").key("k").send();

    assert_eq!(get(admin, "/healthz").await, (200, Value::String("ok\n".into())));
    let (status, s) = get(admin, "/status").await;
    assert_eq!(status, 200);
    assert_eq!(s["scenario"], "admin-test");
    assert_eq!(s["halted"], false);
    assert_eq!(s["drill"]["state"], "running");

    // A rule added at run time, with a ttl.
    let (status, added) = call(
        admin,
        "POST",
        "/rules",
        r#"{"name": "slow-gets", "match": {"operation": "GetObject"}, "fault": {"error": "SlowDown"}, "ttl": "1s"}"#,
        None,
    )
    .await;
    assert_eq!((status, &added["added"]), (201, &Value::from("api/slow-gets")));
    assert_eq!(get_object().await.unwrap_err().code(), Some("SlowDown"));
    let (_, rules) = get(admin, "/rules").await;
    let rule = &rules["rules"][0];
    assert_eq!(
        (&rule["name"], &rule["source"]),
        (&"api/slow-gets".into(), &"api".into())
    );
    assert_eq!(
        (rule["matched"].as_u64(), rule["injected"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(rule["expires_in_s"].as_f64().unwrap() <= 1.0);
    assert_eq!(rules["rules"][1]["source"], "file");
    let (status, _) = call(
        admin,
        "POST",
        "/rules",
        r#"{"name": "slow-gets", "fault": "reset"}"#,
        None,
    )
    .await;
    assert_eq!(status, 409, "a second rule of that name");

    // The recent faults.
    let (_, events) = get(admin, "/events?since=0").await;
    let list = events["events"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["rule"], "api/slow-gets");
    assert_eq!(list[0]["operation"], "GetObject");
    assert!(!list[0]["request_id"].as_str().unwrap().is_empty());
    let next = events["next"].as_u64().unwrap();
    let (_, later) = get(admin, &format!("/events?since={next}")).await;
    assert!(later["events"].as_array().unwrap().is_empty());

    // The ttl runs out: the rule removes itself.
    let mut gone = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, rules) = get(admin, "/rules").await;
        if rules["rules"].as_array().unwrap().len() == 1 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the ttl removed the rule");
    assert!(get_object().await.is_ok());

    // The kill switch.
    let (status, _) = call(
        admin,
        "POST",
        "/rules",
        "{name: all, fault: {error: InternalError}}",
        None,
    )
    .await;
    assert_eq!(status, 201, "YAML works as well as JSON");
    assert!(get_object().await.is_err());
    let (status, halted) = call(admin, "POST", "/halt", r#"{"reason": "incident 42"}"#, None).await;
    assert_eq!(
        (status, &halted["reason"]),
        (200, &Value::from("admin API: incident 42"))
    );
    assert!(get_object().await.is_ok(), "halted: untouched");
    assert_eq!(get(admin, "/status").await.1["halted"], true);
    assert_eq!(call(admin, "POST", "/resume", "", None).await.0, 200);
    assert!(get_object().await.is_err(), "resumed");
    assert_eq!(call(admin, "DELETE", "/rules/api/all", "", None).await.0, 200);
    assert!(get_object().await.is_ok());

    // The scenario: a bad one is refused with its line and column, the good one runs.
    let (status, refused) = call(
        admin,
        "PUT",
        "/scenario",
        "name: next\nrules:\n  - fault: {error: SlowDwn}\n",
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(refused["line"], 3, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("unknown S3 error code `SlowDwn`")
    );
    assert_eq!(get(admin, "/scenario").await.1["name"], "admin-test", "untouched");
    let next = "name: next\nrules:\n  - {name: everything, fault: {error: ServiceUnavailable}}\n";
    let (status, applied) = call(admin, "PUT", "/scenario", next, None).await;
    assert_eq!((status, &applied["applied"]), (200, &Value::from("next")));
    let (_, scenario) = get(admin, "/scenario").await;
    assert_eq!(scenario["yaml"], next);
    assert_eq!(get_object().await.unwrap_err().code(), Some("ServiceUnavailable"));

    // Bad input to each call: a clear 4xx, nothing changed.
    for (method, path, body, expected) in [
        ("POST", "/rules", "{not json", 400),
        ("POST", "/rules", r#"{"fault": {"latency": "fast"}}"#, 400),
        ("POST", "/rules", r#"{"fault": "reset", "ttl": "0s"}"#, 400),
        ("DELETE", "/rules/api/nope", "", 404),
        ("DELETE", "/rules/everything", "", 404),
        ("PUT", "/scenario", "", 400),
        ("POST", "/halt", "{oops", 400),
        ("GET", "/events?since=yesterday", "", 400),
        ("DELETE", "/status", "", 405),
        ("GET", "/nope", "", 404),
    ] {
        let (status, body) = call(admin, method, path, body, None).await;
        assert_eq!(status, expected, "{method} {path}: {body}");
        assert!(body["error"].is_string(), "{method} {path}: a JSON error: {body}");
    }
    let huge = "x".repeat(2 * 1024 * 1024);
    assert_eq!(call(admin, "PUT", "/scenario", &huge, None).await.0, 413);
    assert_eq!(get(admin, "/status").await.1["halted"], false);
    let (_, scenario) = get(admin, "/scenario").await;
    assert_eq!(
        (&scenario["name"], &scenario["rules"]),
        (&"next".into(), &serde_json::json!(["everything"]))
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let h = Harness::start(
        "name: m\nrules:\n  - {name: break-b, match: {bucket: broken}, fault: {error: InternalError}}\n",
    )
    .await;
    seed_object(&h, "fine", "k", 100).await;
    let (admin, _) = h.admin("", None).await;
    let c = h.single_attempt_client(None);
    for _ in 0..5 {
        c.get_object().bucket("fine").key("k").send().await.unwrap();
    }
    for _ in 0..3 {
        assert!(c.get_object().bucket("broken").key("k").send().await.is_err());
    }
    let (status, text) = get(admin, "/metrics").await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{text}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref buckets) => buckets.last().map_or(0.0, |b| b.count),
            _ => panic!("unexpected type for {name}"),
        }
    };
    assert_eq!(
        value(
            "s3chaos_requests_total",
            &[("operation", "GetObject"), ("status", "2xx")]
        ),
        5.0
    );
    assert_eq!(
        value(
            "s3chaos_requests_total",
            &[("operation", "GetObject"), ("status", "5xx")]
        ),
        3.0
    );
    assert_eq!(value("s3chaos_responses_total", &[("code", "500")]), 3.0);
    assert_eq!(
        value(
            "s3chaos_faults_injected_total",
            &[("rule", "break-b"), ("kind", "error")]
        ),
        3.0
    );
    assert_eq!(value("s3chaos_rule_matched_total", &[("rule", "break-b")]), 3.0);
    assert_eq!(
        value("s3chaos_upstream_response_seconds", &[]),
        5.0,
        "only forwarded requests"
    );
    assert_eq!(value("s3chaos_halted", &[]), 0.0);
    assert_eq!(value("s3chaos_blackholed_connections", &[]), 0.0);
    assert!(
        value("s3chaos_open_connections", &[]) >= 1.0,
        "the client's keep-alive connection"
    );
}

#[tokio::test]
async fn a_token_guards_the_api_and_is_required_off_loopback() {
    let h = Harness::start("name: t\n").await;
    let refused = s3chaos::admin::Admin::bind(
        "0.0.0.0:0".parse().unwrap(),
        s3chaos::admin::AdminState {
            control: std::sync::Arc::new(s3chaos::control::Control::passthrough(h.engine.clone())),
            telemetry: h.telemetry.clone(),
            blackholed: Default::default(),
            upstream_idle: Default::default(),
            token: None,
        },
    )
    .await;
    let Err(e) = refused else {
        panic!("bound a public admin API without a token")
    };
    assert!(e.to_string().contains("without a token"), "{e}");

    let (admin, _) = h.admin("name: t\n", Some("s3cret")).await;
    assert_eq!(call(admin, "GET", "/status", "", None).await.0, 401);
    assert_eq!(
        call(admin, "GET", "/healthz", "", None).await.0,
        200,
        "probes need no token"
    );
    assert_eq!(call(admin, "POST", "/halt", "", Some("wrong")).await.0, 401);
    assert_eq!(h.engine.halted(), None, "an unauthorized call changes nothing");
    assert_eq!(call(admin, "GET", "/status", "", Some("s3cret")).await.0, 200);
}

/// A rate limit's token bucket is the engine's, not the parsed file's: adding an unrelated
/// rule through the admin API (a recompile), reloading the same file and a rule expiring do
/// not refill it. (Before the state moved to the engine, the HEAD after `POST /rules` was a
/// 200.)
#[tokio::test]
async fn a_rate_limit_is_not_refilled_by_rule_changes_or_reloads() {
    const RATE: &str = "name: rate\nrules:\n  - {name: heads, match: {operation: HeadObject}, fault: {rate_limit: {rps: 0.01, burst: 1}}}\n";
    let h = Harness::start(RATE).await;
    seed_object(&h, "bkt", "k", 10).await;
    let (admin, control) = h.admin(RATE, None).await;
    let c = h.single_attempt_client(None);
    let head = || async {
        c.head_object()
            .bucket("bkt")
            .key("k")
            .send()
            .await
            .map(|_| 200)
            .map_err(|e| e.raw_response().map(|r| r.status().as_u16()))
    };
    assert_eq!(head().await, Ok(200), "the burst of one");
    assert_eq!(head().await, Err(Some(503)), "over the rate");

    let (status, _) = call(
        admin,
        "POST",
        "/rules",
        r#"{"name": "elsewhere", "match": {"bucket": "other"}, "fault": {"error": "InternalError"}, "ttl": "300ms"}"#,
        None,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        head().await,
        Err(Some(503)),
        "a rule added at run time refilled the bucket"
    );

    control.apply(RATE, "same file again").unwrap();
    assert_eq!(
        head().await,
        Err(Some(503)),
        "reloading the same drill refilled the bucket"
    );

    // The added rule expires (the ttl sweep recompiles the scenario).
    tokio::time::sleep(Duration::from_millis(400)).await;
    control.expire(std::time::Instant::now());
    let (_, rules) = get(admin, "/rules").await;
    assert_eq!(
        rules["rules"].as_array().unwrap().len(),
        1,
        "the api rule expired: {rules}"
    );
    assert_eq!(head().await, Err(Some(503)), "an expiring rule refilled the bucket");
    assert_eq!(h.stats("heads").injected, 4, "each refused HEAD counted once");
}
