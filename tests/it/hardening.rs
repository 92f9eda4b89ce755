//! Holes a hostile client finds (issue "Hardening"), each as the attack it was.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, presigned_put};

/// Sends `head` as is on a new connection; the whole answer (the proxy closes after it).
async fn send(h: &Harness, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// An injected error answers an upload before its body is read (with `Expect: 100-continue`
/// the client has not even sent it). The answer must say `Connection: close` (RFC 9110
/// §10.1.1, RFC 9112 §9.6): without it boto3 put the connection back in its pool, sent its
/// next request on it as the proxy closed it, and lost that request (found by `explore`:
/// a HEAD after a failed PUT arrived as `attempt=2`).
#[tokio::test]
async fn an_error_before_the_upload_is_read_closes_the_connection_and_says_so() {
    let h =
        Harness::start("name: e\nrules:\n  - {match: {operation: PutObject}, fault: {error: InternalError}}\n").await;
    let answer = send(
        &h,
        "PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    assert!(
        !answer.contains("100 Continue"),
        "the body was never asked for: {answer}"
    );
    assert!(
        answer.to_ascii_lowercase().contains("\r\nconnection: close\r\n"),
        "{answer}"
    );
    // A GET (no body) keeps its connection for the next request.
    let h = Harness::start("name: e\nrules:\n  - {match: {operation: GetObject}, fault: {error: SlowDown}}\n").await;
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let get = "GET /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    s.write_all(get.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
    assert!(
        first.starts_with("http/1.1 503") && !first.contains("connection: close"),
        "{first}"
    );
}

/// Two `Host` headers: the classifier reads the first, an upstream taking the last would see
/// another bucket. RFC 9112 §3.2: 400, never forwarded. The PUT is validly presigned for
/// the first host, so had it been forwarded the object would exist.
#[tokio::test]
async fn two_host_headers_or_none_are_refused_not_forwarded() {
    let h = Harness::start("name: none\nrules: []").await;
    let c = h.client();
    c.create_bucket().bucket("hosts").send().await.unwrap();
    let presigned = c
        .put_object()
        .bucket("hosts")
        .key("smuggled")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let path = uri.path_and_query().unwrap();
    let host = uri.authority().unwrap();

    let answer = send(
        &h,
        &format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nHost: other.example\r\nContent-Length: 2\r\n\r\nhi"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidRequest</Code>"), "{answer}");
    assert!(answer.contains("more than one Host"), "{answer}");
    let err = c
        .head_object()
        .bucket("hosts")
        .key("smuggled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(404),
        "it was forwarded"
    );

    let answer = send(&h, &format!("GET {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("no Host header"), "{answer}");

    // HTTP/1.0 has no Host requirement: that request still goes through (to the store,
    // which refuses the unsigned request in its own words).
    let answer = send(&h, "GET /hosts HTTP/1.0\r\n\r\n").await;
    assert!(!answer.contains("Host header"), "{answer}");
    // The proper request still works.
    c.put_object().bucket("hosts").key("fine").send().await.unwrap();
}

/// The same over h2: two `host` fields, or a `host` naming another authority than the
/// request's `:authority` (RFC 9113 §8.3.1: malformed), get the 400 on their stream and
/// nothing reaches the upstream; the connection's other streams go on.
#[tokio::test]
async fn h2_requests_with_two_hosts_or_a_host_unlike_their_authority_are_refused() {
    let h = Harness::start("name: none\nrules: []").await;
    let c = h.client();
    c.create_bucket().bucket("hosts2").send().await.unwrap();
    let (target, host) = presigned_put(&h, "hosts2", "smuggled").await;
    let url = format!("http://{host}{target}");
    let tcp = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let put = |hosts: &[&str]| {
        let mut sender = sender.clone();
        let mut req = http::Request::put(url.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::from_static(b"hi")))
            .unwrap();
        for host in hosts {
            req.headers_mut().append(http::header::HOST, host.parse().unwrap());
        }
        async move {
            let answer = sender.send_request(req).await.expect("answered on its stream");
            let status = answer.status();
            let body = http_body_util::BodyExt::collect(answer.into_body())
                .await
                .unwrap()
                .to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let (status, body) = put(&[&host, "other.example"]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("<Code>InvalidRequest</Code>") && body.contains("more than one Host"),
        "{body}"
    );
    let (status, body) = put(&["other.example"]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(":authority"), "{body}");
    let err = c
        .head_object()
        .bucket("hosts2")
        .key("smuggled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(404),
        "it was forwarded"
    );
    // The same connection, the same presigned PUT with a `host` matching its authority
    // (or none, `:authority` alone): stored.
    let (status, body) = put(&[&host]).await;
    assert_eq!(status, 200, "{body}");
    c.head_object().bucket("hosts2").key("smuggled").send().await.unwrap();
}

/// A PutObject with 120 `x-amz-meta-*` headers (about 1.5 KB of metadata, within S3's 2 KB)
/// was refused 431 by the proxy (hyper's default cap of 100 fields); its GET, which returns
/// them all, would fail the same way on the way back from the upstream.
#[tokio::test]
async fn an_upload_with_many_metadata_headers_goes_through_and_comes_back() {
    let h = Harness::start("name: none\nrules: []").await;
    let c = h.client();
    c.create_bucket().bucket("meta").send().await.unwrap();
    let mut put = c.put_object().bucket("meta").key("k").body(b"x".to_vec().into());
    for i in 0..120 {
        put = put.metadata(format!("m{i:03}"), format!("v{i}"));
    }
    put.send().await.expect("120 metadata headers are accepted");
    // Read back on the wire: the Rust SDK's own HTTP client stops at 100 header fields.
    let presigned = c
        .get_object()
        .bucket("meta")
        .key("k")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let answer = send(
        &h,
        &format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            uri.path_and_query().unwrap(),
            uri.authority().unwrap()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let meta = answer.lines().filter(|l| l.starts_with("x-amz-meta-")).count();
    assert_eq!(meta, 120, "{answer}");
    assert!(answer.contains("x-amz-meta-m119: v119"), "{answer}");
}

/// One request (raw) to `addr`, the whole answer.
async fn send_to(addr: std::net::SocketAddr, head: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Forward mode was a door into the tokenless admin API: through `HTTPS_PROXY` a client
/// could `GET http://127.0.0.1:ADMIN/status`, `POST http://localhost:ADMIN/halt`, or
/// `CONNECT 127.0.0.1:ADMIN` and `POST /resume` inside. Now every one is 403 and the drill
/// is not halted; other loopback targets and the cloud metadata address are refused unless
/// `--allow-target` names them.
#[tokio::test]
async fn forward_mode_does_not_reach_the_admin_api_or_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let other = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allow = format!("localhost:{}", allowed.local_addr().unwrap().port());
    let mut running = crate::cli::Running::in_dir(
        &dir,
        Some("name: fwd\nrules: []\n"),
        &[
            "--mode",
            "forward",
            "--tls-ca-out",
            ca.to_str().unwrap(),
            "--allow-target",
            &allow,
        ],
    );
    let (proxy, admin) = (running.addr, running.admin);
    let halted = || async move {
        let status = send_to(admin, "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        status.contains("\"halted\":true") || status.contains("\"halted\": true")
    };
    assert!(!halted().await);

    let port = admin.port();
    for attack in [
        format!("GET http://127.0.0.1:{port}/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"),
        format!(
            "POST http://localhost:{port}/halt HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "POST http://[::ffff:127.0.0.1]:{port}/halt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\nPOST /halt HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
        format!(
            "CONNECT localhost:{} HTTP/1.1\r\nHost: x\r\n\r\n",
            other.local_addr().unwrap().port()
        ),
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n"
            .to_owned(),
    ] {
        let answer = send_to(proxy, &attack).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{attack}\n=> {answer}");
        assert!(answer.contains("will not connect"), "{answer}");
        assert!(!answer.contains("halted"), "{answer}");
    }
    assert!(!halted().await, "the drill was halted through the proxy");

    // What --allow-target names is tunnelled.
    let mut tunnel = tokio::net::TcpStream::connect(proxy).await.unwrap();
    tunnel
        .write_all(format!("CONNECT {allow} HTTP/1.1\r\nHost: {allow}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), tunnel.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    assert!(
        tokio::time::timeout(Duration::from_secs(5), allowed.accept())
            .await
            .is_ok(),
        "the allowed target was connected to"
    );
    running.wait_for("will not connect");
}

fn body_timeout(timeout: Duration) -> s3chaos::proxy::ServeOptions {
    s3chaos::proxy::ServeOptions {
        body_read_timeout: Some(timeout),
        ..Default::default()
    }
}

/// An upload whose body trickles (5 bytes a second, far under the 500 B/s floor) was held as
/// long as its client liked; S3 answers such an upload `400 RequestTimeout`. With
/// `--body-read-timeout 1s` it is answered within about a second, and nothing is stored.
#[tokio::test]
async fn a_trickling_upload_is_answered_request_timeout() {
    let h = Harness::start_serving("name: none\nrules: []", body_timeout(Duration::from_secs(1))).await;
    h.client().create_bucket().bucket("slow").send().await.unwrap();
    let (path, host) = presigned_put(&h, "slow", "trickle").await;
    let s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let (mut read, mut write) = s.into_split();
    write
        .write_all(format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            if write.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read_answer = async {
        while let Ok(n) = read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(8).any(|w| w == b"</Error>") {
                break;
            }
        }
    };
    let answered = tokio::time::timeout(Duration::from_secs(6), read_answer).await.is_ok();
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answered, "no answer in 6 s to a trickling upload: {answer}");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>RequestTimeout</Code>"), "{answer}");
    let head = h.client().head_object().bucket("slow").key("trickle").send().await;
    assert!(head.is_err(), "the cut upload was stored");
    // A steady upload through the same proxy is not cut.
    h.client()
        .put_object()
        .bucket("slow")
        .key("steady")
        .body(vec![7u8; 1 << 20].into())
        .send()
        .await
        .unwrap();
}

/// A chunk size that overflows 64 bits was answered `503 ServiceUnavailable`, as if the
/// upstream were down (and counted against it); it is the client's framing: `400`.
#[tokio::test]
async fn a_chunk_size_that_overflows_is_the_clients_400_not_a_503() {
    let h = Harness::start("name: none\nrules: []").await;
    h.client().create_bucket().bucket("chunks").send().await.unwrap();
    let (path, host) = presigned_put(&h, "chunks", "k").await;
    let answer = send(
        &h,
        &format!(
            "PUT {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nfffffffffffffffffffff\r\nxyz\r\n0\r\n\r\n"
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>InvalidRequest</Code>"), "{answer}");
    assert!(answer.contains("chunked"), "{answer}");
    assert_eq!(
        h.telemetry.totals().upstream_unavailable,
        0,
        "counted as the upstream's failure"
    );
}

/// `stop_if` halted a drill ("the upstream itself failed 4 of 4 requests") when six clients
/// closed their connections after 1 KB of a 100 KB upload, the upstream healthy throughout.
/// Only what the upstream answered, or failed to answer once it had the whole request,
/// counts.
#[tokio::test]
async fn clients_abandoning_their_uploads_do_not_trip_stop_if() {
    let h = Harness::start(
        "name: guarded\nstop_if: {upstream_error_rate: 0.5, window: 5s, min_requests: 3}\nrules:\n  - {name: other, match: {bucket: elsewhere}, fault: {error: SlowDown}}\n",
    )
    .await;
    h.client().create_bucket().bucket("abandon").send().await.unwrap();
    for i in 0..6 {
        let (path, host) = presigned_put(&h, "abandon", &format!("k{i}")).await;
        let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
        s.write_all(format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n").as_bytes())
            .await
            .unwrap();
        s.write_all(&[b'x'; 1024]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
    }
    // Let the proxy see every close, and the supervisor look (it ticks every 100 ms or so).
    tokio::time::sleep(Duration::from_millis(800)).await;
    let tally = h.engine.upstream_tally();
    assert_eq!(
        tally.failures, 0,
        "abandoned uploads counted as upstream failures: {tally:?}"
    );
    assert_eq!(h.engine.halted(), None, "the drill was halted by clients that left");
    // The upstream's own answers still count: the guard is watching.
    h.client()
        .put_object()
        .bucket("abandon")
        .key("fine")
        .send()
        .await
        .unwrap();
    assert!(h.engine.upstream_tally().requests > tally.requests);
}

/// An idle h2c connection was never closed (`--header-read-timeout` closes an idle HTTP/1.1
/// keep-alive connection, but hyper's h2 server has no idle timeout). Now a connection with
/// no stream open for that long is sent GOAWAY and closed; one whose stream is slow is not.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_by_the_header_read_timeout() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let serve = s3chaos::proxy::ServeOptions {
        header_read_timeout: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let h = Harness::start_serving(
        "name: slow\nrules:\n  - {name: slow, match: {key: slow}, fault: {latency: 2500ms}}\n",
        serve,
    )
    .await;
    let addr = h.proxy;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // A stream that takes longer than the timeout keeps the connection: it is not idle.
    let req = http::Request::get(format!("http://{addr}/bkt/slow"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = sender.send_request(req).await.expect("a slow stream is not cut");
    assert_eq!(
        answer.status(),
        403,
        "unsigned: the store's own answer, after the delay"
    );
    let _ = http_body_util::BodyExt::collect(answer.into_body()).await.unwrap();
    // Then nothing: the server closes the connection about a second later.
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle h2 connection is still open after 5 s");
}

/// A client that sends its whole request and then half-closes (`shutdown(SHUT_WR)`, as some
/// HTTP tools and `nc -N` do) got no answer: the proxy took the FIN for the client leaving.
/// HTTP/1.1 allows it; the answer is sent, then the connection closed. (During a fault's
/// silence the FIN still means the client left: the next test.)
#[tokio::test]
async fn a_client_that_half_closes_after_its_request_gets_the_answer() {
    let h = Harness::start("name: none\nrules: []").await;
    let answer = String::from_utf8(half_closed_get(&h, "half", b"the object").await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(answer.ends_with("the object"), "{answer:?}");
}

/// A throttled answer is sent in many writes over time, not a silence: a half-closing client
/// gets all of it. The admin API answers a half-closed request too.
#[tokio::test]
async fn a_half_closing_client_gets_a_throttled_answer_whole_and_the_admin_api_answers_it() {
    let scenario =
        "name: slow\nrules:\n  - {name: slow, match: {operation: GetObject}, fault: {bandwidth: 200KiB/s}}\n";
    let h = Harness::start(scenario).await;
    let object: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    let answer = half_closed_get(&h, "throttled", &object).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    );
    assert!(
        answer.ends_with(&object),
        "the whole throttled body arrived ({} bytes)",
        answer.len()
    );

    let (admin, _control) = h.admin(scenario, None).await;
    let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: admin\r\n\r\n")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        read.is_ok(),
        "the admin connection was not closed after the answer: {out}"
    );
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
}

/// During a fault's silence the same FIN means the client gave up (an SDK's attempt
/// timeout): the request ends at once as `client_gone`, and the connection is closed
/// without an answer. (A stall holds the body; without this the socket stayed open.)
#[tokio::test]
async fn a_fin_during_a_stall_is_the_client_leaving() {
    let h = Harness::start_logged(
        "name: stall\nrules:\n  - {name: hang, match: {operation: GetObject}, fault: {stall: {after_bytes: 100, for: forever}}}\n",
    )
    .await;
    let object = vec![7u8; 10_000];
    let started = std::time::Instant::now();
    let answer = half_closed_get(&h, "stalled", &object).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "the head and 100 bytes went out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "closed at the FIN, not held"
    );
    let events = h.events(1).await;
    let get = events
        .iter()
        .find(|e| e.operation == "GetObject")
        .expect("the GET was logged");
    assert_eq!(get.outcome.as_deref(), Some("client_gone"), "{get:?}");
    assert_eq!(get.bytes, Some(100), "{get:?}");
}

/// PUTs `object` as `bucket/k` (directly to the upstream, with the SDK), then sends a
/// presigned GET for it through the proxy and half-closes; the whole answer, or what came
/// within 5 s.
async fn half_closed_get(h: &Harness, bucket: &str, object: &[u8]) -> Vec<u8> {
    let d = h.direct();
    d.create_bucket().bucket(bucket).send().await.unwrap();
    d.put_object()
        .bucket(bucket)
        .key("k")
        .body(object.to_vec().into())
        .send()
        .await
        .unwrap();
    let presigned = h
        .client()
        .get_object()
        .bucket(bucket)
        .key("k")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    s.write_all(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            uri.path_and_query().unwrap(),
            uri.authority().unwrap()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the connection was not closed after the answer: {:?}",
        String::from_utf8_lossy(&out)
    );
    out
}

/// The admin listener never timed out a connection: ones that sent nothing, half a head, or a
/// head whose body never came stayed open for ever, and 300 of them under `ulimit -n 256`
/// took every descriptor from the S3 traffic. Now they get the proxy's header and body
/// timeouts, and at most 64 are served at once (more are closed at once).
#[tokio::test]
async fn the_admin_api_times_out_and_caps_its_connections() {
    let dir = tempfile::tempdir().unwrap();
    let running = crate::cli::Running::in_dir(
        &dir,
        Some("name: none\nrules: []\n"),
        &["--header-read-timeout", "1s", "--body-read-timeout", "1s"],
    );
    let admin = running.admin;
    let before = running.descriptors();
    let mut held = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(admin).await.unwrap();
        s.write_all(b"GET /sta").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let during = running.descriptors();
    assert!(
        during <= before + s3chaos::admin::MAX_CONNECTIONS + 4,
        "{during} descriptors with 100 half-open admin connections (was {before})"
    );
    // Every one is closed by the server: the 36 over the cap at once, the rest by the timeout.
    for mut s in held {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(4), s.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "an admin connection with half a head is still open: {closed:?}"
        );
    }
    // A body that never comes: 408.
    let answer = send_to(
        admin,
        "PUT /scenario HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nname: half",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // And the API serves again.
    let status = send_to(admin, "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        running.descriptors() <= before + 2,
        "descriptors left: {} (was {before})",
        running.descriptors()
    );
}

fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status().unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

/// A FIFO swapped in at the watched scenario path blocked the reloader (opening it waits for
/// a writer), and SIGTERM then no longer stopped the process; a FIFO given at start hung the
/// start. A 2 GB sparse file swapped in must be refused without being read. Now anything but
/// a regular file is refused before a read, the last good scenario keeps running, and SIGTERM
/// stops the process within its grace.
#[tokio::test]
async fn a_fifo_or_a_huge_scenario_file_is_refused_and_never_blocks_shutdown() {
    // At start: refused, with the reason, at once.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    mkfifo(&fifo);
    let mut child = std::process::Command::new(crate::cli::BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--admin", "off", "--scenario"])
        .arg(&fifo)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut exited = None;
    for _ in 0..100 {
        exited = child.try_wait().unwrap();
        if exited.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if exited.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        exited.is_some_and(|s| !s.success()),
        "a FIFO as the scenario hung the start"
    );
    assert!(stderr.contains("not a regular file (a FIFO)"), "{stderr}");

    // Swapped in under a running proxy: refused; so is a 2 GB file; then SIGTERM still works.
    let mut running = crate::cli::Running::in_dir(
        &dir,
        Some("name: good\nrules: []\n"),
        &["--reload-poll", "100ms", "--shutdown-grace", "2s"],
    );
    let scenario = dir.path().join("scenario.yaml");
    let huge = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(2 << 30).unwrap();
    drop(file);
    std::fs::rename(&huge, &scenario).unwrap();
    running.wait_for("larger than the limit");
    let rss = running.rss_kib();
    assert!(rss < 200 * 1024, "RSS {rss} KiB after refusing a 2 GB scenario");
    let swapped = dir.path().join("swapped.yaml");
    mkfifo(&swapped);
    std::fs::rename(&swapped, &scenario).unwrap();
    running.wait_for("not a regular file (a FIFO)");
    let status = send_to(
        running.admin,
        "GET /status HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        status.contains("\"good\""),
        "the last good scenario keeps running: {status}"
    );
    assert!(
        running.stop_within(Duration::from_secs(8)),
        "SIGTERM did not stop the process within 8 s"
    );
}

/// `rules` rules, each naming the same anchored list of `ops` operations.
fn alias_scenario(rules: usize, ops: usize) -> String {
    let list = vec!["GetObject"; ops].join(", ");
    let mut text = format!(
        "name: aliases\nrules:\n  - {{name: r0, match: {{bucket: none, operation: &o [{list}]}}, fault: reset}}\n"
    );
    for i in 1..rules {
        text.push_str(&format!(
            "  - {{name: r{i}, match: {{bucket: none, operation: *o}}, fault: reset}}\n"
        ));
    }
    text
}

/// Issue 17, item 5. Before: the 9,000 x 5,000 scenario was accepted after 8 s, and a 100 KB
/// key glob named by 10,000 rules took the process to 1 GB; both are now refused at the
/// value where the expansion passed its bound, and the running scenario is untouched.
#[tokio::test]
async fn a_scenario_that_expands_through_aliases_is_refused_at_its_bound() {
    let h = Harness::start("name: running\nrules:\n  - {name: keep, match: {bucket: x}, fault: reset}\n").await;
    let (admin, _control) = h
        .admin(
            "name: running\nrules:\n  - {name: keep, match: {bucket: x}, fault: reset}\n",
            None,
        )
        .await;

    let operations = alias_scenario(9_000, 5_000);
    assert!(
        operations.len() < s3chaos::scenario::MAX_SCENARIO_BYTES,
        "small as text"
    );
    let (status, body) = crate::admin::call(admin, "PUT", "/scenario", &operations, None).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("expands to more than"), "{message}");
    assert!(message.contains("rules["), "names where: {message}");

    let long = "k".repeat(100_000);
    let mut keys = format!("name: keys\nrules:\n  - {{name: r0, match: {{key: &k '{long}'}}, fault: reset}}\n");
    for i in 1..6_000 {
        keys.push_str(&format!("  - {{name: r{i}, match: {{key: *k}}, fault: reset}}\n"));
    }
    let (status, body) = crate::admin::call(admin, "PUT", "/scenario", &keys, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("MiB of text"),
        "{body}"
    );

    let (status, body) = crate::admin::call(
        admin,
        "POST",
        "/rules",
        &format!("{{match: {{key: &k '{long}', bucket: *k}}, fault: reset}}"),
        None,
    )
    .await;
    assert_eq!(status, 201, "one rule naming its key twice is fine: {body}");
    assert_eq!(
        h.engine.scenario().name(),
        "running",
        "the running scenario is untouched"
    );

    // Aliases within the bound still work: 100 rules sharing a list of 50 operations.
    let (status, body) = crate::admin::call(admin, "PUT", "/scenario", &alias_scenario(100, 50), None).await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 17, item 5: a scenario change is parsed and compiled off the threads that serve.
/// The test runs on one thread (tokio's test runtime), as the admin API, the embedded store
/// and this client do here; before, the admin API parsed where it was called, so nothing else
/// on that thread was answered until the parse was done.
#[tokio::test]
async fn a_large_scenario_change_does_not_stop_other_requests() {
    let h = Harness::start("name: running\n").await;
    let (admin, _control) = h.admin("name: running\n", None).await;
    // Within the bound (600,000 values), so it is parsed to the end: long enough to see.
    let big = alias_scenario(600, 1_000);
    let put = tokio::spawn(async move {
        let answer = crate::admin::call(admin, "PUT", "/scenario", &big, None).await;
        (answer, std::time::Instant::now())
    });
    // Once the PUT's body is in, the parse starts; ask for /healthz while it runs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (status, _) = crate::admin::call(admin, "GET", "/healthz", "", None).await;
    let healthz_done = std::time::Instant::now();
    assert_eq!(status, 200);
    let ((status, body), put_done) = put.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        healthz_done < put_done,
        "/healthz was answered only after the scenario change finished"
    );
}
