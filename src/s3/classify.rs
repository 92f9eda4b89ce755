//! Turns an HTTP request into the S3 operation, bucket and key it addresses.
//!
//! The rules follow the S3 REST API: first decide path-style or virtual-hosted-style from the
//! `Host` header, then pick the operation from the method, the level addressed (service,
//! bucket or object) and which sub-resource query keys are **present**. The `x-id` query
//! parameter that Smithy SDKs append is ignored: botocore never sends it, so it cannot be the
//! authority. Nothing here allocates unless the bucket or key holds a percent-escape.

use std::borrow::Cow;

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;
use smallvec::SmallVec;

use super::Operation;
use super::Operation as Op;

/// What the fault engine needs to know about one request. Borrowed from the request, so
/// classifying costs no allocation on the common path.
#[derive(Debug, Clone)]
pub struct RequestInfo<'a> {
    pub operation: Operation,
    pub method: &'a Method,
    /// Bucket name, if the request addresses one.
    pub bucket: Option<Cow<'a, str>>,
    /// Object key, percent-decoded, if the request addresses an object.
    pub key: Option<Cow<'a, str>>,
    pub headers: &'a HeaderMap,
    /// The request path as the client sent it, used as `<Resource>` in injected errors.
    pub path: &'a str,
    /// The raw query string (empty when there is none).
    pub query: &'a str,
    /// How long the request's connection was idle before it came: since the previous
    /// request on it ended. `None` for a connection's first request (and where unknown).
    pub idle: Option<std::time::Duration>,
}

/// Classifies requests; holds the base domains that mark virtual-hosted-style requests.
#[derive(Debug, Clone)]
pub struct Classifier {
    /// Lower-case base domains without a leading dot, e.g. `s3.example.com`, `localhost`.
    domains: Vec<String>,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::new(Vec::<String>::new())
    }
}

impl Classifier {
    /// `localhost` is always a base domain: SDKs given `http://localhost:9080` address
    /// `bucket.localhost:9080`.
    pub fn new<I, S>(domains: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut list: Vec<String> = domains
            .into_iter()
            .map(|d| d.as_ref().trim_start_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if !list.iter().any(|d| d == "localhost") {
            list.push("localhost".to_owned());
        }
        Classifier { domains: list }
    }

    pub fn classify<'a>(&self, method: &'a Method, uri: &'a http::Uri, headers: &'a HeaderMap) -> RequestInfo<'a> {
        let path = uri.path();
        let query = Query::parse(uri.query().unwrap_or(""));
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| uri.authority().map(|a| a.as_str()))
            .unwrap_or("");

        let (bucket, key) = match self.virtual_host_bucket(host) {
            Some(bucket) => {
                let key = path.strip_prefix('/').unwrap_or(path);
                (Some(bucket), non_empty(key))
            }
            None => {
                let rest = path.strip_prefix('/').unwrap_or(path);
                match rest.split_once('/') {
                    // `//key` names no bucket, so no key either (found by tests/fuzz).
                    Some(("", _)) => (None, None),
                    Some((bucket, key)) => (Some(bucket), non_empty(key)),
                    None => (non_empty(rest), None),
                }
            }
        };
        let bucket = bucket.map(decode);
        let key = key.map(decode);

        let level = match (&bucket, &key) {
            (None, _) => Level::Service,
            (Some(_), None) => Level::Bucket,
            (Some(_), Some(_)) => Level::Object,
        };
        let operation = operation(method, level, &query, headers);
        RequestInfo {
            operation,
            method,
            bucket,
            key,
            headers,
            path,
            query: uri.query().unwrap_or(""),
            idle: None,
        }
    }

    /// The bucket part of a virtual-hosted-style `Host`, or `None` for path-style.
    fn virtual_host_bucket<'h>(&self, host: &'h str) -> Option<&'h str> {
        let name = strip_port(host);
        if name.starts_with('[') || name.parse::<std::net::Ipv4Addr>().is_ok() {
            return None; // IP hosts are always path-style.
        }
        self.domains.iter().find_map(|domain| {
            let prefix_len = name.len().checked_sub(domain.len() + 1)?;
            let (bucket, rest) = name.split_at(prefix_len);
            (rest.as_bytes()[0] == b'.' && rest[1..].eq_ignore_ascii_case(domain) && !bucket.is_empty())
                .then_some(bucket)
        })
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [::1]:9080
        return host.split_once(']').map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn decode(s: &str) -> Cow<'_, str> {
    if s.contains('%') {
        percent_decode_str(s).decode_utf8_lossy()
    } else {
        Cow::Borrowed(s)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Service,
    Bucket,
    Object,
}

/// The query's keys, split once; answers "is this key present" without allocating for up to
/// eight keys (S3 requests rarely have more than four).
struct Query<'a> {
    keys: SmallVec<[&'a str; 8]>,
    list_type_2: bool,
}

impl<'a> Query<'a> {
    fn parse(query: &'a str) -> Query<'a> {
        let mut keys = SmallVec::new();
        let mut list_type_2 = false;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            list_type_2 |= key == "list-type" && value == "2";
            keys.push(key);
        }
        Query { keys, list_type_2 }
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    fn has(&self, key: &str) -> bool {
        self.keys.contains(&key)
    }
}

/// Bucket sub-resources: query key, then the operation for GET, PUT and DELETE. A sub-resource
/// with an `id` (analytics, inventory, metrics, intelligent-tiering) lists on a GET without one.
struct SubResource {
    key: &'static str,
    get: Option<Operation>,
    list: Option<Operation>,
    put: Option<Operation>,
    delete: Option<Operation>,
}

const fn sub(key: &'static str, get: Option<Op>, put: Option<Op>, delete: Option<Op>) -> SubResource {
    SubResource {
        key,
        get,
        list: None,
        put,
        delete,
    }
}

const fn sub_with_id(key: &'static str, get: Op, list: Op, put: Op, delete: Op) -> SubResource {
    SubResource {
        key,
        get: Some(get),
        list: Some(list),
        put: Some(put),
        delete: Some(delete),
    }
}

const BUCKET_SUBRESOURCES: &[SubResource] = &[
    sub(
        "accelerate",
        Some(Op::GetBucketAccelerateConfiguration),
        Some(Op::PutBucketAccelerateConfiguration),
        None,
    ),
    sub("acl", Some(Op::GetBucketAcl), Some(Op::PutBucketAcl), None),
    sub_with_id(
        "analytics",
        Op::GetBucketAnalyticsConfiguration,
        Op::ListBucketAnalyticsConfigurations,
        Op::PutBucketAnalyticsConfiguration,
        Op::DeleteBucketAnalyticsConfiguration,
    ),
    sub(
        "cors",
        Some(Op::GetBucketCors),
        Some(Op::PutBucketCors),
        Some(Op::DeleteBucketCors),
    ),
    sub(
        "encryption",
        Some(Op::GetBucketEncryption),
        Some(Op::PutBucketEncryption),
        Some(Op::DeleteBucketEncryption),
    ),
    sub_with_id(
        "intelligent-tiering",
        Op::GetBucketIntelligentTieringConfiguration,
        Op::ListBucketIntelligentTieringConfigurations,
        Op::PutBucketIntelligentTieringConfiguration,
        Op::DeleteBucketIntelligentTieringConfiguration,
    ),
    sub_with_id(
        "inventory",
        Op::GetBucketInventoryConfiguration,
        Op::ListBucketInventoryConfigurations,
        Op::PutBucketInventoryConfiguration,
        Op::DeleteBucketInventoryConfiguration,
    ),
    sub(
        "lifecycle",
        Some(Op::GetBucketLifecycleConfiguration),
        Some(Op::PutBucketLifecycleConfiguration),
        Some(Op::DeleteBucketLifecycle),
    ),
    sub("location", Some(Op::GetBucketLocation), None, None),
    sub("logging", Some(Op::GetBucketLogging), Some(Op::PutBucketLogging), None),
    sub_with_id(
        "metrics",
        Op::GetBucketMetricsConfiguration,
        Op::ListBucketMetricsConfigurations,
        Op::PutBucketMetricsConfiguration,
        Op::DeleteBucketMetricsConfiguration,
    ),
    sub(
        "notification",
        Some(Op::GetBucketNotificationConfiguration),
        Some(Op::PutBucketNotificationConfiguration),
        None,
    ),
    sub(
        "object-lock",
        Some(Op::GetObjectLockConfiguration),
        Some(Op::PutObjectLockConfiguration),
        None,
    ),
    sub(
        "ownershipControls",
        Some(Op::GetBucketOwnershipControls),
        Some(Op::PutBucketOwnershipControls),
        Some(Op::DeleteBucketOwnershipControls),
    ),
    sub(
        "policy",
        Some(Op::GetBucketPolicy),
        Some(Op::PutBucketPolicy),
        Some(Op::DeleteBucketPolicy),
    ),
    sub("policyStatus", Some(Op::GetBucketPolicyStatus), None, None),
    sub(
        "publicAccessBlock",
        Some(Op::GetPublicAccessBlock),
        Some(Op::PutPublicAccessBlock),
        Some(Op::DeletePublicAccessBlock),
    ),
    sub(
        "replication",
        Some(Op::GetBucketReplication),
        Some(Op::PutBucketReplication),
        Some(Op::DeleteBucketReplication),
    ),
    sub(
        "requestPayment",
        Some(Op::GetBucketRequestPayment),
        Some(Op::PutBucketRequestPayment),
        None,
    ),
    sub(
        "tagging",
        Some(Op::GetBucketTagging),
        Some(Op::PutBucketTagging),
        Some(Op::DeleteBucketTagging),
    ),
    sub(
        "versioning",
        Some(Op::GetBucketVersioning),
        Some(Op::PutBucketVersioning),
        None,
    ),
    sub(
        "website",
        Some(Op::GetBucketWebsite),
        Some(Op::PutBucketWebsite),
        Some(Op::DeleteBucketWebsite),
    ),
];

fn operation(method: &Method, level: Level, q: &Query<'_>, headers: &HeaderMap) -> Operation {
    match level {
        Level::Service => match *method {
            Method::GET => Op::ListBuckets,
            _ => Op::Unknown,
        },
        Level::Bucket => bucket_operation(method, q, headers),
        Level::Object => object_operation(method, q, headers),
    }
}

fn bucket_operation(method: &Method, q: &Query<'_>, headers: &HeaderMap) -> Operation {
    if q.is_empty() {
        return match *method {
            Method::GET => Op::ListObjects,
            Method::PUT => Op::CreateBucket,
            Method::DELETE => Op::DeleteBucket,
            Method::HEAD => Op::HeadBucket,
            Method::POST if is_form_upload(headers) => Op::PostObject,
            _ => Op::Unknown,
        };
    }
    let sub = BUCKET_SUBRESOURCES.iter().find(|s| q.has(s.key));
    match *method {
        Method::HEAD => Op::HeadBucket,
        Method::GET => match sub {
            Some(s) if s.list.is_some() && !q.has("id") => s.list.unwrap_or(Op::Unknown),
            Some(s) => s.get.unwrap_or(Op::Unknown),
            None if q.has("uploads") => Op::ListMultipartUploads,
            None if q.has("versions") => Op::ListObjectVersions,
            None if q.list_type_2 => Op::ListObjectsV2,
            None => Op::ListObjects,
        },
        Method::PUT => match sub {
            Some(s) => s.put.unwrap_or(Op::Unknown),
            None => Op::CreateBucket,
        },
        Method::DELETE => match sub {
            Some(s) => s.delete.unwrap_or(Op::Unknown),
            None => Op::DeleteBucket,
        },
        Method::POST if q.has("delete") => Op::DeleteObjects,
        Method::POST if is_form_upload(headers) => Op::PostObject,
        _ => Op::Unknown,
    }
}

fn object_operation(method: &Method, q: &Query<'_>, headers: &HeaderMap) -> Operation {
    let copy = headers.contains_key("x-amz-copy-source");
    match *method {
        Method::HEAD => Op::HeadObject,
        Method::GET if q.is_empty() => Op::GetObject,
        Method::GET => {
            const GET_SUBS: &[(&str, Operation)] = &[
                ("acl", Op::GetObjectAcl),
                ("attributes", Op::GetObjectAttributes),
                ("legal-hold", Op::GetObjectLegalHold),
                ("retention", Op::GetObjectRetention),
                ("tagging", Op::GetObjectTagging),
                ("torrent", Op::GetObjectTorrent),
                ("uploadId", Op::ListParts),
            ];
            first_present(q, GET_SUBS).unwrap_or(Op::GetObject)
        }
        Method::PUT => {
            const PUT_SUBS: &[(&str, Operation)] = &[
                ("acl", Op::PutObjectAcl),
                ("legal-hold", Op::PutObjectLegalHold),
                ("retention", Op::PutObjectRetention),
                ("tagging", Op::PutObjectTagging),
            ];
            if let Some(op) = first_present(q, PUT_SUBS) {
                op
            } else if q.has("partNumber") && q.has("uploadId") {
                if copy { Op::UploadPartCopy } else { Op::UploadPart }
            } else if copy {
                Op::CopyObject
            } else {
                Op::PutObject
            }
        }
        Method::POST => {
            const POST_SUBS: &[(&str, Operation)] = &[
                ("uploads", Op::CreateMultipartUpload),
                ("uploadId", Op::CompleteMultipartUpload),
                ("restore", Op::RestoreObject),
                ("select", Op::SelectObjectContent),
            ];
            first_present(q, POST_SUBS).unwrap_or(Op::Unknown)
        }
        Method::DELETE => {
            const DELETE_SUBS: &[(&str, Operation)] = &[
                ("tagging", Op::DeleteObjectTagging),
                ("uploadId", Op::AbortMultipartUpload),
            ];
            first_present(q, DELETE_SUBS).unwrap_or(Op::DeleteObject)
        }
        _ => Op::Unknown,
    }
}

fn first_present(q: &Query<'_>, table: &[(&str, Operation)]) -> Option<Operation> {
    if q.is_empty() {
        return None;
    }
    table.iter().find(|(key, _)| q.has(key)).map(|(_, op)| *op)
}

fn is_form_upload(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("multipart/form-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        method: &'static str,
        host: &'static str,
        target: &'static str,
        headers: &'static [(&'static str, &'static str)],
        op: Operation,
        bucket: Option<&'static str>,
        key: Option<&'static str>,
    }

    const fn c(method: &'static str, host: &'static str, target: &'static str, op: Operation) -> Case {
        Case {
            method,
            host,
            target,
            headers: &[],
            op,
            bucket: None,
            key: None,
        }
    }

    impl Case {
        const fn at(mut self, bucket: &'static str, key: Option<&'static str>) -> Case {
            self.bucket = Some(bucket);
            self.key = key;
            self
        }
        const fn with(mut self, headers: &'static [(&'static str, &'static str)]) -> Case {
            self.headers = headers;
            self
        }
    }

    /// Requests as SDKs really send them (paths and queries taken from aws-sdk-rust, botocore
    /// and AWS CLI captures), path-style against an IP and virtual-hosted against a domain.
    fn table() -> Vec<Case> {
        const IP: &str = "127.0.0.1:9080";
        const COPY: &[(&str, &str)] = &[("x-amz-copy-source", "/src/a.txt")];
        vec![
            c("GET", IP, "/", Op::ListBuckets),
            c("GET", IP, "/?x-id=ListBuckets", Op::ListBuckets),
            c("PUT", IP, "/photos", Op::CreateBucket).at("photos", None),
            c("HEAD", IP, "/photos", Op::HeadBucket).at("photos", None),
            c("DELETE", IP, "/photos", Op::DeleteBucket).at("photos", None),
            c("GET", IP, "/photos?list-type=2&prefix=thumbs%2F", Op::ListObjectsV2).at("photos", None),
            c("GET", IP, "/photos/?list-type=2", Op::ListObjectsV2).at("photos", None),
            c("GET", IP, "/photos?prefix=a&delimiter=%2F", Op::ListObjects).at("photos", None),
            c("GET", IP, "/photos?versions", Op::ListObjectVersions).at("photos", None),
            c("GET", IP, "/photos?uploads", Op::ListMultipartUploads).at("photos", None),
            c("GET", IP, "/photos?location", Op::GetBucketLocation).at("photos", None),
            c("GET", IP, "/photos?versioning", Op::GetBucketVersioning).at("photos", None),
            c("PUT", IP, "/photos?versioning", Op::PutBucketVersioning).at("photos", None),
            c("GET", IP, "/photos?tagging", Op::GetBucketTagging).at("photos", None),
            c("DELETE", IP, "/photos?tagging", Op::DeleteBucketTagging).at("photos", None),
            c("PUT", IP, "/photos?acl", Op::PutBucketAcl).at("photos", None),
            c("GET", IP, "/photos?lifecycle", Op::GetBucketLifecycleConfiguration).at("photos", None),
            c("DELETE", IP, "/photos?lifecycle", Op::DeleteBucketLifecycle).at("photos", None),
            c("GET", IP, "/photos?inventory", Op::ListBucketInventoryConfigurations).at("photos", None),
            c(
                "GET",
                IP,
                "/photos?inventory&id=daily",
                Op::GetBucketInventoryConfiguration,
            )
            .at("photos", None),
            c("GET", IP, "/photos?object-lock", Op::GetObjectLockConfiguration).at("photos", None),
            c("POST", IP, "/photos?delete", Op::DeleteObjects).at("photos", None),
            c("POST", IP, "/photos?delete&x-id=DeleteObjects", Op::DeleteObjects).at("photos", None),
            c("POST", IP, "/photos", Op::PostObject)
                .at("photos", None)
                .with(&[("content-type", "multipart/form-data; boundary=xyz")]),
            c("GET", IP, "/photos/thumbs/a.jpg", Op::GetObject).at("photos", Some("thumbs/a.jpg")),
            c("GET", IP, "/photos/thumbs/a.jpg?x-id=GetObject", Op::GetObject).at("photos", Some("thumbs/a.jpg")),
            c("GET", IP, "/photos/a%20b%2Bc.txt", Op::GetObject).at("photos", Some("a b+c.txt")),
            c("GET", IP, "/photos/caf%C3%A9/%E2%9C%93", Op::GetObject).at("photos", Some("café/✓")),
            c("HEAD", IP, "/photos/a.jpg", Op::HeadObject).at("photos", Some("a.jpg")),
            c("PUT", IP, "/photos/a.jpg?x-id=PutObject", Op::PutObject).at("photos", Some("a.jpg")),
            c("PUT", IP, "/photos/a.jpg", Op::CopyObject)
                .at("photos", Some("a.jpg"))
                .with(COPY),
            c("DELETE", IP, "/photos/a.jpg?x-id=DeleteObject", Op::DeleteObject).at("photos", Some("a.jpg")),
            c("GET", IP, "/photos/a.jpg?tagging", Op::GetObjectTagging).at("photos", Some("a.jpg")),
            c("PUT", IP, "/photos/a.jpg?tagging", Op::PutObjectTagging).at("photos", Some("a.jpg")),
            c("DELETE", IP, "/photos/a.jpg?tagging", Op::DeleteObjectTagging).at("photos", Some("a.jpg")),
            c("GET", IP, "/photos/a.jpg?acl", Op::GetObjectAcl).at("photos", Some("a.jpg")),
            c("GET", IP, "/photos/a.jpg?attributes", Op::GetObjectAttributes).at("photos", Some("a.jpg")),
            c("POST", IP, "/photos/big.bin?uploads", Op::CreateMultipartUpload).at("photos", Some("big.bin")),
            c(
                "POST",
                IP,
                "/photos/big.bin?uploads&x-id=CreateMultipartUpload",
                Op::CreateMultipartUpload,
            )
            .at("photos", Some("big.bin")),
            c(
                "PUT",
                IP,
                "/photos/big.bin?partNumber=2&uploadId=abc&x-id=UploadPart",
                Op::UploadPart,
            )
            .at("photos", Some("big.bin")),
            c(
                "PUT",
                IP,
                "/photos/big.bin?partNumber=1&uploadId=abc",
                Op::UploadPartCopy,
            )
            .at("photos", Some("big.bin"))
            .with(COPY),
            c("GET", IP, "/photos/big.bin?uploadId=abc", Op::ListParts).at("photos", Some("big.bin")),
            c("POST", IP, "/photos/big.bin?uploadId=abc", Op::CompleteMultipartUpload).at("photos", Some("big.bin")),
            c(
                "DELETE",
                IP,
                "/photos/big.bin?uploadId=abc&x-id=AbortMultipartUpload",
                Op::AbortMultipartUpload,
            )
            .at("photos", Some("big.bin")),
            c("POST", IP, "/photos/a.jpg?restore", Op::RestoreObject).at("photos", Some("a.jpg")),
            c(
                "POST",
                IP,
                "/photos/a.csv?select&select-type=2",
                Op::SelectObjectContent,
            )
            .at("photos", Some("a.csv")),
            c("PATCH", IP, "/photos/a.jpg", Op::Unknown).at("photos", Some("a.jpg")),
            // x-id is a hint only: the method and sub-resource decide.
            c("GET", IP, "/photos/a.jpg?x-id=PutObject", Op::GetObject).at("photos", Some("a.jpg")),
            // Virtual-hosted style: localhost is a base domain by default, s3.example.com configured.
            c("GET", "photos.localhost:9080", "/thumbs/a.jpg", Op::GetObject).at("photos", Some("thumbs/a.jpg")),
            c("GET", "photos.localhost:9080", "/?list-type=2", Op::ListObjectsV2).at("photos", None),
            c("PUT", "my.dotted.bucket.s3.example.com", "/k", Op::PutObject).at("my.dotted.bucket", Some("k")),
            c("HEAD", "photos.S3.Example.com", "/", Op::HeadBucket).at("photos", None),
            // The base domain itself and IPs are path-style.
            c("GET", "s3.example.com", "/photos/a", Op::GetObject).at("photos", Some("a")),
            c("GET", "localhost:9080", "/photos/a", Op::GetObject).at("photos", Some("a")),
            c("GET", "[::1]:9080", "/photos/a", Op::GetObject).at("photos", Some("a")),
            c("GET", "10.0.0.5", "/", Op::ListBuckets),
            // An unconfigured domain is path-style.
            c("GET", "minio.internal:9000", "/photos/a", Op::GetObject).at("photos", Some("a")),
        ]
    }

    #[test]
    fn classifies_real_requests() {
        let classifier = Classifier::new(["s3.example.com"]);
        for case in table() {
            let method: Method = case.method.parse().unwrap();
            let uri: http::Uri = case.target.parse().unwrap();
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, case.host.parse().unwrap());
            for (k, v) in case.headers {
                headers.insert(*k, v.parse().unwrap());
            }
            let info = classifier.classify(&method, &uri, &headers);
            let what = format!("{} {} {}", case.method, case.host, case.target);
            assert_eq!(info.operation, case.op, "operation of {what}");
            assert_eq!(info.bucket.as_deref(), case.bucket, "bucket of {what}");
            assert_eq!(info.key.as_deref(), case.key, "key of {what}");
        }
    }

    #[test]
    fn every_subresource_maps_to_distinct_operations() {
        for s in BUCKET_SUBRESOURCES {
            let ops: Vec<_> = [s.get, s.list, s.put, s.delete].into_iter().flatten().collect();
            assert!(!ops.is_empty(), "{} maps to nothing", s.key);
            for op in &ops {
                assert_ne!(*op, Op::Unknown);
            }
        }
    }
}
