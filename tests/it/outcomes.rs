//! What the event log, the metrics and the report say a request got: what the client really
//! got, recorded when the request ends (its body done, cut or dropped), not when the head left.

use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncReadExt;

use crate::harness::{Harness, random_bytes, send_raw_get};

async fn put(h: &Harness, key: &str, len: usize) {
    let d = h.direct();
    let _ = d.create_bucket().bucket("bkt").send().await;
    d.put_object()
        .bucket("bkt")
        .key(key)
        .body(ByteStream::from(random_bytes(len, 1)))
        .send()
        .await
        .unwrap();
}

/// The example: a GET cut after 1,000 of 100,000 bytes was logged as a 200 with
/// `"bytes":100000`. Now the line says what went out, and the report counts it as a failure.
#[tokio::test]
async fn a_cut_body_is_logged_with_the_bytes_that_went_out() {
    let h = Harness::start_logged(
        "name: cut\nrules:\n  - {name: cut, match: {operation: GetObject}, fault: {truncate: {after_bytes: 1000}}}\n",
    )
    .await;
    put(&h, "k", 100_000).await;
    let mut s = send_raw_get(&h, "bkt", "k").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(got.len() - head_end, 1000, "the client got 1,000 bytes");

    let events = h.events(1).await;
    let e = &events[0];
    assert_eq!((e.operation.as_str(), e.status), ("GetObject", Some(200)));
    assert_eq!(e.bytes, Some(1000), "bytes is what went out: {e:?}");
    assert_eq!(e.promised_bytes, Some(100_000));
    assert_eq!(e.outcome.as_deref(), Some("cut"));
    assert_eq!(e.rule.as_deref(), Some("cut"));

    let report = s3chaos::report::load(&h.events_path()).unwrap();
    assert_eq!(report.errors, 1, "the report counts the cut body as a failure");
    let metrics = s3chaos::telemetry::prometheus::render(&s3chaos::telemetry::prometheus::Snapshot {
        totals: &h.telemetry.totals(),
        engine: &h.engine,
        blackholed_connections: 0,
        upstream_idle_connections: 0,
        events_dropped: 0,
    });
    assert!(
        metrics.contains("s3chaos_request_outcomes_total{outcome=\"cut\"} 1"),
        "{metrics}"
    );
}

/// A client that gives up during a latency fault was never logged or counted.
#[tokio::test]
async fn a_client_that_leaves_during_a_delay_is_logged() {
    let h = Harness::start_logged(
        "name: slow\nrules:\n  - {name: slow, match: {operation: HeadObject}, fault: {latency: 5s}}\n",
    )
    .await;
    put(&h, "k", 10).await;
    let c = h.single_attempt_client(Some(Duration::from_millis(300)));
    assert!(
        c.head_object().bucket("bkt").key("k").send().await.is_err(),
        "timed out"
    );
    let events = h.events(1).await;
    let e = &events[0];
    assert_eq!(e.outcome.as_deref(), Some("client_gone"), "{e:?}");
    assert_eq!((e.status, e.bytes), (None, None), "no response went out");
    assert!(
        e.duration_ms.unwrap() < 4000.0,
        "logged when the client left, not when the delay ended"
    );
    assert_eq!(e.rule.as_deref(), Some("slow"));
}

/// An HTTP/2 stream held by a blackhole is logged once the client gives up on it; a reset
/// stream right away. Complete answers on the same connection are logged as complete.
#[tokio::test]
async fn h2_blackholed_and_reset_streams_are_logged() {
    let h = Harness::start_logged(
        "name: h2\nrules:\n  - {name: hole, match: {key: hole}, fault: blackhole}\n  - {name: rst, match: {key: rst}, fault: reset}\n",
    )
    .await;
    put(&h, "ok", 10).await;
    let addr = h.proxy;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let get = |key: &'static str| {
        let mut sender = sender.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/bkt/{key}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.send_request(req).await
        }
    };
    let hole = tokio::time::timeout(Duration::from_millis(300), get("hole")).await;
    assert!(hole.is_err(), "the blackholed stream never answers");
    assert!(get("rst").await.is_err());
    let answer = get("ok").await.unwrap();
    assert_eq!(answer.status(), 403, "unsigned: the store refuses, and answers");
    let answer_body = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap();
    drop(answer_body);

    let events = h.events(3).await;
    let by_key = |k: &str| {
        events
            .iter()
            .find(|e| e.key == k)
            .unwrap_or_else(|| panic!("{k}: {events:?}"))
    };
    assert_eq!(by_key("hole").outcome.as_deref(), Some("no_response"));
    assert_eq!(by_key("hole").status, None);
    assert_eq!(by_key("rst").outcome.as_deref(), Some("no_response"));
    assert_eq!(by_key("ok").outcome.as_deref(), Some("complete"));
    assert_eq!(by_key("ok").status, Some(403));
}

/// A client that closes as soon as it has every promised byte (an SDK dropping a body it
/// read to its length) got the whole answer: complete, not "client gone".
#[tokio::test]
async fn a_client_that_closes_after_the_last_byte_got_it_all() {
    let h = Harness::start_logged("name: none\n").await;
    put(&h, "k", 200_000).await;
    let mut s = send_raw_get(&h, "bkt", "k").await;
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    loop {
        let n = s.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let head_end = got.windows(4).position(|w| w == b"\r\n\r\n");
        if n == 0 || head_end.is_some_and(|e| got.len() - (e + 4) >= 200_000) {
            break;
        }
    }
    drop(s);
    let events = h.events(1).await;
    assert_eq!(events[0].outcome.as_deref(), Some("complete"), "{:?}", events[0]);
    assert_eq!(events[0].bytes, Some(200_000));
}
