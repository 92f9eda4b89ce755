//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message, so a
//! proxy removes them before forwarding. Everything else passes untouched; in particular
//! `Host`, `Expect`, `amz-sdk-*` and every signed header.

use http::HeaderMap;
use http::header::{
    CONNECTION, HeaderName, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

pub use crate::s3::{FAULT_HEADER, SCOPE_HEADER};

/// Removes s3chaos's own headers before forwarding, unless the client signed them: a signed
/// header is never touched (removing it would break the signature; the upstream ignores an
/// unknown `x-` header anyway).
pub fn strip_control_headers(headers: &mut HeaderMap, query: Option<&str>) {
    if !headers.contains_key(SCOPE_HEADER) && !headers.contains_key(FAULT_HEADER) {
        return;
    }
    let signed = signed_headers(headers, query.unwrap_or(""));
    for name in [SCOPE_HEADER, FAULT_HEADER] {
        if !signed.iter().any(|s| s.eq_ignore_ascii_case(name.as_str())) {
            headers.remove(name);
        }
    }
}

/// The header names a SigV4 request signed: `SignedHeaders=` in `Authorization`, or a
/// presigned URL's `X-Amz-SignedHeaders`.
fn signed_headers(headers: &HeaderMap, query: &str) -> Vec<String> {
    let from_auth = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("SignedHeaders=").nth(1))
        .map(|rest| rest.split([',', ' ']).next().unwrap_or("").to_owned());
    let list = from_auth.or_else(|| {
        query.split('&').find_map(|pair| {
            let value = pair.strip_prefix("X-Amz-SignedHeaders=")?;
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()
                .map(|v| v.into_owned())
        })
    });
    list.map(|l| l.split(';').map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Removes hop-by-hop headers, including any the `Connection` header names. One pass over
/// the (few) headers finds whether there is anything to do; SDK requests usually have none.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    if let Some(listed) = headers.get(CONNECTION).cloned() {
        // `Connection: keep-alive, x-foo` names further hop-by-hop headers.
        if let Ok(listed) = listed.to_str() {
            for name in listed.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                if let Ok(name) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
                    headers.remove(name);
                }
            }
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_only_hop_by_hop() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("host", "127.0.0.1:9080"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("expect", "100-continue"),
            ("amz-sdk-request", "attempt=1; max=3"),
            ("content-encoding", "aws-chunked"),
            ("x-amz-content-sha256", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(
            left,
            [
                "amz-sdk-request",
                "content-encoding",
                "expect",
                "host",
                "x-amz-content-sha256"
            ]
        );
    }
}

#[cfg(test)]
mod control_tests {
    use super::*;

    #[test]
    fn control_headers_go_unless_signed() {
        let mut h = HeaderMap::new();
        h.insert(SCOPE_HEADER, "job-1".parse().unwrap());
        h.insert(FAULT_HEADER, "SlowDown".parse().unwrap());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=A/1/r/s3/aws4_request, SignedHeaders=host;x-amz-date;x-s3chaos-scope, Signature=f"
                .parse()
                .unwrap(),
        );
        strip_control_headers(&mut h, None);
        assert!(h.contains_key(SCOPE_HEADER), "signed: kept");
        assert!(!h.contains_key(FAULT_HEADER), "unsigned: removed");

        let mut presigned = HeaderMap::new();
        presigned.insert(FAULT_HEADER, "reset".parse().unwrap());
        strip_control_headers(&mut presigned, Some("X-Amz-SignedHeaders=host%3Bx-s3chaos-fault"));
        assert!(presigned.contains_key(FAULT_HEADER));
    }
}
