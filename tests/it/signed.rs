//! Raw SigV4-signed requests (aws-sigv4, the SDK's own signer) for tests that need what the
//! SDK does not do on demand: a `Transfer-Encoding: chunked` upload with chosen frame sizes,
//! or the exact status, headers and bytes of a response, to compare with the store's own.

use std::net::SocketAddr;
use std::time::SystemTime;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use futures_util::stream;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::harness::{ACCESS_KEY, SECRET_KEY};

/// What S3 leaves unencoded in a path: unreserved characters and `/`.
const S3_PATH: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

pub type Body = BoxBody<Bytes, std::io::Error>;

/// How a request body goes on the wire.
pub enum Payload {
    Empty,
    /// One buffer with its `Content-Length`.
    Sized(Bytes),
    /// An aws-chunked body (see [`aws_chunked`]) sent with `Transfer-Encoding: chunked`, one
    /// HTTP chunk per piece, no length announced; signed STREAMING-UNSIGNED-PAYLOAD-TRAILER.
    AwsChunked(Vec<Bytes>),
}

/// A response as the client's socket delivered it.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// Headers that must match between two servers answering the same request: all but
    /// those that name the moment or the request (`date`, request ids).
    pub fn comparable_headers(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<_> = self
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-amz-request-id" | "x-amz-id-2"))
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        out.sort();
        out
    }
}

pub struct SignedClient {
    http: HyperClient<HttpConnector, Body>,
}

impl SignedClient {
    pub fn new() -> SignedClient {
        SignedClient {
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `method /bucket/key` at `to`, signed with UNSIGNED-PAYLOAD (as presigned URLs are) or
    /// as a streaming upload, with `headers` signed too.
    pub async fn send(
        &self,
        to: SocketAddr,
        method: &str,
        bucket: &str,
        key: &str,
        headers: &[(String, String)],
        payload: Payload,
    ) -> Result<Seen, String> {
        let path = format!("/{bucket}/{}", utf8_percent_encode(key, S3_PATH));
        let uri = format!("http://{to}{path}");
        let mut req = http::Request::builder().method(method).uri(&uri);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        let signable_body = match payload {
            Payload::AwsChunked(_) => SignableBody::StreamingUnsignedPayloadTrailer,
            _ => SignableBody::UnsignedPayload,
        };
        let (body, length): (Body, Option<usize>) = match payload {
            Payload::Empty => (Empty::new().map_err(|never| match never {}).boxed(), None),
            Payload::Sized(bytes) => {
                let len = bytes.len();
                (Full::new(bytes).map_err(|never| match never {}).boxed(), Some(len))
            }
            Payload::AwsChunked(pieces) => (frames(pieces), None),
        };
        if let Some(len) = length {
            req = req.header("content-length", len);
        }
        let mut req = req.body(body).map_err(|e| e.to_string())?;
        let host = to.to_string();
        let mut signed_headers: Vec<(&str, &str)> = vec![("host", host.as_str())];
        for (name, value) in req.headers() {
            signed_headers.push((name.as_str(), value.to_str().map_err(|e| e.to_string())?));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let identity = aws_credential_types::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(method, uri.as_str(), signed_headers.into_iter(), signable_body)
            .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params).map_err(|e| e.to_string())?.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let resp = self.http.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        Ok(Seen { status, headers, body })
    }
}

fn frames(pieces: Vec<Bytes>) -> Body {
    StreamBody::new(stream::iter(pieces.into_iter().map(|b| Ok(Frame::data(b))))).boxed()
}

/// `data` in the aws-chunked encoding of an unsigned streaming upload (what the SDKs send
/// with flexible checksums): chunks of `chunk` bytes, then a CRC32 trailer. The request needs
/// the headers [`aws_chunked_headers`] gives.
pub fn aws_chunked(data: &[u8], chunk: usize) -> Vec<u8> {
    use base64::Engine;
    let mut out = Vec::with_capacity(data.len() + data.len() / chunk.max(1) * 10 + 64);
    for piece in data.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    let crc = crc32fast::hash(data).to_be_bytes();
    let trailer = base64::engine::general_purpose::STANDARD.encode(crc);
    out.extend_from_slice(format!("0\r\nx-amz-checksum-crc32:{trailer}\r\n\r\n").as_bytes());
    out
}

/// The headers that announce an [`aws_chunked`] body of `decoded_len` bytes.
pub fn aws_chunked_headers(decoded_len: usize) -> Vec<(String, String)> {
    vec![
        ("content-encoding".into(), "aws-chunked".into()),
        ("x-amz-decoded-content-length".into(), decoded_len.to_string()),
        ("x-amz-trailer".into(), "x-amz-checksum-crc32".into()),
    ]
}
