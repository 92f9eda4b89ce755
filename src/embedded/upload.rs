//! Receiving an object's bytes: the body streams into a temp blob in 1 MiB writes on a
//! blocking thread (one write in flight while the next MiB arrives), hashed as it goes (MD5
//! for the ETag, and the checksums the client asked for); then the result is checked against
//! what the client declared (length, Content-MD5, `x-amz-checksum-*` headers or trailers).

use std::sync::Arc;

use bytes::BytesMut;
use futures_util::StreamExt;
use s3s::S3ErrorCode;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};

use super::blobs::{Blobs, TempBlob};
use super::error::{StoreError, StoreResult, refuse};
use super::meta::Checksums;

const WRITE_CHUNK: usize = 1 << 20;

/// Why a request body could not be taken as the payload it claimed to be.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("malformed aws-chunked body: {0}")]
    Framing(String),
    #[error("the body ended before its declared length")]
    Incomplete,
    #[error("the body is longer than its declared length")]
    TooLong,
    #[error("the body does not match x-amz-content-sha256")]
    Sha256Mismatch,
}

impl UploadError {
    fn refusal(&self) -> StoreError {
        match self {
            UploadError::Framing(why) => refuse(
                S3ErrorCode::InvalidRequest,
                format!("Malformed aws-chunked body: {why}"),
            ),
            UploadError::Incomplete => refuse(
                S3ErrorCode::IncompleteBody,
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            ),
            UploadError::TooLong => refuse(
                S3ErrorCode::InvalidRequest,
                "The request body is longer than its declared length.",
            ),
            UploadError::Sha256Mismatch => super::error::refuse_custom(
                "XAmzContentSHA256Mismatch",
                http::StatusCode::BAD_REQUEST,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ),
        }
    }
}

/// A body error as the client should hear it.
fn body_error(e: s3s::StdError) -> StoreError {
    if let Some(u) = e.downcast_ref::<UploadError>() {
        return u.refusal();
    }
    // s3s's own decoder (fixed credentials) reports signature failures in the body.
    let text = e.to_string();
    if text.contains("Signature") || text.contains("signature") {
        return refuse(
            S3ErrorCode::SignatureDoesNotMatch,
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    refuse(
        S3ErrorCode::IncompleteBody,
        format!("The request body could not be read completely: {text}"),
    )
}

/// The checksums to compute for an upload.
#[derive(Debug, Default, Clone, Copy)]
pub struct Wanted {
    pub crc32: bool,
    pub crc32c: bool,
    pub sha1: bool,
    pub sha256: bool,
    pub crc64nvme: bool,
}

impl Wanted {
    pub fn add(&mut self, algorithm: &str) -> StoreResult<()> {
        match algorithm.to_ascii_uppercase().as_str() {
            "CRC32" => self.crc32 = true,
            "CRC32C" => self.crc32c = true,
            "SHA1" => self.sha1 = true,
            "SHA256" => self.sha256 = true,
            "CRC64NVME" => self.crc64nvme = true,
            other => {
                return Err(refuse(
                    S3ErrorCode::InvalidRequest,
                    format!("Value for x-amz-checksum-algorithm header is invalid: {other}"),
                ));
            }
        }
        Ok(())
    }

    /// Every checksum named by a declared value.
    pub fn declared(c: &Checksums) -> Wanted {
        Wanted {
            crc32: c.crc32.is_some(),
            crc32c: c.crc32c.is_some(),
            sha1: c.sha1.is_some(),
            sha256: c.sha256.is_some(),
            crc64nvme: c.crc64nvme.is_some(),
        }
    }

    pub fn hasher(self) -> ChecksumHasher {
        use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
        ChecksumHasher {
            crc32: self.crc32.then(Crc32::new),
            crc32c: self.crc32c.then(Crc32c::new),
            sha1: self.sha1.then(Sha1::new),
            sha256: self.sha256.then(Sha256::new),
            crc64nvme: self.crc64nvme.then(Crc64Nvme::new),
        }
    }
}

/// A body received in full, not yet referenced by any version.
pub struct Received {
    pub temp: TempBlob,
    pub size: u64,
    pub md5: [u8; 16],
    pub checksums: Checksums,
}

impl Received {
    pub fn md5_hex(&self) -> String {
        hex(&self.md5)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

struct Sink {
    temp: TempBlob,
    md5: Md5,
    sums: ChecksumHasher,
}

/// Chunks at least this big are hashed and written on two threads at once (MD5 and the
/// copy into the page cache each take about as long; in series they halve PUT speed).
const PARALLEL_FROM: usize = 256 * 1024;

impl Sink {
    fn take(mut self, bytes: &[u8]) -> std::io::Result<Sink> {
        let Sink { temp, md5, sums } = &mut self;
        if bytes.len() < PARALLEL_FROM {
            md5.update(bytes);
            sums.update(bytes);
            temp.write_all(bytes)?;
            return Ok(self);
        }
        let written = std::thread::scope(|scope| {
            let writer = scope.spawn(|| temp.write_all(bytes));
            md5.update(bytes);
            sums.update(bytes);
            writer.join()
        });
        written.map_err(|_| std::io::Error::other("the object file writer panicked"))??;
        Ok(self)
    }
}

async fn flush(inflight: Option<tokio::task::JoinHandle<std::io::Result<Sink>>>) -> StoreResult<Option<Sink>> {
    match inflight {
        None => Ok(None),
        Some(h) => Ok(Some(
            h.await
                .map_err(|e| StoreError::Task(e.to_string()))?
                .map_err(StoreError::io("writing an object file"))?,
        )),
    }
}

/// Streams `body` into a new temp blob. `declared_len` is Content-Length (the decoded one
/// for aws-chunked bodies) when the client gave it.
pub async fn receive(
    blobs: &Arc<Blobs>,
    body: Option<s3s::dto::StreamingBlob>,
    declared_len: Option<i64>,
    wanted: Wanted,
) -> StoreResult<Received> {
    let b = Arc::clone(blobs);
    let temp = tokio::task::spawn_blocking(move || b.temp())
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
        .map_err(StoreError::io("creating an object file"))?;
    let mut sink = Some(Sink {
        temp,
        md5: Md5::new(),
        sums: wanted.hasher(),
    });
    let mut inflight = None;
    let mut buf = BytesMut::new();
    let mut size = 0u64;
    if let Some(mut body) = body {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            size += chunk.len() as u64;
            if buf.is_empty() && chunk.len() >= WRITE_CHUNK {
                // Large frames go straight to the writer, no copy.
                let s = match flush(inflight.take()).await? {
                    Some(s) => s,
                    None => sink.take().expect("a sink when nothing is in flight"),
                };
                inflight = Some(tokio::task::spawn_blocking(move || s.take(&chunk)));
                continue;
            }
            buf.extend_from_slice(&chunk);
            if buf.len() >= WRITE_CHUNK {
                let full = buf.split().freeze();
                let s = match flush(inflight.take()).await? {
                    Some(s) => s,
                    None => sink.take().expect("a sink when nothing is in flight"),
                };
                inflight = Some(tokio::task::spawn_blocking(move || s.take(&full)));
            }
        }
    }
    let mut s = match flush(inflight.take()).await? {
        Some(s) => s,
        None => sink.take().expect("a sink when nothing is in flight"),
    };
    if !buf.is_empty() {
        let rest = buf.freeze();
        s = tokio::task::spawn_blocking(move || s.take(&rest))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
            .map_err(StoreError::io("writing an object file"))?;
    }
    if let Some(n) = declared_len
        && n >= 0
        && size < n as u64
    {
        return Err(UploadError::Incomplete.refusal());
    }
    let md5: [u8; 16] = s.md5.finalize();
    Ok(Received {
        temp: s.temp,
        size,
        md5,
        checksums: Checksums::from_dto(&s.sums.finalize()),
    })
}

/// Checks Content-MD5 (base64) against the received bytes.
pub fn check_content_md5(received: &Received, content_md5: Option<&str>) -> StoreResult<()> {
    let Some(given) = content_md5 else { return Ok(()) };
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(given.trim())
        .ok()
        .filter(|d| d.len() == 16)
        .ok_or_else(|| refuse(S3ErrorCode::InvalidDigest, "The Content-MD5 you specified was invalid."))?;
    if decoded != received.md5 {
        return Err(refuse(
            S3ErrorCode::BadDigest,
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    Ok(())
}

/// Checks each declared checksum (header or trailer) against the computed one.
pub fn check_checksums(computed: &Checksums, declared: &Checksums) -> StoreResult<()> {
    let pairs = [
        ("CRC32", &declared.crc32, &computed.crc32),
        ("CRC32C", &declared.crc32c, &computed.crc32c),
        ("SHA1", &declared.sha1, &computed.sha1),
        ("SHA256", &declared.sha256, &computed.sha256),
        ("CRC64NVME", &declared.crc64nvme, &computed.crc64nvme),
    ];
    for (name, given, got) in pairs {
        if let Some(given) = given
            && got.as_deref() != Some(given.as_str())
        {
            return Err(refuse(
                S3ErrorCode::BadDigest,
                format!("The {name} you specified did not match the calculated checksum."),
            ));
        }
    }
    Ok(())
}

/// Checksums named in trailers (`x-amz-checksum-*`).
pub fn checksums_in(headers: &http::HeaderMap) -> Checksums {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Checksums {
        crc32: get("x-amz-checksum-crc32"),
        crc32c: get("x-amz-checksum-crc32c"),
        sha1: get("x-amz-checksum-sha1"),
        sha256: get("x-amz-checksum-sha256"),
        crc64nvme: get("x-amz-checksum-crc64nvme"),
        kind: None,
    }
}
