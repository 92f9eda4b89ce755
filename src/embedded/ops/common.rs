//! What the operations share: finding buckets and versions, conditional requests, and the
//! conversions between S3's request/response shapes and the store's plain records.

use std::time::SystemTime;

use s3s::S3ErrorCode;
use s3s::dto::{ETag, ETagCondition, Timestamp, TimestampFormat};

use crate::embedded::db::{self, BucketRow, VersionRow};
use crate::embedded::error::{StoreError, StoreResult, refuse};
use crate::embedded::meta::{Checksums, ObjectMeta};
use crate::embedded::store::Store;

pub fn no_such_bucket(bucket: &str) -> crate::embedded::error::StoreError {
    refuse(
        S3ErrorCode::NoSuchBucket,
        format!("The specified bucket does not exist: {bucket}"),
    )
}

pub fn no_such_key() -> crate::embedded::error::StoreError {
    refuse(S3ErrorCode::NoSuchKey, "The specified key does not exist.")
}

/// The bucket, or NoSuchBucket.
pub fn need_bucket(conn: &rusqlite::Connection, bucket: &str) -> StoreResult<BucketRow> {
    db::bucket(conn, bucket)?.ok_or_else(|| no_such_bucket(bucket))
}

pub async fn bucket_row(store: &Store, bucket: &str) -> StoreResult<BucketRow> {
    let name = bucket.to_owned();
    store.read(move |c| need_bucket(c, &name)).await
}

/// The version a read names: the latest (NoSuchKey when none or a delete marker), or the
/// one with `version_id` (NoSuchVersion; a delete marker is 405 MethodNotAllowed, as in S3).
pub fn find_version(
    conn: &rusqlite::Connection,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> StoreResult<VersionRow> {
    need_bucket(conn, bucket)?;
    match version_id {
        None => match db::latest(conn, bucket, key)? {
            Some(v) if !v.delete_marker => Ok(v),
            Some(marker) => Err(with_delete_marker(no_such_key(), &marker.version_id)),
            None => Err(no_such_key()),
        },
        Some(id) => match db::version(conn, bucket, key, id)? {
            Some(v) if v.delete_marker => Err(with_delete_marker(
                refuse(
                    S3ErrorCode::MethodNotAllowed,
                    "The specified method is not allowed against this resource.",
                ),
                id,
            )),
            Some(v) => Ok(v),
            None => Err(refuse(
                S3ErrorCode::NoSuchVersion,
                "The specified version does not exist.",
            )),
        },
    }
}

/// S3 marks an answer about a delete marker: `x-amz-delete-marker: true` and the marker's
/// `x-amz-version-id` (HEAD has no body, so clients read the headers).
fn with_delete_marker(e: StoreError, version_id: &str) -> StoreError {
    let StoreError::Refused(mut e) = e else { return e };
    let mut headers = http::HeaderMap::new();
    headers.insert("x-amz-delete-marker", http::HeaderValue::from_static("true"));
    if let Ok(v) = http::HeaderValue::from_str(version_id) {
        headers.insert("x-amz-version-id", v);
    }
    e.set_headers(headers);
    StoreError::Refused(e)
}

pub fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_owned())
}

fn matches(condition: &ETagCondition, current: &str) -> bool {
    match condition {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == current,
    }
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn seconds_of(t: &Timestamp) -> u64 {
    let t: time::OffsetDateTime = t.clone().into();
    t.unix_timestamp().max(0) as u64
}

/// The conditional headers of a GET or HEAD (and of a copy's source).
#[derive(Debug, Default, Clone)]
pub struct ReadConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
    pub if_modified_since: Option<Timestamp>,
    pub if_unmodified_since: Option<Timestamp>,
}

impl ReadConditions {
    /// RFC 9110's order, as S3 applies it: If-Match (else If-Unmodified-Since) → 412;
    /// If-None-Match (else If-Modified-Since) → 304 for reads (412 for a copy's source).
    pub fn check(&self, v: &VersionRow, for_copy: bool) -> StoreResult<()> {
        let modified = whole_seconds(v.modified);
        let failed = || {
            refuse(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        match &self.if_match {
            Some(c) if !matches(c, &v.etag) => return Err(failed()),
            Some(_) => {}
            None => {
                if let Some(t) = &self.if_unmodified_since
                    && modified > seconds_of(t)
                {
                    return Err(failed());
                }
            }
        }
        let not_modified = || {
            if for_copy { failed() } else { not_modified_for(v) }
        };
        match &self.if_none_match {
            Some(c) if matches(c, &v.etag) => return Err(not_modified()),
            Some(_) => {}
            None => {
                if let Some(t) = &self.if_modified_since
                    && modified <= seconds_of(t)
                {
                    return Err(not_modified());
                }
            }
        }
        Ok(())
    }
}

/// 304 Not Modified with the object's ETag and Last-Modified, as S3 sends them (a cache
/// revalidating needs both).
fn not_modified_for(v: &VersionRow) -> StoreError {
    let mut e = s3s::S3Error::with_message(S3ErrorCode::NotModified, "Not Modified");
    let mut headers = http::HeaderMap::new();
    let etag = http::HeaderValue::from_str(&format!("\"{}\"", v.etag));
    let modified = http_date(&timestamp(v.modified)).and_then(|d| http::HeaderValue::from_str(&d).ok());
    if let Ok(etag) = etag {
        headers.insert(http::header::ETAG, etag);
    }
    if let Some(modified) = modified {
        headers.insert(http::header::LAST_MODIFIED, modified);
    }
    e.set_headers(headers);
    StoreError::Refused(e)
}

/// A write's conditions (`If-Match`, `If-None-Match: *` on PUT and CompleteMultipartUpload),
/// checked inside the write transaction so two racing writers cannot both pass.
#[derive(Debug, Default, Clone)]
pub struct WriteConditions {
    pub if_match: Option<ETagCondition>,
    pub if_none_match: Option<ETagCondition>,
}

impl WriteConditions {
    pub fn check(&self, current: Option<&VersionRow>) -> StoreResult<()> {
        let current = current.filter(|v| !v.delete_marker);
        let failed = || {
            refuse(
                S3ErrorCode::PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold",
            )
        };
        if let Some(c) = &self.if_none_match
            && let Some(v) = current
            && matches(c, &v.etag)
        {
            return Err(failed());
        }
        if let Some(c) = &self.if_match {
            match current {
                None => return Err(no_such_key()),
                Some(v) if !matches(c, &v.etag) => return Err(failed()),
                Some(_) => {}
            }
        }
        Ok(())
    }
}

pub fn timestamp(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

pub fn http_date(t: &Timestamp) -> Option<String> {
    let mut out = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut out).ok()?;
    String::from_utf8(out).ok()
}

pub fn parse_http_date(s: &str) -> Option<Timestamp> {
    Timestamp::parse(TimestampFormat::HttpDate, s).ok()
}

/// `k1=v1&k2=v2` (the `x-amz-tagging` header) as tags.
pub fn parse_tagging_header(header: &str) -> StoreResult<Vec<(String, String)>> {
    let mut tags = Vec::new();
    for pair in header.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| refuse(S3ErrorCode::InvalidArgument, "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters without tag name duplicates."))
        };
        tags.push((decode(k)?, decode(v)?));
    }
    check_tags(&tags)?;
    Ok(tags)
}

pub fn check_tags(tags: &[(String, String)]) -> StoreResult<()> {
    if tags.len() > 10 {
        return Err(refuse(S3ErrorCode::InvalidTag, "Object tags cannot be greater than 10"));
    }
    let mut names: Vec<&str> = tags.iter().map(|t| t.0.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(refuse(
            S3ErrorCode::InvalidTag,
            "Cannot provide multiple Tags with the same key",
        ));
    }
    if tags
        .iter()
        .any(|(k, v)| k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256)
    {
        return Err(refuse(
            S3ErrorCode::InvalidTag,
            "The TagKey you have provided is invalid",
        ));
    }
    Ok(())
}

/// A Content-Encoding without `aws-chunked`, which only frames the upload: S3 stores
/// `gzip, aws-chunked` as `gzip`, and `aws-chunked` alone as none.
pub fn without_aws_chunked(encoding: &str) -> Option<String> {
    let kept: Vec<&str> = encoding
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("aws-chunked"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// The content headers and user metadata a PUT, CreateMultipartUpload or copy sets.
#[allow(clippy::too_many_arguments)]
pub fn object_meta(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    website_redirect_location: Option<String>,
    storage_class: Option<String>,
    metadata: Option<std::collections::HashMap<String, String>>,
) -> ObjectMeta {
    ObjectMeta {
        content_type,
        content_encoding: content_encoding.and_then(|e| without_aws_chunked(&e)),
        content_disposition,
        content_language,
        cache_control,
        expires: expires.as_ref().and_then(http_date),
        website_redirect_location,
        storage_class: storage_class.filter(|s| s != "STANDARD"),
        user: metadata
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect(),
        ..ObjectMeta::default()
    }
}

/// Checksums the client declared in headers.
pub fn declared(
    crc32: Option<String>,
    crc32c: Option<String>,
    sha1: Option<String>,
    sha256: Option<String>,
    crc64nvme: Option<String>,
) -> Checksums {
    Checksums {
        crc32,
        crc32c,
        sha1,
        sha256,
        crc64nvme,
        kind: None,
    }
}

/// The version id a response names: none when the bucket never had versioning.
/// The `x-amz-version-id` to answer with: none in a bucket that never had versioning, nor for
/// the `null` version a write makes while versioning is suspended (as S3; ceph's s3-tests
/// check both).
pub fn shown_version(bucket: &BucketRow, version_id: &str) -> Option<String> {
    let shown = match bucket.versioning {
        db::Versioning::Off => false,
        db::Versioning::Enabled => true,
        db::Versioning::Suspended => version_id != "null",
    };
    shown.then(|| version_id.to_owned())
}

/// Encodes a listing's names for `encoding-type=url`: every byte but unreserved characters
/// and '/' as %XX (space as %20 and '+' as %2B, so both unquote and unquote_plus decode it).
pub fn url_encode(s: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    percent_encoding::utf8_percent_encode(s, KEEP).to_string()
}

/// The name as a listing shows it.
pub fn shown(s: &str, url: bool) -> String {
    if url { url_encode(s) } else { s.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::without_aws_chunked;

    #[test]
    fn aws_chunked_is_framing_not_a_stored_encoding() {
        assert_eq!(without_aws_chunked("gzip, aws-chunked").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("aws-chunked,gzip").as_deref(), Some("gzip"));
        assert_eq!(without_aws_chunked("aws-chunked"), None);
        assert_eq!(without_aws_chunked("gzip, br").as_deref(), Some("gzip, br"));
    }
}
