//! The proxy never writes credentials anywhere: not the secret key, not a session token,
//! not a request's signature (a presigned URL's or an `Authorization` header's), in its log
//! at the most verbose level, in the event log, or in what the admin API tells.

use std::time::Duration;

use aws_sdk_s3::config::Credentials;
use aws_sdk_s3::primitives::ByteStream;

use crate::cli::Running;
use crate::harness::{client_for, raw, single_attempt};

const ACCESS_KEY: &str = "AKIAAUDITEXAMPLE";
const SECRET: &str = "audit-secret-c3VwZXI";
const WRONG_SECRET: &str = "wrong-secret-bm90IGl0";
const SESSION_TOKEN: &str = "audit-session-token-IQoJb3JpZ2luX2Vj";

/// Faults of several kinds fire, so their log lines and events are written too.
const SCENARIO: &str = r#"
name: audit
seed: 3
rules:
  - {name: throttled, match: {operation: GetObject}, probability: 0.5, fault: {error: SlowDown}}
  - {name: slow, match: {operation: PutObject}, fault: {latency: 5ms}}
  - {name: expired, match: {access_key: AKIAOTHER1}, fault: {error: ExpiredToken}}
"#;

/// 64 hexadecimal digits in a row: what a SigV4 signature looks like.
fn has_signature_like(text: &str) -> bool {
    let mut run = 0;
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run += 1;
            if run >= 64 {
                return true;
            }
        } else {
            run = 0;
        }
    }
    false
}

#[tokio::test]
async fn credentials_and_signatures_are_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let scenario = dir.path().join("audit.yaml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let data = dir.path().join("data");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--data-dir".as_ref(),
        data.as_os_str(),
        "--scenario".as_ref(),
        scenario.as_os_str(),
        "--events".as_ref(),
        events.as_os_str(),
        "--access-key".as_ref(),
        ACCESS_KEY.as_ref(),
        "--secret-key".as_ref(),
        SECRET.as_ref(),
    ];
    // Everything, dependencies included.
    let running = Running::start_logging(&args, "trace");
    let proxy = running.addr;

    let with = |secret: &str, token: Option<&str>, key: &str| {
        let credentials = Credentials::new(key, secret, token.map(str::to_owned), None, "audit");
        client_for(proxy, |b| {
            single_attempt(b.credentials_provider(credentials), Some(Duration::from_secs(5)))
        })
    };
    let good = with(SECRET, Some(SESSION_TOKEN), ACCESS_KEY);
    good.create_bucket().bucket("audit").send().await.unwrap();
    for i in 0..10 {
        good.put_object()
            .bucket("audit")
            .key(format!("k{i}"))
            .body(ByteStream::from_static(b"data"))
            .send()
            .await
            .unwrap();
        let _ = good.get_object().bucket("audit").key(format!("k{i}")).send().await;
    }
    // A wrong secret: the store refuses the signature (and libraries like to log both).
    let wrong = with(WRONG_SECRET, None, ACCESS_KEY);
    assert!(wrong.list_objects_v2().bucket("audit").send().await.is_err());
    let expired = with(SECRET, None, "AKIAOTHER1");
    assert!(expired.head_bucket().bucket("audit").send().await.is_err());
    // A presigned URL carries its signature in the query.
    let presigned = good
        .get_object()
        .bucket("audit")
        .key("k1")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let url = presigned.uri().to_owned();
    assert!(url.contains("X-Amz-Signature="));
    let _ = raw("GET", &url).await;

    let mut told = Vec::new();
    for path in ["/status", "/events", "/rules", "/metrics", "/scenario"] {
        told.push(raw("GET", &format!("http://{}{path}", running.admin)).await.body);
    }
    let log = running.finish().join("\n");
    let events = std::fs::read_to_string(&events).unwrap();
    let admin = told
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect::<Vec<_>>()
        .join("\n");

    // The log and the events are really there: this checks something. Every injected fault
    // has its log line, and the log is at trace level.
    let faulted = events.lines().filter(|l| l.contains("\"fault\":")).count();
    let logged = log.lines().filter(|l| l.contains("fault injected")).count();
    assert!(faulted >= 10, "{events}");
    assert_eq!(logged, faulted, "one log line per injected fault");
    assert!(log.contains(" TRACE "), "the log is at trace level");
    assert!(events.lines().count() >= 24, "{events}");
    assert!(
        events.contains("SlowDown") && events.contains("ExpiredToken"),
        "{events}"
    );

    for (place, text) in [("the log", &log), ("the event log", &events), ("the admin API", &admin)] {
        for secret in [
            SECRET,
            WRONG_SECRET,
            SESSION_TOKEN,
            "X-Amz-Signature",
            "Signature=",
            "AWS4-HMAC-SHA256 Credential",
        ] {
            let line = text.lines().find(|l| l.contains(secret));
            assert!(line.is_none(), "{place} contains `{secret}`: {line:?}");
        }
        assert!(!has_signature_like(text), "{place} holds something like a signature");
    }
}
