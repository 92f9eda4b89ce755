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
