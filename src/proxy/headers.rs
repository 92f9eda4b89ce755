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
