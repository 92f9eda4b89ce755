//! The `s3chaos` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_s3chaos");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_reports_file_line_column_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.yaml", "name: ok\nrules:\n  - fault: {latency: 10ms}\n");
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\nrules:\n  - name: r\n    match: {operation: GetObjects}\n    fault: reset\n",
    );
    let out = Command::new(BIN).arg("validate").arg(&good).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:4:24: ", bad.display());
    assert!(stderr.contains(&expected), "expected `{expected}` in {stderr}");
    assert!(stderr.contains("unknown S3 operation `GetObjects`"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("good.yaml: ok"));

    let out = Command::new(BIN).arg("validate").arg(&good).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn validate_accepts_the_shipped_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    let out = Command::new(BIN).arg("validate").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_refuses_a_bad_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\nrules:\n  - fault: {error: SlowDown}\n    probability: 1.7\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:4:18: ", bad.display())), "{stderr}");
    assert!(stderr.contains("probability must be between 0 and 1"), "{stderr}");
}

/// The README's first command: `s3chaos run` with no upstream serves an embedded store that
/// an SDK can use with the credentials people already have in their CI (test/test).
#[tokio::test]
async fn run_without_upstream_serves_an_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut addr = None;
    let mut saw_data_dir = false;
    while addr.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("s3chaos logged its address");
        saw_data_dir |= line.contains("data_dir=");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(
                rest.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
            );
        }
    }
    assert!(saw_data_dir, "the log says where the data lives");
    let addr = addr.unwrap();

    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "ci"))
        .endpoint_url(format!("http://{addr}"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    c.create_bucket().bucket("first").send().await.unwrap();
    c.put_object()
        .bucket("first")
        .key("hello.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hi"))
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket("first").key("hello.txt").send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"hi");
    assert!(dir.path().join("data/first").exists(), "data is stored in --data-dir");

    child.kill().unwrap();
    child.wait().unwrap();
}
