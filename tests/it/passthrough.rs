//! With no fault firing, s3chaos must be invisible: same bytes, same ETags, same listings,
//! and SigV4 signatures that still verify at the upstream.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};

use crate::harness::{Harness, client_for, random_bytes};

/// Keys with characters that percent-encoding and SigV4 canonicalisation make tricky.
const KEYS: &[&str] = &[
    "plain.bin",
    "dir/sub dir/a b+c.bin",
    "café/✓ unicode.bin",
    "odd%25chars;=&@$,.bin",
    "~tilde(1)!*'.bin",
];

#[tokio::test]
async fn objects_round_trip_byte_exact_with_direct_etags() {
    // A rule that never matches: the engine runs on every request but passes all of them.
    let h = Harness::start("name: idle\nrules:\n  - {match: {bucket: other}, fault: reset}\n").await;
    let (proxied, direct) = (h.client(), h.direct());
    proxied.create_bucket().bucket("data").send().await.unwrap();

    for (i, key) in KEYS.iter().enumerate() {
        let body = random_bytes(3 * 1024 * 1024 + i * 7919, i as u64);
        let put = proxied
            .put_object()
            .bucket("data")
            .key(*key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();

        // Same content written directly under another key: S3 ETags are content MD5s.
        let direct_key = format!("direct/{key}");
        let direct_put = direct
            .put_object()
            .bucket("data")
            .key(&direct_key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(put.e_tag(), direct_put.e_tag(), "ETag of {key}");

        let got = proxied.get_object().bucket("data").key(*key).send().await.unwrap();
        assert_eq!(got.e_tag(), put.e_tag());
        assert_eq!(got.content_length(), Some(body.len() as i64));
        let bytes = got.body.collect().await.unwrap().into_bytes();
        assert!(bytes == body, "proxied GET of {key} returned different bytes");

        let stored = direct.get_object().bucket("data").key(*key).send().await.unwrap();
        assert!(
            stored.body.collect().await.unwrap().into_bytes() == body,
            "upstream stored different bytes for {key}"
        );
    }

    let list = |c: aws_sdk_s3::Client| async move {
        let out = c.list_objects_v2().bucket("data").send().await.unwrap();
        out.contents()
            .iter()
            .map(|o| (o.key().unwrap().to_owned(), o.size()))
            .collect::<Vec<_>>()
    };
    let (via_proxy, via_direct) = (list(proxied.clone()).await, list(direct.clone()).await);
    assert_eq!(via_proxy.len(), 2 * KEYS.len());
    assert_eq!(via_proxy, via_direct);

    for key in KEYS {
        proxied.delete_object().bucket("data").key(*key).send().await.unwrap();
        let head = direct.head_object().bucket("data").key(*key).send().await;
        assert!(head.is_err(), "{key} still exists upstream after a proxied delete");
    }
    assert_eq!(h.stats("rule-1").matched, 0);
}

#[tokio::test]
async fn multipart_upload_matches_direct() {
    let h = Harness::start("name: none\n").await;
    let (proxied, direct) = (h.client(), h.direct());
    proxied.create_bucket().bucket("multi").send().await.unwrap();
    let parts = [
        random_bytes(5 * 1024 * 1024, 1),
        random_bytes(5 * 1024 * 1024, 2),
        random_bytes(1024 * 1024 + 3, 3),
    ];

    let mut etags = Vec::new();
    for client in [&proxied, &direct] {
        let key = if std::ptr::eq(client, &proxied) {
            "via-proxy"
        } else {
            "direct"
        };
        let upload = client
            .create_multipart_upload()
            .bucket("multi")
            .key(key)
            .send()
            .await
            .unwrap();
        let id = upload.upload_id().unwrap();
        let mut done = Vec::new();
        for (n, part) in parts.iter().enumerate() {
            let number = n as i32 + 1;
            let out = client
                .upload_part()
                .bucket("multi")
                .key(key)
                .upload_id(id)
                .part_number(number)
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .unwrap();
            done.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(out.e_tag().unwrap())
                    .build(),
            );
        }
        let complete = client
            .complete_multipart_upload()
            .bucket("multi")
            .key(key)
            .upload_id(id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(done)).build())
            .send()
            .await
            .unwrap();
        etags.push(complete.e_tag().unwrap().to_owned());
    }
    assert_eq!(
        etags[0], etags[1],
        "multipart ETag through the proxy differs from direct"
    );
    assert!(etags[0].contains("-3"), "a 3-part ETag, got {}", etags[0]);

    let got = proxied
        .get_object()
        .bucket("multi")
        .key("via-proxy")
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert!(bytes == parts.concat(), "multipart object bytes differ");
}

#[tokio::test]
async fn checksummed_uploads_and_validated_downloads_pass() {
    // Flexible checksums make the SDK send the checksum in a trailer of an aws-chunked body,
    // which must reach the upstream untouched for it to verify.
    // A rule that only counts: it matches aws-chunked uploads and adds 1 ms.
    let h = Harness::start("name: watch\nrules:\n  - name: aws-chunked\n    match: {header: {content-encoding: aws-chunked}}\n    fault: {latency: 1ms}\n").await;
    let c = h.client();
    c.create_bucket().bucket("cksum").send().await.unwrap();
    // A file-backed body streams with its checksum in a trailer (aws-chunked).
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), random_bytes(3 * 1024 * 1024 + 1, 10)).unwrap();
    c.put_object()
        .bucket("cksum")
        .key("streamed")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .body(ByteStream::from_path(file.path()).await.unwrap())
        .send()
        .await
        .unwrap();
    assert!(
        h.stats("aws-chunked").matched >= 1,
        "the SDK did not send aws-chunked; this test checks nothing"
    );
    let got = c
        .get_object()
        .bucket("cksum")
        .key("streamed")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .unwrap();
    assert!(got.body.collect().await.unwrap().into_bytes() == std::fs::read(file.path()).unwrap());

    let body = random_bytes(2 * 1024 * 1024 + 11, 9);
    for algo in [
        ChecksumAlgorithm::Crc32C,
        ChecksumAlgorithm::Crc32,
        ChecksumAlgorithm::Sha256,
    ] {
        let key = format!("obj-{}", algo.as_str());
        c.put_object()
            .bucket("cksum")
            .key(&key)
            .checksum_algorithm(algo.clone())
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put with {algo:?}: {e:?}"));
        let got = c
            .get_object()
            .bucket("cksum")
            .key(&key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        assert!(got.body.collect().await.unwrap().into_bytes() == body);
    }
}

#[tokio::test]
async fn sigv4_is_still_checked_upstream() {
    // The proxy must not make a bad signature pass, nor break a good one: a client with the
    // wrong secret is refused by the upstream through the proxy.
    let h = Harness::start("name: none\n").await;
    h.client().create_bucket().bucket("auth").send().await.unwrap();
    let wrong = client_for(h.proxy, |b| {
        b.credentials_provider(aws_sdk_s3::config::Credentials::new(
            crate::harness::ACCESS_KEY,
            "not-the-secret",
            None,
            None,
            "test",
        ))
    });
    let err = wrong.head_bucket().bucket("auth").send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    let err = wrong.list_objects_v2().bucket("auth").send().await.unwrap_err();
    assert_eq!(err.code(), Some("SignatureDoesNotMatch"));
}

#[tokio::test]
async fn presigned_put_with_expect_continue_passes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start("name: none\n").await;
    let c = h.client();
    c.create_bucket().bucket("pre").send().await.unwrap();
    let body = b"hello through a presigned URL";
    let presigned = c
        .put_object()
        .bucket("pre")
        .key("greeting.txt")
        .presigned(aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(60)).unwrap())
        .await
        .unwrap();
    let uri: http::Uri = presigned.uri().parse().unwrap();

    // Like botocore: headers first with `Expect: 100-continue`, the body only after `100 Continue`.
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    let head = format!(
        "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        uri.path_and_query().unwrap(),
        uri.authority().unwrap(),
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(interim.starts_with("HTTP/1.1 100 Continue"), "got {interim:?}");
    s.write_all(body).await.unwrap();
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let fin = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(fin.starts_with("HTTP/1.1 200"), "got {fin:?}");

    let got = c.get_object().bucket("pre").key("greeting.txt").send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], body);
}
