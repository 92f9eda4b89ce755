//! Verdicts with real clients: the SDK's standard retries pass, the clients with the classic
//! bugs fail the expectation that names them, and the evidence names the call.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use http_body_util::BodyExt;
use s3chaos::verdict::{self, Expectations, Status, Verdict};

use crate::harness::{Harness, client_for, presigned_get};

fn judged(h: &Harness) -> Vec<Verdict> {
    let events = verdict::read_events(&h.events_path()).unwrap();
    verdict::judge(&events, &Expectations::of_scenario(&h.engine.scenario())).verdicts
}

fn get<'v>(verdicts: &'v [Verdict], expectation: &str) -> &'v Verdict {
    verdicts.iter().find(|v| v.expectation == expectation).unwrap()
}

/// `bucket` with `keys` in it (each holding `v`), made directly on the store.
async fn stored(h: &Harness, bucket: &str, keys: &[&str]) {
    let d = h.direct();
    d.create_bucket().bucket(bucket).send().await.unwrap();
    for key in keys {
        d.put_object()
            .bucket(bucket)
            .key(*key)
            .body(b"v".to_vec().into())
            .send()
            .await
            .unwrap();
    }
}

/// A client written in the test: presigned GETs of one key over one keep-alive connection,
/// with whatever headers (and retry policy) the test gives it.
struct RawGets {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Empty<bytes::Bytes>,
    >,
    url: String,
    host: String,
}

impl RawGets {
    async fn new(h: &Harness, bucket: &str, key: &str) -> RawGets {
        let (target, host) = presigned_get(h, bucket, key).await;
        RawGets {
            client: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            url: format!("http://{}{target}", h.proxy),
            host,
        }
    }

    /// One GET, its body read; whether it succeeded.
    async fn get(&self, headers: &[(&str, String)]) -> bool {
        let mut req = http::Request::get(&self.url).header("host", &self.host);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let answer = self
            .client
            .request(req.body(http_body_util::Empty::new()).unwrap())
            .await
            .unwrap();
        let ok = answer.status().is_success();
        let _ = answer.into_body().collect().await;
        ok
    }
}

fn text(v: &Verdict) -> String {
    format!(
        "{} {}: {}\n{}",
        v.status,
        v.expectation,
        v.summary,
        v.evidence.join("\n")
    )
}

/// The Rust SDK with its standard retry policy (3 attempts, exponential backoff with full
/// jitter from 1 s) against two SlowDowns: a call of three attempts, spaced, that succeeds.
#[tokio::test]
async fn the_sdk_with_standard_retries_passes_backoff_attempts_and_recovery() {
    let h = Harness::start_logged(
        "name: brownout\nexpect: {backoff: true, max_attempts: 3, recovers_within: 30s}\nrules:\n  - {name: brownout, match: {operation: GetObject}, limit: 2, fault: {error: SlowDown}}\n",
    )
    .await;
    stored(&h, "vbk", &["k"]).await;
    let sdk = client_for(h.proxy, |b| b.retry_config(RetryConfig::standard()));
    sdk.get_object()
        .bucket("vbk")
        .key("k")
        .send()
        .await
        .expect("the third attempt succeeds");
    h.events(3).await;
    let verdicts = judged(&h);
    for name in ["backoff", "max_attempts", "recovers_within"] {
        assert_eq!(
            get(&verdicts, name).status,
            Status::Pass,
            "{}",
            text(get(&verdicts, name))
        );
    }
    let attempts = get(&verdicts, "max_attempts");
    assert!(attempts.summary.starts_with("at most 3 attempts"), "{}", text(attempts));
    assert!(
        attempts.evidence[0].contains("GetObject vbk/k (invocation "),
        "grouped by the SDK's invocation id: {}",
        text(attempts)
    );
}

const SCENARIO_STORM: &str = "name: storm\nexpect: {max_amplification: 3}\nrules:\n  - {name: storm, match: {operation: GetObject}, limit: 6, fault: {error: SlowDown}}\n";

/// A client written here that retries at once, in a loop, with no backoff (and sends no
/// invocation id: the attempts are grouped by key after a failure): it fails `backoff` by
/// default and the stated `max_amplification`.
#[tokio::test]
async fn a_tight_retry_loop_fails_backoff_and_amplification() {
    let h = Harness::start_logged(SCENARIO_STORM).await;
    stored(&h, "vloop", &["hot"]).await;
    let client = RawGets::new(&h, "vloop", "hot").await;
    let mut tries = 0;
    loop {
        tries += 1;
        if client.get(&[]).await || tries == 20 {
            break;
        }
    }
    assert_eq!(tries, 7, "six SlowDowns, then the object");
    h.events(7).await;
    let verdicts = judged(&h);
    let backoff = get(&verdicts, "backoff");
    assert_eq!(backoff.status, Status::Fail, "{}", text(backoff));
    assert!(backoff.summary.contains("tight loop"), "{}", text(backoff));
    assert!(
        backoff.evidence[0].contains("GetObject vloop/hot") && backoff.evidence[0].contains("7 attempts"),
        "{}",
        text(backoff)
    );
    assert!(
        backoff.evidence[0].contains("inference"),
        "marked as inferred: {}",
        text(backoff)
    );
    let amplification = get(&verdicts, "max_amplification");
    assert_eq!(amplification.status, Status::Fail, "{}", text(amplification));
    assert!(
        amplification.summary.contains("7 requests for 1 calls"),
        "{}",
        text(amplification)
    );

    // Live, on the admin API: the same verdicts so far.
    let (admin, _control) = h.admin(SCENARIO_STORM, None).await;
    let (status, json) = crate::admin::call(admin, "GET", "/verdicts", "", None).await;
    assert_eq!(status, 200, "{json}");
    let live = json["verdicts"].as_array().unwrap();
    let backoff = live.iter().find(|v| v["expectation"] == "backoff").unwrap();
    assert_eq!(backoff["status"], "fail", "{json}");
    assert_eq!(json["requests"], 7, "{json}");
}

/// Without an event log the admin API says what it needs.
#[tokio::test]
async fn live_verdicts_need_the_event_log() {
    let h = Harness::start("name: none\nrules: []\n").await;
    let (admin, _control) = h.admin("name: none\nrules: []\n", None).await;
    let (status, json) = crate::admin::call(admin, "GET", "/verdicts", "", None).await;
    assert_eq!(status, 409, "{json}");
    assert!(json["error"].as_str().unwrap().contains("--events"), "{json}");
}

/// A client with no read timeout against a blackhole is still waiting when the drill ends:
/// a failure by default. One that gives up after 200 ms is timed, and passes the stated
/// `gives_up_within: 2s`.
#[tokio::test]
async fn a_client_without_a_read_timeout_is_still_held_when_the_drill_ends() {
    let mut h = Harness::start_logged(
        "name: hole\nexpect: {gives_up_within: 2s}\nrules:\n  - {name: hole, match: {operation: GetObject}, fault: blackhole}\n",
    )
    .await;
    stored(&h, "vhole", &["forever", "patient"]).await;
    let forever = crate::harness::send_raw_get(&h, "vhole", "forever").await;
    let patient = h.single_attempt_client(Some(Duration::from_millis(200)));
    assert!(
        patient
            .get_object()
            .bucket("vhole")
            .key("patient")
            .send()
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.stop_proxy();
    let events = h.events(2).await;
    assert!(
        events
            .iter()
            .any(|e| e.key == "forever" && e.outcome.as_deref() == Some("still_held")),
        "{events:?}"
    );
    let left = events.iter().find(|e| e.key == "patient").unwrap();
    assert_eq!(left.outcome.as_deref(), Some("no_response"));
    let waited = left.duration_ms.unwrap();
    assert!(
        (150.0..1500.0).contains(&waited),
        "logged when the client left: {waited} ms"
    );
    let verdicts = judged(&h);
    let held = get(&verdicts, "gives_up_within");
    assert_eq!(held.status, Status::Fail, "{}", text(held));
    assert!(held.summary.contains("1 still held"), "{}", text(held));
    assert!(
        held.evidence.iter().any(|e| e.contains("vhole/forever still waiting")),
        "{}",
        text(held)
    );
    assert!(
        !held.evidence.iter().any(|e| e.contains("patient")),
        "it gave up in time: {}",
        text(held)
    );
    drop(forever);
}

/// An app that gives up a multipart upload after a failed part, without aborting it, leaves
/// its parts billed: `no_open_multipart_uploads` fails by default and names the upload.
#[tokio::test]
async fn an_abandoned_multipart_upload_is_named() {
    let h = Harness::start_logged(
        "name: parts\nrules:\n  - {name: parts, match: {operation: UploadPart, key: abandoned}, fault: {error: InternalError}}\n",
    )
    .await;
    let c = h.single_attempt_client(None);
    c.create_bucket().bucket("vparts").send().await.unwrap();
    let mut ids = Vec::new();
    for key in ["abandoned", "finished"] {
        let created = c
            .create_multipart_upload()
            .bucket("vparts")
            .key(key)
            .send()
            .await
            .unwrap();
        let id = created.upload_id().unwrap().to_owned();
        let part = c
            .upload_part()
            .bucket("vparts")
            .key(key)
            .upload_id(&id)
            .part_number(1)
            .body(vec![1u8; 1000].into())
            .send()
            .await;
        if let Ok(part) = part {
            let done = aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .e_tag(part.e_tag().unwrap())
                        .build(),
                )
                .build();
            c.complete_multipart_upload()
                .bucket("vparts")
                .key(key)
                .upload_id(&id)
                .multipart_upload(done)
                .send()
                .await
                .unwrap();
        }
        ids.push(id);
    }
    h.events(6).await; // CreateBucket, two creates, two parts, one complete
    let verdicts = judged(&h);
    let open = get(&verdicts, "no_open_multipart_uploads");
    assert_eq!(open.status, Status::Fail, "{}", text(open));
    assert!(
        open.summary.contains("2 uploads created, 1 left open"),
        "{}",
        text(open)
    );
    assert_eq!(open.evidence.len(), 1, "{}", text(open));
    assert!(
        open.evidence[0].contains(&format!("vparts/abandoned upload {}", ids[0])),
        "{}",
        text(open)
    );
}

/// An app that retries `AccessDenied` in its own loop (three tries, 50 ms apart): the SDK
/// does not retry it, the app does, and the stated `no_retry_on` fails on that call.
#[tokio::test]
async fn an_app_that_retries_access_denied_fails_no_retry_on() {
    let h = Harness::start_logged(
        "name: denied\nexpect: {no_retry_on: [AccessDenied]}\nrules:\n  - {name: denied, match: {operation: PutObject, key: secret}, fault: {error: AccessDenied}}\n",
    )
    .await;
    let c = h.client();
    c.create_bucket().bucket("vdeny").send().await.unwrap();
    for _ in 0..3 {
        let put = c
            .put_object()
            .bucket("vdeny")
            .key("secret")
            .body(b"v".to_vec().into())
            .send()
            .await;
        assert!(put.is_err());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.put_object()
        .bucket("vdeny")
        .key("open")
        .body(b"v".to_vec().into())
        .send()
        .await
        .unwrap();
    h.events(5).await;
    let events = verdict::read_events(&h.events_path()).unwrap();
    let denied: Vec<_> = events.iter().filter(|e| e.key == "secret").collect();
    assert_eq!(denied.len(), 3, "the SDK did not retry AccessDenied itself: {denied:?}");
    assert!(
        denied.iter().all(|e| e.error_code.as_deref() == Some("AccessDenied")),
        "{denied:?}"
    );
    let verdicts = judged(&h);
    let retried = get(&verdicts, "no_retry_on");
    assert_eq!(retried.status, Status::Fail, "{}", text(retried));
    assert!(
        retried.evidence[0].contains("PutObject vdeny/secret") && retried.evidence[0].contains("inference"),
        "{}",
        text(retried)
    );
}

/// s3chaos answers SlowDown with `Retry-After: 2`; a client that retries 100 ms later
/// ignores it, and the stated `honours_retry_after` fails on that call.
#[tokio::test]
async fn a_client_that_ignores_retry_after_fails_honours_retry_after() {
    let h = Harness::start_logged(
        "name: wait\nexpect: {honours_retry_after: true}\nrules:\n  - {name: wait, match: {operation: GetObject}, limit: 2, fault: {error: {code: SlowDown, retry_after: 2s}}}\n",
    )
    .await;
    stored(&h, "vwait", &["k"]).await;
    let client = RawGets::new(&h, "vwait", "k").await;
    for _ in 0..3 {
        client.get(&[]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let events = h.events(3).await;
    assert_eq!(
        events.iter().filter(|e| e.retry_after_s == Some(2.0)).count(),
        2,
        "{events:?}"
    );
    let verdicts = judged(&h);
    let waited = get(&verdicts, "honours_retry_after");
    assert_eq!(waited.status, Status::Fail, "{}", text(waited));
    assert!(
        waited.summary.starts_with("2 of 2 retries came before the Retry-After"),
        "{}",
        text(waited)
    );
    assert!(waited.evidence[0].contains("GetObject vwait/k"), "{}", text(waited));
}

/// A client that backs off but always by the same 200 ms (no jitter: every client retries in
/// step, the thundering herd): `backoff: true` fails on the jitter, not on a tight loop.
#[tokio::test]
async fn a_fixed_backoff_without_jitter_fails_backoff_when_stated() {
    let h = Harness::start_logged(
        "name: herd\nexpect: {backoff: true}\nrules:\n  - {name: herd, match: {operation: GetObject}, every: 2, fault: {error: SlowDown}}\n",
    )
    .await;
    stored(&h, "vherd", &["k"]).await;
    let client = RawGets::new(&h, "vherd", "k").await;
    for call in 0..7 {
        for attempt in 1..=2 {
            let headers = [
                ("amz-sdk-invocation-id", format!("fixed-{call}")),
                ("amz-sdk-request", format!("attempt={attempt}; max=2")),
            ];
            if client.get(&headers).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    h.events(13).await; // the first call passes, then every first attempt meets a SlowDown
    let verdicts = judged(&h);
    let backoff = get(&verdicts, "backoff");
    assert_eq!(backoff.status, Status::Fail, "{}", text(backoff));
    assert!(backoff.summary.contains("not jittered"), "{}", text(backoff));
    assert!(!backoff.summary.contains("tight loop"), "{}", text(backoff));
}
