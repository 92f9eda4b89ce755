//! Who the store lets in. By default, anyone: like LocalStack and moto it accepts every
//! SigV4 request whatever its access key, secret and region (header-signed, presigned,
//! signed `aws-chunked` streams, the unsigned-trailer variant) and unsigned requests too. s3s
//! can only verify signatures, so in that mode the request is made anonymous before s3s sees
//! it: the signature goes, an `aws-chunked` body is decoded to its payload (trailers kept for
//! the checksum check), a signed payload hash is still checked against the body, and a
//! presigned URL past its expiry is still refused, as S3 would.
//!
//! With `--access-key/--secret-key` s3s verifies every signature against that one pair.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{HeaderValue, Request};
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode};

use super::aws_chunked::{Dechunked, TrailerSlot};
use super::upload::UploadError;

/// The region the store says it is in (S3's default region).
pub const REGION: &str = "us-east-1";

/// Credentials the embedded store accepts.
#[derive(Debug, Clone, Default)]
pub enum Credentials {
    /// Every request, signed with any key (or not signed at all).
    #[default]
    Any,
    /// Only requests signed with this pair, for the region [`REGION`].
    Fixed { access_key: String, secret_key: String },
}

/// The one pair of [`Credentials::Fixed`], with a refusal that says which key is expected.
pub struct FixedAuth {
    pub access_key: String,
    pub secret_key: String,
}

#[async_trait::async_trait]
impl S3Auth for FixedAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(SecretKey::from(self.secret_key.clone()))
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::InvalidAccessKeyId,
                format!(
                    "The AWS Access Key Id you provided does not exist in our records: this s3chaos store accepts only \
                     the access key '{}' (set by --access-key)",
                    self.access_key
                ),
            ))
        }
    }
}

/// Query parameters that carry a presigned URL's signature (SigV4 and SigV2).
const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v))
}

/// The longest a SigV4 presigned URL may live: a week.
const MAX_PRESIGN_SECS: u64 = 604_800;

/// S3's answer to a presigned URL used after `X-Amz-Date + X-Amz-Expires`, or whose
/// `X-Amz-Expires` is not 0 to a week.
fn check_not_expired(query: &str, now: std::time::SystemTime) -> Result<(), S3Error> {
    let expired = || S3Error::with_message(S3ErrorCode::AccessDenied, "Request has expired");
    if let (Some(date), Some(expires)) = (query_value(query, "X-Amz-Date"), query_value(query, "X-Amz-Expires")) {
        // SigV4 presigned URLs live at most a week; S3 refuses other values outright.
        let Some(expires) = expires.parse::<u64>().ok().filter(|e| *e <= MAX_PRESIGN_SECS) else {
            let mut e = S3Error::with_message(
                S3ErrorCode::Custom("AuthorizationQueryParametersError".into()),
                "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            );
            e.set_status_code(http::StatusCode::FORBIDDEN);
            return Err(e);
        };
        if let Some(signed) = parse_amz_date(date)
            && signed + std::time::Duration::from_secs(expires) < now
        {
            return Err(expired());
        }
    } else if let Some(expires) = query_value(query, "Expires").and_then(|e| e.parse::<u64>().ok())
        && std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires) < now
    {
        return Err(expired());
    }
    Ok(())
}

/// `20261202T074739Z` as a time.
fn parse_amz_date(text: &str) -> Option<std::time::SystemTime> {
    if text.len() != 16 {
        return None;
    }
    let rfc3339 = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &text[0..4],
        &text[4..6],
        &text[6..8],
        &text[9..11],
        &text[11..13],
        &text[13..15]
    );
    humantime::parse_rfc3339(&rfc3339).ok()
}

/// Makes a request anonymous for s3s, keeping what it means (see the module comment).
pub fn accept_any(req: &mut Request<s3s::Body>, now: std::time::SystemTime) -> Result<(), S3Error> {
    if let Some(query) = req.uri().query().map(str::to_owned)
        && PRESIGN_PARAMS.iter().any(|p| query_value(&query, p).is_some())
    {
        check_not_expired(&query, now)?;
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                !PRESIGN_PARAMS.contains(&name)
            })
            .collect();
        let path = req.uri().path();
        let path_and_query = if kept.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", kept.join("&"))
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = Some(
            path_and_query
                .parse()
                .map_err(|_| S3Error::with_message(S3ErrorCode::InvalidURI, "Couldn't parse the specified URI."))?,
        );
        *req.uri_mut() = http::Uri::from_parts(parts)
            .map_err(|_| S3Error::with_message(S3ErrorCode::InvalidURI, "Couldn't parse the specified URI."))?;
    }
    let headers = req.headers_mut();
    headers.remove(http::header::AUTHORIZATION);
    headers.remove("x-amz-security-token");
    let payload = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let slot = TrailerSlot::default();
    match payload.as_deref() {
        Some(p) if p.starts_with("STREAMING-") => {
            let decoded = headers
                .get("x-amz-decoded-content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    S3Error::with_message(
                        S3ErrorCode::MissingContentLength,
                        "You must provide the x-amz-decoded-content-length header for aws-chunked uploads.",
                    )
                })?;
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(decoded));
            headers.remove("x-amz-decoded-content-length");
            strip_aws_chunked_encoding(headers);
            headers.insert("x-amz-content-sha256", HeaderValue::from_static("UNSIGNED-PAYLOAD"));
            let body = std::mem::take(req.body_mut());
            let stream: s3s::stream::DynByteStream = Box::pin(Dechunked::new(body, Some(decoded), slot.clone()));
            *req.body_mut() = s3s::Body::from(stream);
        }
        Some(p) if p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()) => {
            let mut expected = [0u8; 32];
            for (i, byte) in expected.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&p[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            let body = std::mem::take(req.body_mut());
            let stream: s3s::stream::DynByteStream = Box::pin(Sha256Checked::new(body, expected));
            *req.body_mut() = s3s::Body::from(stream);
        }
        _ => {}
    }
    req.extensions_mut().insert(slot);
    Ok(())
}

fn strip_aws_chunked_encoding(headers: &mut http::HeaderMap) {
    let Some(value) = headers
        .get(http::header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
    else {
        return;
    };
    let rest: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    if rest.is_empty() {
        headers.remove(http::header::CONTENT_ENCODING);
    } else if let Ok(v) = HeaderValue::from_str(&rest.join(",")) {
        headers.insert(http::header::CONTENT_ENCODING, v);
    }
}

/// The region a SigV4 `Authorization` header signs for.
pub fn signed_region(headers: &http::HeaderMap) -> Option<String> {
    let auth = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?.split([',', ' ']).next()?;
    // access-key/date/region/service/aws4_request (an access key may itself hold '/').
    let mut parts = credential.rsplit('/');
    let (_, _, region) = (parts.next()?, parts.next()?, parts.next()?);
    Some(region.to_owned())
}

/// S3's answer to a signature for another region, with the `<Region>` S3 adds (clients
/// such as s3cmd read it and sign again for that region).
pub fn wrong_region_response(region: &str) -> http::Response<s3s::Body> {
    let escape = |s: &str| quick_xml::escape::escape(s).into_owned();
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AuthorizationHeaderMalformed</Code>\
         <Message>The authorization header is malformed; the region '{}' is wrong; expecting '{REGION}'</Message>\
         <Region>{REGION}</Region><RequestId>{}</RequestId></Error>",
        escape(region),
        crate::s3::error::RequestIds::generate().request_id
    );
    let mut response = http::Response::new(s3s::Body::from(body));
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

/// A body checked against the SHA-256 the client signed (`x-amz-content-sha256`).
struct Sha256Checked<S> {
    inner: S,
    hasher: Option<s3s::crypto::Sha256>,
    expected: [u8; 32],
}

impl<S> Sha256Checked<S> {
    fn new(inner: S, expected: [u8; 32]) -> Self {
        use s3s::crypto::Checksum as _;
        Sha256Checked {
            inner,
            hasher: Some(s3s::crypto::Sha256::new()),
            expected,
        }
    }
}

impl<S> Stream for Sha256Checked<S>
where
    S: Stream<Item = Result<Bytes, s3s::StdError>> + Unpin,
{
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use s3s::crypto::Checksum as _;
        let this = &mut *self;
        match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(bytes)) => {
                if let Some(h) = this.hasher.as_mut() {
                    h.update(&bytes);
                }
                Poll::Ready(Some(Ok(bytes)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => match this.hasher.take().map(|h| h.finalize()) {
                Some(sum) if sum.as_ref() != this.expected => {
                    Poll::Ready(Some(Err(UploadError::Sha256Mismatch.into())))
                }
                _ => Poll::Ready(None),
            },
        }
    }
}

impl<S> s3s::stream::ByteStream for Sha256Checked<S>
where
    S: s3s::stream::ByteStream<Item = Result<Bytes, s3s::StdError>> + Unpin,
{
    fn remaining_length(&self) -> s3s::stream::RemainingLength {
        self.inner.remaining_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_region_is_read_from_the_credential_scope() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKIA/20261202/US/s3/aws4_request, SignedHeaders=host, Signature=ab",
            ),
        );
        assert_eq!(signed_region(&h).as_deref(), Some("US"));
    }

    #[test]
    fn a_presigned_url_past_its_expiry_is_refused_and_a_live_one_is_stripped() {
        let now = humantime::parse_rfc3339("2026-12-02T08:00:00Z").unwrap();
        let expired = "X-Amz-Date=20261202T070000Z&X-Amz-Expires=60&X-Amz-Signature=00";
        assert_eq!(
            *check_not_expired(expired, now).unwrap_err().code(),
            S3ErrorCode::AccessDenied
        );
        let live = "X-Amz-Date=20261202T075959Z&X-Amz-Expires=60&X-Amz-Signature=00";
        assert!(check_not_expired(live, now).is_ok());
        for out_of_range in ["609901", "-7", "soon"] {
            let q = format!("X-Amz-Date=20261202T075959Z&X-Amz-Expires={out_of_range}&X-Amz-Signature=00");
            let e = check_not_expired(&q, now).unwrap_err();
            assert_eq!(e.status_code(), Some(http::StatusCode::FORBIDDEN), "{out_of_range}");
        }
        let mut req = Request::builder()
            .uri(format!("/b/k?versionId=3&{live}&X-Amz-Credential=a%2Fb"))
            .body(s3s::Body::empty())
            .unwrap();
        accept_any(&mut req, now).unwrap();
        assert_eq!(req.uri().to_string(), "/b/k?versionId=3");
    }
}
