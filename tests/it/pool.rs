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
