//! The embedded store out of file descriptors: a GET of an object that exists must be an
//! S3 5xx the SDKs retry (503 SlowDown or 500 InternalError), never `404 NoSuchKey`, which
//! an app takes as "the object is gone" (s3s-fs answered NoSuchKey). Run as the release
//! binary would be, under `ulimit -n`, with idle connections using up the rest.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A `s3chaos store` limited to `nofile` descriptors, and its address.
fn store_with_fd_limit(data: &std::path::Path, nofile: u32) -> (std::process::Child, std::net::SocketAddr) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n {nofile} && exec \"$0\" store --listen 127.0.0.1:0 --data-dir \"$1\""
        ))
        .arg(env!("CARGO_BIN_EXE_s3chaos"))
        .arg(data)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok);
    for line in lines.by_ref() {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            // Go on reading (and showing) its log, so its stderr never closes.
            std::thread::spawn(move || lines.for_each(|line| eprintln!("store: {line}")));
            return (child, addr);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the store did not start");
}

async fn connect(addr: std::net::SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// One unsigned request (the store takes any credentials, and none): status and body.
async fn call(send: &mut SendRequest<Full<Bytes>>, method: &str, path: &str, body: &'static [u8]) -> (u16, String) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    send.ready().await.expect("the connection to the store stays open");
    let resp = tokio::time::timeout(Duration::from_secs(10), send.send_request(req))
        .await
        .expect("the store answers within 10 s")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_object_is_never_a_404_when_descriptors_run_out() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = store_with_fd_limit(&dir.path().join("data"), 64);
    let mut keep = connect(addr).await;
    assert_eq!(call(&mut keep, "PUT", "/fds", b"").await.0, 200);
    assert_eq!(call(&mut keep, "PUT", "/fds/object", b"still here").await.0, 200);
    assert_eq!(
        call(&mut keep, "GET", "/fds/object", b"").await,
        (200, "still here".into())
    );

    // Idle connections until the store can accept no more (the kernel still completes the
    // handshakes, so connecting goes on succeeding).
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (status, body) = call(&mut keep, "GET", "/fds/object", b"").await;
    assert!(
        status == 503 && body.contains("<Code>SlowDown</Code>")
            || status == 500 && body.contains("<Code>InternalError</Code>"),
        "GET of an existing object with no descriptor left: {status} {body}"
    );
    // HEAD needs no object file (the metadata's reader is already open): the object is there.
    let (status, body) = call(&mut keep, "HEAD", "/fds/object", b"").await;
    assert!(
        status == 200 || status >= 500,
        "HEAD with no descriptor left: {status} {body}"
    );

    // Descriptors back: the same object, the same bytes.
    drop(idle);
    let mut answer = (0, String::new());
    for _ in 0..50 {
        answer = call(&mut keep, "GET", "/fds/object", b"").await;
        if answer.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer, (200, "still here".into()), "after the descriptors came back");
    child.kill().unwrap();
    let _ = child.wait();
}
