//! Holes a hostile client finds (issue "Hardening"), each as the attack it was.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::Harness;

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
