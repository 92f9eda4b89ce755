//! Faults on the request (upload) side, as the SDK and the upstream see them.

use std::time::{Duration, Instant};

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;

use crate::harness::{Harness, random_bytes};

async fn stored(h: &Harness, key: &str) -> Option<Vec<u8>> {
    let out = h.direct().get_object().bucket("bkt").key(key).send().await.ok()?;
    Some(out.body.collect().await.unwrap().into_bytes().to_vec())
}

#[tokio::test]
async fn request_timeout_is_s3s_400_and_is_retried() {
    let h =
        Harness::start("name: idle\nrules:\n  - {name: rt, match: {operation: PutObject}, fault: request_timeout}\n")
            .await;
    h.direct().create_bucket().bucket("bkt").send().await.unwrap();
    let err = h
        .client()
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(random_bytes(300_000, 1)))
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("RequestTimeout"));
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 400);
    assert_eq!(h.stats("rt").matched, 3, "the SDK retries RequestTimeout");
    assert!(stored(&h, "k").await.is_none(), "the upstream never saw the upload");
}

#[tokio::test]
async fn reset_after_request_bytes_cuts_the_upload() {
    let h = Harness::start(
        "name: cut\nrules:\n  - {name: cut, match: {operation: PutObject}, fault: {reset: {after_request_bytes: 64KiB}}}\n",
    )
    .await;
    h.direct().create_bucket().bucket("bkt").send().await.unwrap();
    let err = h
        .single_attempt_client(None)
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(random_bytes(1024 * 1024, 2)))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(err, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)),
        "expected a connection error, got {err:?}"
    );
    assert!(stored(&h, "k").await.is_none(), "a cut upload must not be stored");
}

#[tokio::test]
async fn request_bandwidth_slows_the_upload_and_keeps_it_intact() {
    let h = Harness::start(
        "name: uplink\nrules:\n  - match: {operation: PutObject}\n    fault: {request_bandwidth: 512KiB/s}\n",
    )
    .await;
    h.direct().create_bucket().bucket("bkt").send().await.unwrap();
    let body = random_bytes(1024 * 1024, 3);
    let start = Instant::now();
    h.client()
        .put_object()
        .bucket("bkt")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1750),
        "1 MiB at 512 KiB/s took only {took:?}"
    );
    assert_eq!(stored(&h, "k").await.as_deref(), Some(&body[..]));
}

#[tokio::test]
async fn corrupted_upload_is_refused_upstream_and_not_stored() {
    let h = Harness::start(
        "name: lb-2008\nseed: 8\nrules:\n  - match: {operation: PutObject}\n    fault: {corrupt: {side: request, bytes: 1}}\n",
    )
    .await;
    h.direct().create_bucket().bucket("bkt").send().await.unwrap();
    let err = h
        .single_attempt_client(None)
        .put_object()
        .bucket("bkt")
        .key("k")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(random_bytes(200_000, 4)))
        .send()
        .await
        .unwrap_err();
    // Real S3 answers 400 BadDigest; s3s-fs answers 500 InternalError. Either way the
    // upstream itself refused the body (an answer, not a cut connection).
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert!(
        status.is_some_and(|s| s >= 400),
        "expected the upstream's refusal, got {err:?}"
    );
    assert!(stored(&h, "k").await.is_none(), "a corrupted upload was stored");
}
