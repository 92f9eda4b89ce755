//! Each fault kind as the SDK and the wire see it.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, client_for, random_bytes, raw, seed_object};

const SLOWDOWN: &str = r#"
name: throttle
rules:
  - name: throttle-hot
    match: {operation: [GetObject, HeadObject], bucket: photos, key: "hot/*"}
    fault: {error: SlowDown}
"#;

#[tokio::test]
async fn slowdown_reaches_the_sdk_as_slowdown_and_is_retried() {
    let h = Harness::start(SLOWDOWN).await;
    seed_object(&h, "photos", "hot/a.jpg", 1000).await;
    seed_object(&h, "photos", "cold/a.jpg", 1000).await;
    let c = h.client();

    let err = c
        .get_object()
        .bucket("photos")
        .key("hot/a.jpg")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"));
    assert_eq!(err.message(), Some("Please reduce your request rate."));
    let raw_resp = err.raw_response().expect("an HTTP response");
    assert_eq!(raw_resp.status().as_u16(), 503);
    let request_id = raw_resp.headers().get("x-amz-request-id").expect("x-amz-request-id");
    assert_eq!(request_id.len(), 16);
    // Standard retry mode: 3 attempts, all seen and faulted by the proxy.
    let stats = h.stats("throttle-hot");
    assert_eq!((stats.matched, stats.injected), (3, 3));

    // Other keys pass.
    c.get_object().bucket("photos").key("cold/a.jpg").send().await.unwrap();
    assert_eq!(h.stats("throttle-hot").matched, 3);
}

#[tokio::test]
async fn injected_error_is_s3_shaped_on_the_wire() {
    let h = Harness::start(SLOWDOWN).await;
    let get = raw("GET", &h.url("/photos/hot/x%20y.jpg")).await;
    assert_eq!(get.status, 503);
    assert_eq!(get.headers["content-type"], "application/xml");
    assert_eq!(get.headers["server"], "AmazonS3");
    assert!(get.headers.contains_key("x-amz-id-2"));
    assert!(get.headers.contains_key("date"));
    let body = String::from_utf8(get.body.to_vec()).unwrap();
    let id = get.headers["x-amz-request-id"].to_str().unwrap();
    assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"), "{body}");
    for part in [
        "<Code>SlowDown</Code>".to_owned(),
        "<Message>Please reduce your request rate.</Message>".to_owned(),
        "<Resource>/photos/hot/x%20y.jpg</Resource>".to_owned(),
        format!("<RequestId>{id}</RequestId>"),
    ] {
        assert!(body.contains(&part), "missing {part} in {body}");
    }

    let head = raw("HEAD", &h.url("/photos/hot/x.jpg")).await;
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty(), "HEAD errors have no body");
    assert!(head.headers.contains_key("x-amz-request-id"));
}

#[tokio::test]
async fn custom_error_with_retry_after() {
    let h = Harness::start(
        "name: e\nrules:\n  - fault: {error: {status: 500, code: InternalError, message: boom, retry_after: 1500ms}}\n",
    )
    .await;
    let r = raw("GET", &h.url("/bkt/k")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.headers["retry-after"], "2");
    assert_eq!(r.headers["x-amz-retry-after"], "1500");
    assert!(String::from_utf8_lossy(&r.body).contains("<Message>boom</Message>"));
}

#[tokio::test]
async fn fail_twice_then_succeed_with_limit() {
    let h = Harness::start(
        "name: twice\nrules:\n  - name: two-500s\n    match: {operation: PutObject}\n    limit: 2\n    fault: {error: InternalError}\n",
    )
    .await;
    let c = h.client();
    c.create_bucket().bucket("bkt").send().await.unwrap();
    c.put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap();
    let stats = h.stats("two-500s");
    assert_eq!(
        (stats.matched, stats.injected),
        (3, 2),
        "two failures, then the third attempt passed"
    );
    // The limit is spent: later requests pass at the first attempt.
    c.put_object()
        .bucket("bkt")
        .key("k2")
        .body(ByteStream::from_static(b"data"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.stats("two-500s").matched, 4);
}

#[tokio::test]
async fn skip_lets_the_first_requests_through() {
    let h = Harness::start("name: s\nrules:\n  - name: later\n    skip: 2\n    match: {operation: HeadBucket}\n    fault: {error: AccessDenied}\n").await;
    let c = h.single_attempt_client(None);
    c.create_bucket().bucket("bkt").send().await.unwrap();
    assert!(c.head_bucket().bucket("bkt").send().await.is_ok());
    assert!(c.head_bucket().bucket("bkt").send().await.is_ok());
    let err = c.head_bucket().bucket("bkt").send().await.unwrap_err();
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 403);
}

#[tokio::test]
async fn latency_shows_in_measured_time() {
    let h =
        Harness::start("name: slow\nrules:\n  - match: {operation: HeadObject}\n    fault: {latency: 300ms}\n").await;
    seed_object(&h, "bkt", "k", 10).await;
    let c = h.client();
    let start = Instant::now();
    c.head_object().bucket("bkt").key("k").send().await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn latency_then_error_in_one_rule_adds_up() {
    let h = Harness::start(
        "name: both\nrules:\n  - {fault: {latency: 200ms}}\n  - {fault: {latency: 100ms, error: SlowDown}}\n",
    )
    .await;
    let start = Instant::now();
    let r = raw("GET", &h.url("/bkt/k")).await;
    assert_eq!(r.status, 503);
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "delays add up; took {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn blackhole_ends_in_the_clients_own_timeout() {
    let h = Harness::start("name: bh\nrules:\n  - match: {bucket: archive}\n    fault: blackhole\n").await;
    let c = h.single_attempt_client(Some(Duration::from_millis(600)));
    let start = Instant::now();
    let err = c.list_objects_v2().bucket("archive").send().await.unwrap_err();
    assert!(
        matches!(err, SdkError::TimeoutError(_)),
        "expected the client's timeout, got {err:?}"
    );
    assert!(start.elapsed() >= Duration::from_millis(600));
}

#[tokio::test]
async fn blackhole_holds_the_connection_until_the_client_leaves() {
    let h = Harness::start("name: bh\nrules:\n  - fault: blackhole\n").await;
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    s.write_all(b"GET /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    assert!(read.is_err(), "the blackhole answered or closed: {read:?}");
    assert_eq!(h.blackholed(), 1, "the proxy holds the connection");
    drop(s);
    // The held socket is released once the client is gone (bounded wait).
    let mut released = false;
    for _ in 0..100 {
        if h.blackholed() == 0 {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released,
        "blackholed connection was not released after the client closed"
    );
}

#[tokio::test]
async fn reset_is_a_connection_error() {
    let h =
        Harness::start("name: rst\nrules:\n  - name: rst\n    match: {operation: PutObject}\n    fault: reset\n").await;
    let c = h.client();
    c.create_bucket().bucket("bkt").send().await.unwrap();
    let err = c
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SdkError::DispatchFailure(_)),
        "expected a connection error, got {err:?}"
    );
    assert_eq!(h.stats("rst").matched, 3, "connection errors are retried");

    // On the wire: an RST, not a FIN.
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    s.write_all(b"PUT /bkt/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap();
    assert_eq!(read.map_err(|e| e.kind()), Err(std::io::ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn reset_mid_body_cuts_the_download() {
    let h = Harness::start(
        "name: rst\nrules:\n  - match: {operation: GetObject}\n    fault: {reset: {after_bytes: 64KiB}}\n",
    )
    .await;
    let body = seed_object(&h, "bkt", "big", 1024 * 1024).await;

    // A presigned URL, so the upstream (which checks signatures) serves the object.
    let presigned = h
        .client()
        .get_object()
        .bucket("bkt")
        .key("big")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
        uri.path_and_query().unwrap(),
        uri.authority().unwrap()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(end, Err(std::io::ErrorKind::ConnectionReset));
    let text_end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head arrived")
        + 4;
    let head = String::from_utf8_lossy(&got[..text_end]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    let received = &got[text_end..];
    assert_eq!(received.len(), 64 * 1024, "exactly after_bytes of body before the RST");
    assert!(received == &body[..received.len()]);

    // The SDK sees the download fail.
    let out = h.client().get_object().bucket("bkt").key("big").send().await.unwrap();
    assert!(out.body.collect().await.is_err());
}

#[tokio::test]
async fn seed_replays_the_same_faults() {
    let scenario = "name: coin\nseed: 7\nrules:\n  - match: {operation: HeadBucket}\n    probability: 0.5\n    fault: {error: InternalError}\n";
    let mut runs = Vec::new();
    for _ in 0..2 {
        let h = Harness::start(scenario).await;
        let c = h.single_attempt_client(None);
        c.create_bucket().bucket("bkt").send().await.unwrap();
        let mut outcomes = Vec::new();
        for _ in 0..40 {
            outcomes.push(c.head_bucket().bucket("bkt").send().await.is_ok());
        }
        runs.push(outcomes);
    }
    assert_eq!(runs[0], runs[1], "same seed, same request sequence, same faults");
    let failures = runs[0].iter().filter(|ok| !**ok).count();
    assert!(
        (8..=32).contains(&failures),
        "probability 0.5 over 40 requests gave {failures} failures"
    );
}

#[tokio::test]
async fn unreachable_upstream_is_503_service_unavailable_and_proxy_keeps_serving() {
    // Bind and drop a listener to get a port nothing listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{dead}"), &Default::default()).unwrap();
    let (addr, _engine, task) = crate::harness::start_proxy(upstream, "name: none\n").await;
    let c = client_for(addr, |b| crate::harness::single_attempt(b, None));
    for _ in 0..3 {
        let err = c.list_buckets().send().await.unwrap_err();
        assert_eq!(err.code(), Some("ServiceUnavailable"));
        assert_eq!(err.raw_response().unwrap().status().as_u16(), 503);
    }
    let head = raw("HEAD", &format!("http://{addr}/b/k")).await;
    assert_eq!(head.status, 503);
    assert!(head.body.is_empty());
    drop(task);
}

#[tokio::test]
async fn hanging_upstream_times_out_as_503() {
    // An upstream that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung = listener.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let options = s3chaos::proxy::UpstreamOptions {
        response_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let upstream = s3chaos::proxy::Upstream::new(&format!("http://{hung}"), &options).unwrap();
    let (addr, _engine, handle) = crate::harness::start_proxy(upstream, "name: none\n").await;
    let start = Instant::now();
    let r = raw("GET", &format!("http://{addr}/bkt/k")).await;
    assert_eq!(r.status, 503);
    assert!(String::from_utf8_lossy(&r.body).contains("<Code>ServiceUnavailable</Code>"));
    assert!(start.elapsed() >= Duration::from_millis(300));
    drop(handle);
    holder.abort();
}

#[tokio::test]
async fn rate_limit_throttles_a_hot_prefix_with_slowdown() {
    let h = Harness::start(
        "name: hot\nrules:\n  - name: s3-rate\n    match: {operation: HeadObject}\n    fault: {rate_limit: {rps: 2, burst: 5, per: prefix}}\n",
    )
    .await;
    seed_object(&h, "bkt", "hot/a", 10).await;
    seed_object(&h, "bkt", "cold/a", 10).await;
    let c = h.single_attempt_client(None);
    let mut outcomes = Vec::new();
    let start = Instant::now();
    for _ in 0..20 {
        outcomes.push(
            c.head_object()
                .bucket("bkt")
                .key("hot/a")
                .send()
                .await
                .map_err(|e| e.raw_response().map(|r| r.status().as_u16())),
        );
    }
    // The burst passes, then the prefix is over its rate: HEAD errors have no body, so the
    // SDK sees the 503 status (as with S3's own SlowDown on HEAD).
    let elapsed = start.elapsed().as_secs_f64();
    assert!(outcomes[..5].iter().all(Result::is_ok), "{outcomes:?}");
    let passed = outcomes.iter().filter(|o| o.is_ok()).count();
    let throttled = outcomes.iter().filter(|o| *o == &Err(Some(503))).count();
    assert_eq!(
        passed + throttled,
        20,
        "every request either passed or got 503: {outcomes:?}"
    );
    // At most the burst plus what refilled meanwhile (2 per second) got through.
    let allowed = 5 + (2.0 * elapsed).ceil() as usize;
    assert!(
        passed <= allowed,
        "{passed} passed in {elapsed:.2} s, at most {allowed} allowed"
    );
    // Another prefix has its own budget.
    assert!(c.head_object().bucket("bkt").key("cold/a").send().await.is_ok());
    // Requests under the rate were let be: only the refused ones count as injected.
    let stats = h.stats("s3-rate");
    assert_eq!((stats.matched, stats.injected), (21, throttled as u64));
}

#[tokio::test]
async fn rate_limited_gets_surface_slowdown_after_sdk_retries() {
    let h = Harness::start("name: hot\nrules:\n  - match: {operation: GetObject}\n    fault: {rate_limit: {rps: 1, burst: 2, per: bucket}}\n")
        .await;
    seed_object(&h, "bkt", "k", 10).await;
    let c = h.client(); // standard retries: 3 attempts, short backoff
    let mut codes = Vec::new();
    for _ in 0..6 {
        if let Err(e) = c.get_object().bucket("bkt").key("k").send().await {
            codes.push(e.code().map(str::to_owned));
        }
    }
    assert!(!codes.is_empty(), "no request was throttled");
    assert!(codes.iter().all(|c| c.as_deref() == Some("SlowDown")), "{codes:?}");
}

/// `when: after_upstream`: the PUT is stored and the DELETE done, while the client is told it
/// failed — the ambiguous outcome that duplicates or loses data in apps assuming "error
/// means nothing happened".
#[tokio::test]
async fn ambiguous_outcomes_happen_upstream_while_the_client_sees_a_failure() {
    let h = Harness::start(
        r#"
name: ambiguous
rules:
  - {name: put-lies, match: {operation: PutObject}, fault: {error: {code: InternalError, when: after_upstream}}}
  - {name: delete-cut, match: {operation: DeleteObject}, fault: {reset: {when: after_upstream}}}
"#,
    )
    .await;
    seed_object(&h, "amb", "old", 10).await;
    let c = h.single_attempt_client(None);
    let body = random_bytes(100_000, 3);
    let err = c
        .put_object()
        .bucket("amb")
        .key("new")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InternalError"));
    let stored = h.direct().get_object().bucket("amb").key("new").send().await.unwrap();
    assert_eq!(
        stored.body.collect().await.unwrap().into_bytes(),
        body,
        "the PUT happened"
    );

    let err = c.delete_object().bucket("amb").key("old").send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let gone = h.direct().head_object().bucket("amb").key("old").send().await;
    assert!(gone.is_err(), "the DELETE happened");
    assert_eq!(h.stats("put-lies").injected, 1);
    assert_eq!(h.stats("delete-cut").injected, 1);
}

/// `clock_skew`: 403 RequestTimeTooSkewed with a `Date` really off by the rule's amount and
/// S3's extra elements; the SDK reads that `Date`, corrects its clock, and its retry passes.
#[tokio::test]
async fn clock_skew_answers_with_a_really_skewed_date() {
    let h = Harness::start(
        "name: skew\nrules:\n  - {name: skewed, match: {bucket: skew}, limit: 2, fault: {clock_skew: 5m}}\n",
    )
    .await;
    seed_object(&h, "skew", "k", 10).await;
    let raw_answer = raw("GET", &h.url("/skew/k")).await;
    assert_eq!(raw_answer.status, 403);
    let date = httpdate::parse_http_date(raw_answer.headers["date"].to_str().unwrap()).unwrap();
    let ahead = date.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        (Duration::from_secs(290)..Duration::from_secs(305)).contains(&ahead),
        "Date is 5 minutes ahead: {ahead:?}"
    );
    let body = String::from_utf8_lossy(&raw_answer.body);
    for element in [
        "<Code>RequestTimeTooSkewed</Code>",
        "<ServerTime>",
        "<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>",
        "<RequestTime",
    ] {
        assert!(body.contains(element), "{element} in {body}");
    }

    let got = h.client().get_object().bucket("skew").key("k").send().await;
    assert!(got.is_ok(), "the SDK corrected its clock and retried: {got:?}");
    assert_eq!(h.stats("skewed").injected, 2);
}

/// `match: {attempt: [1, 2]}`: "fail twice, then succeed", exactly, whatever the seed.
#[tokio::test]
async fn attempt_matching_fails_the_first_two_tries_only() {
    let h = Harness::start(
        "name: retries\nrules:\n  - {name: first-two, match: {operation: GetObject, attempt: [1, 2]}, fault: {error: InternalError}}\n",
    )
    .await;
    seed_object(&h, "att", "k", 10).await;
    for _ in 0..3 {
        let got = h.client().get_object().bucket("att").key("k").send().await;
        assert!(got.is_ok(), "the third attempt passes: {got:?}");
    }
    let stats = h.stats("first-two");
    assert_eq!(
        (stats.matched, stats.injected),
        (6, 6),
        "two failed tries per GET, three GETs"
    );
    let once = h
        .single_attempt_client(None)
        .get_object()
        .bucket("att")
        .key("k")
        .send()
        .await;
    assert_eq!(
        once.unwrap_err().code(),
        Some("InternalError"),
        "a client that never retries fails"
    );
}

/// `match: {access_key: ...}`: only requests signed with that key id (from `Authorization`
/// or a presigned URL) meet the fault; the signature is never checked by s3chaos.
#[tokio::test]
async fn access_key_matching_reads_headers_and_presigned_urls() {
    let h = Harness::start(&format!(
        "name: keys\nrules:\n  - {{name: expired, match: {{access_key: [{}]}}, fault: {{error: ExpiredToken}}}}\n  - {{name: other-key, match: {{access_key: AKIAOTHER}}, fault: reset}}\n",
        crate::harness::ACCESS_KEY
    ))
    .await;
    seed_object(&h, "keys", "k", 10).await;
    let err = h
        .single_attempt_client(None)
        .get_object()
        .bucket("keys")
        .key("k")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("ExpiredToken"));
    let (target, _) = crate::harness::presigned_get(&h, "keys", "k").await;
    let presigned = raw("GET", &h.url(&target)).await;
    assert_eq!(presigned.status, 400);
    assert!(String::from_utf8_lossy(&presigned.body).contains("<Code>ExpiredToken</Code>"));
    assert_eq!(h.stats("other-key").matched, 0);
    let unsigned = raw("GET", &h.url("/keys/k")).await;
    assert_eq!(
        unsigned.status, 403,
        "an unsigned request has no key: the store refuses it itself"
    );
}

/// `error_in_body` fires only on the three operations S3 answers that way (CompleteMultipart-
/// Upload, CopyObject, UploadPartCopy): a rule matching everything leaves a GET alone (before,
/// the GET's 200 body was the `<Error>` XML, taken by the SDK for the object's content), and a
/// CopyObject gets the 200-with-error, which the SDK catches and retries.
#[tokio::test]
async fn error_in_body_fires_only_where_s3_does_it() {
    let h = Harness::start("name: sneaky\nrules:\n  - {name: late, limit: 1, fault: {error_in_body: InternalError}}\n")
        .await;
    let body = seed_object(&h, "late", "src", 100).await;
    let c = h.client();
    let got = c.get_object().bucket("late").key("src").send().await.unwrap();
    assert_eq!(
        got.body.collect().await.unwrap().into_bytes(),
        body,
        "the object, not an <Error>"
    );
    assert_eq!(h.engine.stats()[0].injected, 0, "not counted either");
    c.copy_object()
        .bucket("late")
        .key("dst")
        .copy_source("late/src")
        .send()
        .await
        .expect("the SDK saw the error inside the 200 and retried");
    assert_eq!(h.engine.stats()[0].injected, 1);
    let copied = c.get_object().bucket("late").key("dst").send().await.unwrap();
    assert_eq!(copied.body.collect().await.unwrap().into_bytes(), body);
}

/// `error_in_body`: CompleteMultipartUpload answers 200 with an `<Error>` after whitespace;
/// the upload is not completed, the SDK sees the error inside the 200 and retries.
#[tokio::test]
async fn error_in_a_200_body_is_caught_by_the_sdk_and_retried() {
    let h = Harness::start(
        "name: sneaky\nrules:\n  - {name: complete-fails-late, match: {operation: CompleteMultipartUpload}, limit: 1, fault: {error_in_body: InternalError}}\n",
    )
    .await;
    let c = h.client();
    c.create_bucket().bucket("mpu").send().await.unwrap();
    let upload = c
        .create_multipart_upload()
        .bucket("mpu")
        .key("big")
        .send()
        .await
        .unwrap();
    let id = upload.upload_id().unwrap();
    let part = c
        .upload_part()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .part_number(1)
        .body(ByteStream::from(random_bytes(1000, 9)))
        .send()
        .await
        .unwrap();
    let parts = aws_sdk_s3::types::CompletedMultipartUpload::builder()
        .parts(
            aws_sdk_s3::types::CompletedPart::builder()
                .part_number(1)
                .e_tag(part.e_tag().unwrap())
                .build(),
        )
        .build();
    let done = c
        .complete_multipart_upload()
        .bucket("mpu")
        .key("big")
        .upload_id(id)
        .multipart_upload(parts)
        .send()
        .await;
    assert!(done.is_ok(), "retried after the 200-with-error: {done:?}");
    assert_eq!(h.stats("complete-fails-late").injected, 1);
    let stored = h.direct().get_object().bucket("mpu").key("big").send().await.unwrap();
    assert_eq!(stored.body.collect().await.unwrap().into_bytes(), random_bytes(1000, 9));
}

/// `stale_reads`: for the window after a write through the proxy, reads see the previous
/// state (the old object, or NoSuchKey for a new key) and listings omit new keys and keep
/// deleted ones; afterwards everything is current.
#[tokio::test]
async fn stale_reads_show_the_previous_state_for_the_window() {
    let h = Harness::start(
        "name: eventual\nrules:\n  - {name: ec, match: {bucket: eventual}, fault: {stale_reads: {for: 1s}}}\n",
    )
    .await;
    seed_object(&h, "eventual", "old", 100).await;
    let c = h.single_attempt_client(None);
    let read = |key: &'static str| {
        let c = c.clone();
        async move {
            match c.get_object().bucket("eventual").key(key).send().await {
                Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) => Err(e.code().unwrap_or("?").to_owned()),
            }
        }
    };
    let list = || {
        let c = c.clone();
        async move {
            let out = c.list_objects_v2().bucket("eventual").send().await.unwrap();
            assert_eq!(
                out.key_count(),
                Some(out.contents().len() as i32),
                "KeyCount follows the entries"
            );
            out.contents()
                .iter()
                .map(|o| o.key().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let v1 = read("old").await.unwrap();
    let put = |key: &'static str, body: &'static [u8]| {
        c.put_object()
            .bucket("eventual")
            .key(key)
            .body(ByteStream::from_static(body))
            .send()
    };
    put("old", b"version 2").await.unwrap();
    assert_eq!(read("old").await, Ok(v1.clone()), "the previous version, while stale");
    assert_eq!(read("new").await, Err("NoSuchKey".into()), "not written yet");
    put("new", b"brand new").await.unwrap();
    assert_eq!(
        read("new").await,
        Err("NoSuchKey".into()),
        "a new key read before its write is not visible yet (S3 cached the 404)"
    );
    assert_eq!(list().await, ["old"], "the listing lags too");
    c.delete_object().bucket("eventual").key("old").send().await.unwrap();
    assert_eq!(read("old").await, Ok(v1), "a deleted key still reads");
    assert_eq!(list().await, ["old"], "and still lists");
    let direct = h.direct().list_objects_v2().bucket("eventual").send().await.unwrap();
    assert_eq!(direct.contents().len(), 1, "upstream has only `new` now");

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(read("new").await, Ok(b"brand new".to_vec()));
    assert_eq!(read("old").await, Err("NoSuchKey".into()));
    assert_eq!(list().await, ["new"], "consistent after the window");
}

/// As a new user tried it: `stale_reads: {for: 2s}`, PUT v1, wait, PUT v2, GET. s3chaos never
/// saw v1's body and answered `NoSuchKey`, which S3 never did for an overwritten key. Now the
/// read is not staled (the current version, as S3 may), and a key written twice in the window
/// serves the version a GET saw, never a 404.
#[tokio::test]
async fn stale_reads_never_answer_404_for_a_key_that_existed() {
    let h = Harness::start(
        "name: eventual\nrules:\n  - {name: ec, match: {bucket: legal}, fault: {stale_reads: {for: 300ms}}}\n",
    )
    .await;
    let c = h.single_attempt_client(None);
    c.create_bucket().bucket("legal").send().await.unwrap();
    let put = |body: &'static [u8]| {
        c.put_object()
            .bucket("legal")
            .key("k")
            .body(ByteStream::from_static(body))
            .send()
    };
    let read = || {
        let c = c.clone();
        async move {
            match c.get_object().bucket("legal").key("k").send().await {
                Ok(o) => Ok(o.body.collect().await.unwrap().into_bytes().to_vec()),
                Err(e) => Err(e.code().unwrap_or("?").to_owned()),
            }
        }
    };
    put(b"v1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    put(b"v2").await.unwrap();
    assert_eq!(read().await, Ok(b"v2".to_vec()), "previous version unknown: not staled");
    // Seen, then overwritten: the stale read serves what the GET saw.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(read().await, Ok(b"v2".to_vec()));
    put(b"v3").await.unwrap();
    assert_eq!(read().await, Ok(b"v2".to_vec()), "the version a GET saw, while stale");
}

/// A client sending a request head larger than any S3 request has (1 MiB of headers, or a
/// thousand of them) gets `431` and a closed connection, and other clients never notice.
#[tokio::test]
async fn oversized_request_heads_are_refused_without_stalling_others() {
    let h = Harness::start("name: none\n").await;
    seed_object(&h, "big-heads", "k", 100).await;
    for head in [
        format!(
            "GET /big-heads/k HTTP/1.1\r\nHost: x\r\nx-pad: {}\r\n\r\n",
            "a".repeat(1 << 20)
        ),
        format!(
            "GET /big-heads/k HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..1000).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
        ),
    ] {
        let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
        // The proxy may answer and close before it has read everything.
        let _ = s.write_all(head.as_bytes()).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection was neither answered nor closed");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 431"), "{text}");

        let got = h.client().get_object().bucket("big-heads").key("k").send().await;
        assert!(got.is_ok(), "another client was affected: {got:?}");
    }
}
