//! S3's own quirks as named faults (issue "S3 quirks"): each met by a real client.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, presigned_get, seed_object};

const STALE_KEEP_ALIVE: &str =
    "name: idle\nrules:\n  - {name: idle-close, match: {idle_for: 200ms}, fault: {close: before_response}}\n";

/// One GET on `s` (kept alive): the answer's head and body, or `None` if the connection
/// ended before any answer byte. Panics on an RST: the close must be a FIN.
async fn get_on(s: &mut tokio::net::TcpStream, (path, host): &(String, String)) -> Option<String> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer or a close within 5 s")
            .expect("a FIN, not an RST");
        if n == 0 {
            return (!got.is_empty()).then(|| String::from_utf8_lossy(&got).into_owned());
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length: usize = text[..head_end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= head_end + 4 + length {
                return Some(text.into_owned());
            }
        }
    }
}

/// `close: before_response` with `idle_for`: requests that follow each other on a kept-alive
/// connection are answered; the one that comes after the connection sat idle finds it closed
/// (a FIN, no answer), as when S3 closes an idle connection as the client reuses it.
#[tokio::test]
async fn a_request_on_a_connection_idle_too_long_finds_it_closed_with_a_fin() {
    let h = Harness::start(STALE_KEEP_ALIVE).await;
    seed_object(&h, "quirks", "k", 10).await;
    let get = presigned_get(&h, "quirks", "k").await;
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let first = get_on(&mut s, &get)
        .await
        .expect("a connection's first request is never idle");
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let soon = get_on(&mut s, &get).await.expect("not idle long enough");
    assert!(soon.starts_with("HTTP/1.1 200"), "{soon}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get_on(&mut s, &get).await, None, "closed under the request, no answer");
    let stats = h.engine.stats();
    assert_eq!(
        (stats[0].matched, stats[0].injected),
        (1, 1),
        "only the request after the idle time"
    );
}

/// The Rust SDK meets it: its pooled connection is closed under its request after an idle
/// time, and it retries on a new connection; the call succeeds.
#[tokio::test]
async fn the_rust_sdk_retries_a_request_on_a_connection_closed_under_it() {
    let h = Harness::start_logged(
        "name: idle\nrules:\n  - {name: idle-close, match: {idle_for: 200ms}, limit: 1, fault: {close: before_response}}\n",
    )
    .await;
    let body = seed_object(&h, "quirks", "k", 10).await;
    let c = h.client();
    let get = || async {
        c.get_object()
            .bucket("quirks")
            .key("k")
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes()
    };
    assert_eq!(get().await, body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get().await, body, "retried after the close");
    let events = h.events(3).await;
    let gets: Vec<_> = events.iter().filter(|e| e.operation == "GetObject").collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[1].outcome.as_deref(), Some("no_response"), "{gets:?}");
    assert_eq!(
        gets[1].fault.as_deref(),
        Some("close before the response (FIN, no answer)")
    );
    assert_eq!(gets[1].invocation, gets[2].invocation, "the SDK's own retry");
    assert_eq!(gets[1].conn, gets[0].conn, "the pooled connection was reused");
    assert_ne!(gets[2].conn, gets[1].conn, "and the retry came on a new one");
}

/// Runs `command` (in `dir`) under `s3chaos exec` with a stale keep-alive close on the first
/// GET after an idle time; the command must succeed, and the log must show the closed
/// attempt followed by a successful retry.
fn retried_under_exec(command: &[&str], dir: &std::path::Path) {
    let work = tempfile::tempdir().unwrap();
    let scenario = work.path().join("idle.yaml");
    std::fs::write(
        &scenario,
        "name: idle\nrules:\n  - {name: idle-close, match: {idle_for: 200ms, operation: GetObject}, limit: 1, fault: {close: before_response}}\n",
    )
    .unwrap();
    let events = work.path().join("events.jsonl");
    let out = std::process::Command::new(crate::cli::BIN)
        .args(["exec", "--scenario"])
        .arg(&scenario)
        .arg("--data-dir")
        .arg(work.path().join("data"))
        .arg("--events")
        .arg(&events)
        .arg("--")
        .args(command)
        .current_dir(dir)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{said}", String::from_utf8_lossy(&out.stdout));
    assert!(
        said.contains("idle-close") && said.contains("injected       1"),
        "{said}"
    );
    let gets: Vec<s3chaos::telemetry::RequestEvent> = s3chaos::verdict::read_events(&events)
        .unwrap()
        .into_iter()
        .filter(|e| e.operation == "GetObject")
        .collect();
    assert_eq!(gets.len(), 3, "{gets:?}");
    assert_eq!(gets[1].outcome.as_deref(), Some("no_response"), "{gets:?}");
    assert_eq!(gets[2].status, Some(200), "{gets:?}");
}

/// boto3 meets it too (botocore retries a connection closed before a response).
#[test]
fn boto3_retries_a_request_on_a_connection_closed_under_it() {
    if !crate::cli::python_with("boto3", "boto3 against close: before_response") {
        return;
    }
    let script = r#"
import os, time, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard"}))
s3.create_bucket(Bucket="quirks")
s3.put_object(Bucket="quirks", Key="k", Body=b"0123456789")
assert s3.get_object(Bucket="quirks", Key="k")["Body"].read() == b"0123456789"
time.sleep(0.3)
assert s3.get_object(Bucket="quirks", Key="k")["Body"].read() == b"0123456789"
"#;
    retried_under_exec(&["python3", "-c", script], std::path::Path::new("."));
}

/// And the JavaScript SDK v3 (`tests/clients/js/idle.mjs`).
#[test]
fn the_javascript_sdk_retries_a_request_on_a_connection_closed_under_it() {
    if let Some(js) = crate::clients::javascript_sdk() {
        retried_under_exec(&["node", "idle.mjs"], &js);
    }
}
