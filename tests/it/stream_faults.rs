//! Faults inside the response stream, as a client on the wire and the SDK see them.

use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Harness, presigned_get, random_bytes, send_raw_get};

async fn seed(h: &Harness, key: &str, len: usize) -> Vec<u8> {
    let body = random_bytes(len, 5);
    let d = h.direct();
    let _ = d.create_bucket().bucket("bkt").send().await;
    d.put_object()
        .bucket("bkt")
        .key(key)
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    body
}

/// What a raw client saw: the response head, the body bytes, how the stream ended, and
/// when the head and the first body byte arrived.
struct Seen {
    head: String,
    body: Vec<u8>,
    end: Result<(), std::io::ErrorKind>,
    head_at: Duration,
    first_body_at: Option<Duration>,
    /// After each read: when, and how many body bytes had arrived in all.
    timeline: Vec<(Duration, usize)>,
}

async fn fetch_raw(h: &Harness, key: &str, expect_len: usize) -> Seen {
    let (target, host) = presigned_get(h, "bkt", key).await;
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let start = Instant::now();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), vec![0u8; 64 * 1024]);
    let (mut head_end, mut head_at, mut first_body_at) = (None, Duration::ZERO, None);
    let mut timeline = Vec::new();
    let end = loop {
        let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the proxy went silent");
        match read {
            Ok(0) => break Ok(()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if head_end.is_none()
                    && let Some(p) = got.windows(4).position(|w| w == b"\r\n\r\n")
                {
                    head_end = Some(p + 4);
                    head_at = start.elapsed();
                }
                if let Some(e) = head_end {
                    timeline.push((start.elapsed(), got.len() - e));
                    if first_body_at.is_none() && got.len() > e {
                        first_body_at = Some(start.elapsed());
                    }
                    if got.len() - e >= expect_len {
                        break Ok(()); // Complete: keep-alive would leave the socket open.
                    }
                }
            }
            Err(e) => break Err(e.kind()),
        }
    };
    let e = head_end.expect("a response head");
    Seen {
        head: String::from_utf8_lossy(&got[..e]).to_string(),
        body: got[e..].to_vec(),
        end,
        head_at,
        first_body_at,
        timeline,
    }
}

#[tokio::test]
async fn first_byte_latency_delays_the_body_not_the_headers() {
    let h = Harness::start(
        "name: ttfb\nrules:\n  - match: {operation: GetObject}\n    fault: {first_byte_latency: 400ms}\n",
    )
    .await;
    let body = seed(&h, "k", 100_000).await;
    let seen = fetch_raw(&h, "k", body.len()).await;
    assert!(seen.head.starts_with("HTTP/1.1 200"), "{}", seen.head);
    let first = seen.first_body_at.expect("the body arrived");
    assert!(
        first - seen.head_at >= Duration::from_millis(350),
        "headers at {:?}, first body byte at {first:?}",
        seen.head_at
    );
    assert!(seen.body == body);
}

#[tokio::test]
async fn truncate_closes_cleanly_after_n_bytes_and_the_sdk_notices() {
    let h = Harness::start(
        "name: short\nrules:\n  - match: {operation: GetObject}\n    fault: {truncate: {after_bytes: 100KiB}}\n",
    )
    .await;
    let body = seed(&h, "big", 1024 * 1024).await;
    let seen = fetch_raw(&h, "big", body.len()).await;
    assert!(
        seen.head
            .to_ascii_lowercase()
            .contains(&format!("content-length: {}", body.len())),
        "{}",
        seen.head
    );
    assert_eq!(seen.end, Ok(()), "a FIN, not a reset");
    assert_eq!(seen.body.len(), 100 * 1024, "exactly after_bytes before the close");
    assert!(seen.body == body[..100 * 1024]);

    let out = h.client().get_object().bucket("bkt").key("big").send().await.unwrap();
    assert!(out.body.collect().await.is_err(), "the SDK must detect the short body");
}

#[tokio::test]
async fn corrupt_keeps_length_and_fails_checksum_validation() {
    let h = Harness::start(
        "name: flip\nseed: 1\nrules:\n  - {name: at, match: {key: at}, fault: {corrupt: {at_byte: 10}}}\n  - {name: random, match: {key: random}, fault: {corrupt: {bytes: 1}}}\n",
    )
    .await;
    let body = seed(&h, "at", 300_000).await;
    let seen = fetch_raw(&h, "at", body.len()).await;
    assert_eq!(seen.body.len(), body.len(), "same length");
    let diffs: Vec<usize> = (0..body.len()).filter(|&i| seen.body[i] != body[i]).collect();
    assert_eq!(diffs, [10]);
    assert_eq!(seen.body[10] ^ body[10], 0x01, "one bit flipped");

    // The SDK, validating the CRC32 the object was stored with, refuses the body.
    seed(&h, "random", 300_000).await;
    let out = h
        .client()
        .get_object()
        .bucket("bkt")
        .key("random")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    let error = match out {
        Err(e) => format!("{e:?}"),
        Ok(out) => format!(
            "{:?}",
            out.body
                .collect()
                .await
                .expect_err("a corrupted download passed checksum validation")
        ),
    };
    assert!(
        error.to_lowercase().contains("checksum"),
        "failed, but not on the checksum: {error}"
    );
    assert_eq!(h.stats("random").injected, 1);
}

#[tokio::test]
async fn bandwidth_paces_the_download() {
    let h = Harness::start("name: slow\nrules:\n  - match: {operation: GetObject}\n    fault: {bandwidth: 512KiB/s}\n")
        .await;
    let body = seed(&h, "k", 1024 * 1024).await;
    let seen = fetch_raw(&h, "k", body.len()).await;
    assert!(seen.body == body);
    let first = seen.first_body_at.unwrap();
    let last = seen.timeline.last().unwrap().0;
    // 1 MiB at 512 KiB/s: about 2 s from the first byte (the first piece, 1/20 s worth, is
    // free). Within 10% below, and not wildly above either.
    let took = last - first;
    assert!(took >= Duration::from_millis(1750), "1 MiB took {took:?}");
    assert!(took <= Duration::from_millis(3000), "1 MiB took {took:?}");
}

#[tokio::test]
async fn stall_pauses_after_n_bytes_then_resumes() {
    let h = Harness::start(
        "name: hang\nrules:\n  - match: {operation: GetObject}\n    fault: {stall: {after_bytes: 64KiB, for: 500ms}}\n",
    )
    .await;
    let body = seed(&h, "k", 512 * 1024).await;
    let seen = fetch_raw(&h, "k", body.len()).await;
    assert!(seen.body == body, "the whole object arrives after the pause");
    let reached = seen
        .timeline
        .iter()
        .find(|(_, n)| *n >= 64 * 1024)
        .expect("64 KiB arrived");
    assert_eq!(reached.1, 64 * 1024, "exactly after_bytes before the pause");
    let resumed = seen
        .timeline
        .iter()
        .find(|(_, n)| *n > 64 * 1024)
        .expect("the rest arrived");
    let gap = resumed.0 - reached.0;
    assert!(gap >= Duration::from_millis(450), "paused only {gap:?}");
}

#[tokio::test]
async fn a_retried_truncated_download_ends_byte_exact() {
    // Only the first GET is cut: an app that retries a short read gets the whole object.
    let h = Harness::start(
        "name: once\nrules:\n  - {name: cut-once, match: {operation: GetObject}, limit: 1, fault: {truncate: {after_bytes: 10000}}}\n",
    )
    .await;
    let body = seed(&h, "k", 256 * 1024).await;
    let c = h.client();
    let mut attempts = 0;
    let got = loop {
        attempts += 1;
        assert!(attempts <= 3, "still failing after 3 attempts");
        let out = c.get_object().bucket("bkt").key("k").send().await.unwrap();
        if let Ok(bytes) = out.body.collect().await {
            break bytes.into_bytes();
        }
    };
    assert_eq!(attempts, 2, "the first download was cut, the second was not");
    assert!(got == body);
    assert_eq!(h.stats("cut-once").injected, 1);
}

#[tokio::test]
async fn stall_forever_holds_the_rest_back() {
    let h = Harness::start(
        "name: hang\nrules:\n  - match: {operation: GetObject}\n    fault: {stall: {after_bytes: 1000, for: forever}}\n",
    )
    .await;
    seed(&h, "k", 100_000).await;
    let mut s = send_raw_get(&h, "bkt", "k").await;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    // Read until nothing more comes for 500 ms (bounded: 100 reads at most).
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("the proxy closed a stalled download"),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => break,
        }
    }
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").expect("headers arrived") + 4;
    assert_eq!(got.len() - head_end, 1000, "exactly after_bytes, then nothing");
}

/// `slicer` (Toxiproxy's toxic): the SDK gets every byte, checksum valid, but the body
/// arrives in small pieces spread over time.
#[tokio::test]
async fn slicer_delivers_every_byte_in_small_pieces_over_time() {
    let h = Harness::start(
        "name: slices\nseed: 3\nrules:\n  - match: {operation: GetObject}\n    fault: {slicer: {average_size: 1KiB, size_variation: 512B, delay: 20ms}}\n",
    )
    .await;
    let body = seed(&h, "k", 10 * 1024).await;
    let seen = fetch_raw(&h, "k", body.len()).await;
    assert!(seen.body == body, "same bytes, same length");
    let first = seen.first_body_at.unwrap();
    let last = seen.timeline.last().unwrap().0;
    // 10 KiB in pieces of at most 1.5 KiB: at least 6 pieces, so at least 5 pauses of 20 ms.
    assert!(
        last - first >= Duration::from_millis(100),
        "body spread over {:?}",
        last - first
    );
    assert!(
        seen.timeline.len() >= 6,
        "{} reads: {:?}",
        seen.timeline.len(),
        seen.timeline
    );

    let out = h
        .client()
        .get_object()
        .bucket("bkt")
        .key("k")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert!(
        out.body.collect().await.unwrap().into_bytes() == body,
        "the SDK reads it whole, checksum valid"
    );
}
