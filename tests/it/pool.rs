//! Upstream connections are kept alive and reused, and a connection the upstream closed is
//! never a failed request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::harness::{raw, start_proxy};

/// A plain HTTP upstream that counts the connections it accepts; with `close` it ends every
/// connection after one response.
async fn counting_upstream(close: bool) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |_req| async move {
                    let mut resp = http::Response::new(Full::new(Bytes::from_static(b"ok")));
                    if close {
                        resp.headers_mut()
                            .insert(http::header::CONNECTION, "close".parse().unwrap());
                    }
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    (addr, accepted, task)
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (up, accepted, task) = counting_upstream(false).await;
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{up}"), &Default::default()).unwrap();
    let (addr, _engine, handle) = start_proxy(upstream, "name: none\n").await;
    // One client, sequential requests: each proxy worker needs one upstream connection at most.
    for i in 0..50 {
        let r = raw("GET", &format!("http://{addr}/bkt/k{i}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"ok");
    }
    let used = accepted.load(Ordering::SeqCst);
    assert!(used <= 2, "50 requests opened {used} upstream connections");
    drop(handle);
    task.abort();
}

#[tokio::test]
async fn connections_closed_by_the_upstream_are_not_reused() {
    let (up, accepted, task) = counting_upstream(true).await;
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{up}"), &Default::default()).unwrap();
    let (addr, _engine, handle) = start_proxy(upstream, "name: none\n").await;
    for i in 0..20 {
        let r = raw("GET", &format!("http://{addr}/bkt/k{i}")).await;
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        20,
        "one upstream connection per request"
    );
    drop(handle);
    task.abort();
}

/// A client that leaves in the middle of a stalled download must not leave the proxy holding
/// its task and the upstream connection: the upstream sees its connection closed.
#[tokio::test]
async fn leaving_a_stalled_download_releases_the_upstream_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let closed_count = closed.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let closed = closed_count.clone();
            tokio::spawn(async move {
                let service = service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(vec![7u8; 1 << 20]))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
                closed.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{up}"), &Default::default()).unwrap();
    let scenario = "name: hang\nrules:\n  - {fault: {stall: {after_bytes: 1000, for: forever}}}\n";
    let (addr, _engine, handle) = start_proxy(upstream, scenario).await;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /bkt/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(n > 0);
    drop(s);

    let mut released = false;
    for _ in 0..100 {
        if closed.load(Ordering::SeqCst) >= 1 {
            released = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(released, "the upstream connection stayed open after the client left");
    drop(handle);
    task.abort();
}

/// The upstream timeout counts from the end of the request body: an upload that takes
/// longer than the timeout to send (a big object, a slow link) is not cut, while an upstream
/// that then takes too long to answer still is (tests/reliability covers that one).
#[tokio::test]
async fn the_upstream_timeout_counts_from_the_end_of_the_upload() {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Reads the body at 32 MiB/s, then answers at once.
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let started = std::time::Instant::now();
                    let mut body = req.into_body();
                    let mut read = 0usize;
                    while let Some(frame) = body.frame().await {
                        read += frame.map(|f| f.data_ref().map_or(0, |d| d.len())).unwrap_or(0);
                        let due = std::time::Duration::from_secs_f64(read as f64 / (32 << 20) as f64);
                        tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
                    }
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(read.to_string()))))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    let options = s3chaos::proxy::UpstreamOptions {
        // Longer than what the sockets' buffers hold takes to read (a few MiB at 32 MiB/s),
        // shorter than the whole upload.
        response_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{up}"), &options).unwrap();
    let (addr, _engine, handle) = start_proxy(upstream, "name: none\n").await;

    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let started = std::time::Instant::now();
    let req = http::Request::put(format!("http://{addr}/bkt/upload"))
        .body(Full::new(Bytes::from(vec![1u8; 96 << 20])))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(&body[..], (96usize << 20).to_string().as_bytes());
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "the upload was quick ({:?}), so this proved nothing about the timeout",
        started.elapsed()
    );
    drop(handle);
    task.abort();
}
