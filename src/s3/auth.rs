//! What a request says about who signed it and which attempt it is, read without verifying
//! anything: s3chaos never holds secrets, it only matches on what clients send.

use std::borrow::Cow;

use http::HeaderMap;

/// The access key id a request was signed with: from `Authorization: AWS4-HMAC-SHA256
/// Credential=AKIA.../date/region/s3/aws4_request, ...` (or SigV2's `AWS AKIA...:sig`), or a
/// presigned URL's `X-Amz-Credential` (SigV4) / `AWSAccessKeyId` (SigV2).
pub fn access_key<'a>(headers: &'a HeaderMap, query: &'a str) -> Option<Cow<'a, str>> {
    if let Some(auth) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        if let Some(credential) = auth.split("Credential=").nth(1) {
            return credential.split('/').next().map(Cow::Borrowed);
        }
        if let Some(v2) = auth.strip_prefix("AWS ") {
            return v2.split(':').next().map(Cow::Borrowed);
        }
    }
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let value = percent_encoding::percent_decode_str(value).decode_utf8().ok()?;
        match name {
            "X-Amz-Credential" => value.split('/').next().map(|k| Cow::Owned(k.to_owned())),
            "AWSAccessKeyId" => Some(value),
            _ => None,
        }
    })
}

/// The SDK's attempt number from `amz-sdk-request: attempt=N; max=M`.
pub fn attempt(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("amz-sdk-request")?
        .to_str()
        .ok()?
        .split(';')
        .find_map(|part| part.trim().strip_prefix("attempt="))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_key_from_every_signature_form() {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20261125/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab"
                .parse()
                .unwrap(),
        );
        assert_eq!(access_key(&h, "").as_deref(), Some("AKIAEXAMPLE"));
        h.insert("authorization", "AWS AKIAV2:c2ln".parse().unwrap());
        assert_eq!(access_key(&h, "").as_deref(), Some("AKIAV2"));
        let none = HeaderMap::new();
        assert_eq!(
            access_key(&none, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAPRESIGN%2F20261125%2Fus-east-1%2Fs3%2Faws4_request").as_deref(),
            Some("AKIAPRESIGN")
        );
        assert_eq!(
            access_key(&none, "AWSAccessKeyId=AKIAOLD&Expires=1").as_deref(),
            Some("AKIAOLD")
        );
        assert_eq!(access_key(&none, "list-type=2"), None);
        h.insert("amz-sdk-request", "attempt=2; max=3".parse().unwrap());
        assert_eq!(attempt(&h), Some(2));
        assert_eq!(attempt(&none), None);
    }
}
