//! Object operations: PUT, GET, HEAD, DELETE (one and many), copy, tagging.

use std::collections::HashMap;
use std::time::SystemTime;

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response};

use super::common::*;
use crate::embedded::aws_chunked::TrailerSlot;
use crate::embedded::blobs::{self, ObjectBody};
use crate::embedded::db::{self, NewVersion, Segment, VersionRow, Versioning};
use crate::embedded::error::{StoreError, StoreResult, refuse};
use crate::embedded::meta::{Checksums, ObjectMeta};
use crate::embedded::store::Store;
use crate::embedded::upload::{self, Wanted};

/// Where a streamed body's trailers will be: s3s's handle (signature-checked, fixed
/// credentials) or our decoder's slot (any credentials).
#[derive(Clone, Default)]
pub struct Trailers {
    s3s: Option<s3s::TrailingHeaders>,
    ours: Option<TrailerSlot>,
}

impl Trailers {
    pub fn of<T>(req: &S3Request<T>) -> Trailers {
        Trailers {
            s3s: req.trailing_headers.clone(),
            ours: req.extensions.get::<TrailerSlot>().cloned(),
        }
    }

    /// The trailers, once the body has been read to its end.
    pub fn take(&self) -> Option<http::HeaderMap> {
        self.s3s
            .as_ref()
            .and_then(|t| t.take())
            .or_else(|| self.ours.as_ref().and_then(TrailerSlot::take))
    }
}

/// Merges what headers declared with what trailers declared.
pub fn declared_with_trailers(mut declared: Checksums, trailers: Option<&http::HeaderMap>) -> Checksums {
    if let Some(t) = trailers {
        let more = upload::checksums_in(t);
        declared.crc32 = declared.crc32.or(more.crc32);
        declared.crc32c = declared.crc32c.or(more.crc32c);
        declared.sha1 = declared.sha1.or(more.sha1);
        declared.sha256 = declared.sha256.or(more.sha256);
        declared.crc64nvme = declared.crc64nvme.or(more.crc64nvme);
    }
    declared
}

/// The checksums to compute: declared ones, the named algorithm, and those the `x-amz-trailer`
/// header announces.
pub fn wanted_for(declared: &Checksums, algorithm: Option<&str>, headers: &http::HeaderMap) -> StoreResult<Wanted> {
    let mut wanted = Wanted::declared(declared);
    if let Some(a) = algorithm {
        wanted.add(a)?;
    }
    if let Some(t) = headers.get("x-amz-trailer").and_then(|v| v.to_str().ok()) {
        for name in t.split(',') {
            if let Some(a) = name.trim().strip_prefix("x-amz-checksum-") {
                wanted.add(a)?;
            }
        }
    }
    Ok(wanted)
}

/// Keeps only the checksums that were asked for or declared (S3 stores one algorithm).
fn kept_checksums(computed: Checksums, declared: &Checksums, algorithm: Option<&str>) -> Checksums {
    let named = |n: &str, d: &Option<String>| d.is_some() || algorithm.is_some_and(|a| a.eq_ignore_ascii_case(n));
    Checksums {
        crc32: computed.crc32.filter(|_| named("CRC32", &declared.crc32)),
        crc32c: computed.crc32c.filter(|_| named("CRC32C", &declared.crc32c)),
        sha1: computed.sha1.filter(|_| named("SHA1", &declared.sha1)),
        sha256: computed.sha256.filter(|_| named("SHA256", &declared.sha256)),
        crc64nvme: computed.crc64nvme.filter(|_| named("CRC64NVME", &declared.crc64nvme)),
        kind: Some("FULL_OBJECT".into()),
    }
    .normalized()
}

impl Checksums {
    fn normalized(mut self) -> Checksums {
        if self.algorithm().is_none() {
            self.kind = None;
        }
        self
    }
}

/// Commits a received blob as the new latest version of `key`, checking `conditions` in the
/// same transaction. Returns the version id and the bucket.
async fn commit_version(
    store: &Store,
    bucket: String,
    key: String,
    new: NewVersion,
    conditions: WriteConditions,
) -> StoreResult<(String, db::BucketRow)> {
    let now = SystemTime::now();
    let blobs_of_new: Vec<String> = new.segments.iter().map(|s| s.blob.clone()).collect();
    let result = store
        .write(move |tx| {
            let b = need_bucket(tx, &bucket)?;
            conditions.check(db::latest(tx, &bucket, &key)?.as_ref())?;
            let (version_id, retired) = db::insert_version(tx, &b, &key, false, &new, now)?;
            Ok((version_id, b, retired))
        })
        .await;
    match result {
        Ok((version_id, b, retired)) => {
            store.blobs.retire(retired);
            Ok((version_id, b))
        }
        Err(e) => {
            store.blobs.retire(blobs_of_new);
            Err(e)
        }
    }
}

pub async fn put_object(store: &Store, req: S3Request<PutObjectInput>) -> StoreResult<S3Response<PutObjectOutput>> {
    let headers = req.headers.clone();
    let trailer_handle = Trailers::of(&req);
    let input = req.input;
    let algorithm = input.checksum_algorithm.as_ref().map(|a| a.as_str().to_owned());
    let declared_headers = declared(
        input.checksum_crc32.clone(),
        input.checksum_crc32c.clone(),
        input.checksum_sha1.clone(),
        input.checksum_sha256.clone(),
        input.checksum_crc64nvme.clone(),
    );
    let wanted = wanted_for(&declared_headers, algorithm.as_deref(), &headers)?;
    let conditions = WriteConditions {
        if_match: input.if_match.clone(),
        if_none_match: input.if_none_match.clone(),
    };
    // Fail fast (before reading the body) on a missing bucket or a condition that fails now;
    // checked again at commit.
    {
        let (bucket, key, conditions) = (input.bucket.clone(), input.key.clone(), conditions.clone());
        store
            .read(move |c| {
                need_bucket(c, &bucket)?;
                conditions.check(db::latest(c, &bucket, &key)?.as_ref())
            })
            .await?;
    }
    let mut meta = object_meta(
        input.content_type.clone(),
        input.content_encoding.clone(),
        input.content_disposition.clone(),
        input.content_language.clone(),
        input.cache_control.clone(),
        input.expires.clone(),
        input.website_redirect_location.clone(),
        input.storage_class.as_ref().map(|s| s.as_str().to_owned()),
        input.metadata.clone(),
    );
    if let Some(t) = &input.tagging {
        meta.tags = parse_tagging_header(t)?;
    }
    let received = upload::receive(&store.blobs, input.body, input.content_length, wanted).await?;
    upload::check_content_md5(&received, input.content_md5.as_deref())?;
    let trailers = trailer_handle.take();
    let declared_all = declared_with_trailers(declared_headers, trailers.as_ref());
    upload::check_checksums(&received.checksums, &declared_all)?;
    meta.checksums = kept_checksums(received.checksums.clone(), &declared_all, algorithm.as_deref());
    let etag_value = received.md5_hex();
    let size = received.size;
    let segments = if size == 0 {
        Vec::new()
    } else {
        let temp = received.temp;
        let blob = store
            .blocking(move |s| s.blobs.commit(temp).map_err(StoreError::io("storing an object file")))
            .await?;
        vec![Segment { blob, len: size }]
    };
    let checksums = meta.checksums.clone();
    let new = NewVersion {
        size,
        etag: etag_value.clone(),
        meta,
        segments,
    };
    let (version_id, bucket) = commit_version(store, input.bucket, input.key, new, conditions).await?;
    Ok(S3Response::new(PutObjectOutput {
        e_tag: Some(etag(&etag_value)),
        version_id: shown_version(&bucket, &version_id),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_type: checksums.kind.map(ChecksumType::from),
        ..Default::default()
    }))
}

/// What GET and HEAD answer about a version, without the body.
struct Shown {
    version: VersionRow,
    bucket: db::BucketRow,
    range: Option<std::ops::Range<u64>>,
    part: Option<(u32, std::ops::Range<u64>)>,
}

fn part_range(v: &VersionRow, number: i32) -> StoreResult<std::ops::Range<u64>> {
    let invalid = || {
        crate::embedded::error::refuse_custom(
            "InvalidPartNumber",
            http::StatusCode::RANGE_NOT_SATISFIABLE,
            "The requested partnumber is not satisfiable",
        )
    };
    if number < 1 {
        return Err(refuse(
            S3ErrorCode::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        ));
    }
    if v.meta.parts.is_empty() {
        // A simple object is one part.
        return if number == 1 { Ok(0..v.size) } else { Err(invalid()) };
    }
    let i = (number - 1) as usize;
    let sizes = &v.meta.parts;
    if i >= sizes.len() {
        return Err(invalid());
    }
    let start: u64 = sizes[..i].iter().sum();
    Ok(start..start + sizes[i])
}

fn locate(
    conn: &rusqlite::Connection,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    conditions: &ReadConditions,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> StoreResult<Shown> {
    let version = find_version(conn, bucket, key, version_id)?;
    let b = need_bucket(conn, bucket)?;
    conditions.check(&version, false)?;
    let mut shown = Shown {
        version,
        bucket: b,
        range: None,
        part: None,
    };
    if let Some(n) = part_number {
        let r = part_range(&shown.version, n)?;
        shown.part = Some((n as u32, r));
    } else if let Some(r) = range {
        match r.check(shown.version.size) {
            Ok(r) => shown.range = Some(r),
            Err(_) => {
                return Err(refuse(
                    S3ErrorCode::InvalidRange,
                    "The requested range is not satisfiable",
                ));
            }
        }
    }
    Ok(shown)
}

/// Reads the record and opens the body; if an overwrite retired the blobs in between, reads
/// the (new) record again rather than answer anything but the object.
fn locate_and_open(
    store: &Store,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
    conditions: &ReadConditions,
    range: Option<&Range>,
    part_number: Option<i32>,
) -> StoreResult<(Shown, ObjectBody)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let shown = store
            .db
            .read(|c| locate(c, bucket, key, version_id, conditions, range, part_number))?;
        let segments = store.db.read(|c| db::segments(c, shown.version.row))?;
        let span = shown
            .part
            .as_ref()
            .map(|p| p.1.clone())
            .or_else(|| shown.range.clone())
            .unwrap_or(0..shown.version.size);
        match blobs::open_range(&store.blobs, &segments, span) {
            Ok(body) => return Ok((shown, body)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 4 => continue,
            Err(e) => return Err(StoreError::io("opening an object file")(e)),
        }
    }
}

fn content_range(shown: &Shown) -> Option<String> {
    let size = shown.version.size;
    let r = shown.part.as_ref().map(|p| &p.1).or(shown.range.as_ref())?;
    if shown.part.is_some() && shown.version.meta.parts.is_empty() {
        return None;
    }
    Some(if r.is_empty() {
        format!("bytes */{size}")
    } else {
        format!("bytes {}-{}/{size}", r.start, r.end - 1)
    })
}

fn with_checksums(m: &ObjectMeta, mode: Option<&ChecksumMode>, whole: bool) -> Checksums {
    if whole && mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case("ENABLED")) {
        m.checksums.clone()
    } else {
        Checksums::default()
    }
}

pub async fn get_object(store: &Store, req: S3Request<GetObjectInput>) -> StoreResult<S3Response<GetObjectOutput>> {
    let input = req.input;
    let conditions = ReadConditions {
        if_match: input.if_match.clone(),
        if_none_match: input.if_none_match.clone(),
        if_modified_since: input.if_modified_since.clone(),
        if_unmodified_since: input.if_unmodified_since.clone(),
    };
    let (bucket, key, version_id, range, part) = (
        input.bucket.clone(),
        input.key.clone(),
        input.version_id.clone(),
        input.range,
        input.part_number,
    );
    let (shown, body) = store
        .blocking(move |s| {
            locate_and_open(
                s,
                &bucket,
                &key,
                version_id.as_deref(),
                &conditions,
                range.as_ref(),
                part,
            )
        })
        .await?;
    let v = &shown.version;
    let length = shown
        .part
        .as_ref()
        .map(|p| p.1.end - p.1.start)
        .or_else(|| shown.range.as_ref().map(|r| r.end - r.start))
        .unwrap_or(v.size);
    let whole = shown.range.is_none() && (shown.part.is_none() || v.meta.parts.is_empty());
    let sums = with_checksums(&v.meta, input.checksum_mode.as_ref(), whole);
    let m = &v.meta;
    let output = GetObjectOutput {
        body: Some(StreamingBlob::wrap(body)),
        content_length: Some(length as i64),
        content_range: content_range(&shown),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag(&v.etag)),
        last_modified: Some(timestamp(v.modified)),
        version_id: shown_version(&shown.bucket, &v.version_id),
        metadata: (!m.user.is_empty()).then(|| m.user.clone().into_iter().collect::<HashMap<_, _>>()),
        content_type: input
            .response_content_type
            .or_else(|| m.content_type.clone())
            .or_else(|| Some("binary/octet-stream".into())),
        content_encoding: input.response_content_encoding.or_else(|| m.content_encoding.clone()),
        content_disposition: input
            .response_content_disposition
            .or_else(|| m.content_disposition.clone()),
        content_language: input.response_content_language.or_else(|| m.content_language.clone()),
        cache_control: input.response_cache_control.or_else(|| m.cache_control.clone()),
        expires: input
            .response_expires
            .or_else(|| m.expires.as_deref().and_then(parse_http_date)),
        website_redirect_location: m.website_redirect_location.clone(),
        storage_class: m.storage_class.clone().map(StorageClass::from),
        tag_count: (!m.tags.is_empty()).then_some(m.tags.len() as i32),
        parts_count: shown.part.as_ref().and(if m.parts.is_empty() {
            None
        } else {
            Some(m.parts.len() as i32)
        }),
        checksum_type: sums.kind.clone().map(ChecksumType::from),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        ..Default::default()
    };
    let mut response = S3Response::new(output);
    if shown.range.is_some() || (shown.part.is_some() && !v.meta.parts.is_empty()) {
        response.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(response)
}

pub async fn head_object(store: &Store, req: S3Request<HeadObjectInput>) -> StoreResult<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let conditions = ReadConditions {
        if_match: input.if_match.clone(),
        if_none_match: input.if_none_match.clone(),
        if_modified_since: input.if_modified_since.clone(),
        if_unmodified_since: input.if_unmodified_since.clone(),
    };
    let (bucket, key, version_id, range, part) = (
        input.bucket.clone(),
        input.key.clone(),
        input.version_id.clone(),
        input.range,
        input.part_number,
    );
    let shown = store
        .read(move |c| {
            locate(
                c,
                &bucket,
                &key,
                version_id.as_deref(),
                &conditions,
                range.as_ref(),
                part,
            )
        })
        .await?;
    let v = &shown.version;
    let m = &v.meta;
    let length = shown
        .part
        .as_ref()
        .map(|p| p.1.end - p.1.start)
        .or_else(|| shown.range.as_ref().map(|r| r.end - r.start))
        .unwrap_or(v.size);
    let whole = shown.range.is_none() && (shown.part.is_none() || m.parts.is_empty());
    let sums = with_checksums(m, input.checksum_mode.as_ref(), whole);
    let output = HeadObjectOutput {
        content_length: Some(length as i64),
        content_range: content_range(&shown),
        accept_ranges: Some("bytes".into()),
        e_tag: Some(etag(&v.etag)),
        last_modified: Some(timestamp(v.modified)),
        version_id: shown_version(&shown.bucket, &v.version_id),
        metadata: (!m.user.is_empty()).then(|| m.user.clone().into_iter().collect::<HashMap<_, _>>()),
        content_type: input
            .response_content_type
            .or_else(|| m.content_type.clone())
            .or_else(|| Some("binary/octet-stream".into())),
        content_encoding: m.content_encoding.clone(),
        content_disposition: m.content_disposition.clone(),
        content_language: m.content_language.clone(),
        cache_control: m.cache_control.clone(),
        expires: m.expires.as_deref().and_then(parse_http_date),
        website_redirect_location: m.website_redirect_location.clone(),
        storage_class: m.storage_class.clone().map(StorageClass::from),
        parts_count: shown.part.as_ref().and(if m.parts.is_empty() {
            None
        } else {
            Some(m.parts.len() as i32)
        }),
        checksum_type: sums.kind.clone().map(ChecksumType::from),
        checksum_crc32: sums.crc32,
        checksum_crc32c: sums.crc32c,
        checksum_sha1: sums.sha1,
        checksum_sha256: sums.sha256,
        checksum_crc64nvme: sums.crc64nvme,
        ..Default::default()
    };
    let mut response = S3Response::new(output);
    if shown.range.is_some() || (shown.part.is_some() && !m.parts.is_empty()) {
        response.status = Some(http::StatusCode::PARTIAL_CONTENT);
    }
    Ok(response)
}

/// What deleting one key (or one version) did.
#[derive(Debug, Default)]
pub struct Deleted {
    pub delete_marker: bool,
    pub version_id: Option<String>,
}

/// DELETE semantics by versioning state: off → the object goes; enabled → a delete marker is
/// added; suspended → the `null` version goes and a `null` delete marker is added; with a
/// version id → that version goes for good.
pub async fn delete_one(
    store: &Store,
    bucket: String,
    key: String,
    version_id: Option<String>,
) -> StoreResult<Deleted> {
    let now = SystemTime::now();
    let (deleted, retired) = store
        .write(move |tx| {
            let b = need_bucket(tx, &bucket)?;
            if let Some(id) = version_id {
                let Some((gone, retired)) = db::delete_version(tx, &bucket, &key, &id)? else {
                    // S3 answers 204 for a version that is not there (after validating the id).
                    return Ok((
                        Deleted {
                            delete_marker: false,
                            version_id: Some(id),
                        },
                        Vec::new(),
                    ));
                };
                return Ok((
                    Deleted {
                        delete_marker: gone.delete_marker,
                        version_id: Some(gone.version_id),
                    },
                    retired,
                ));
            }
            match b.versioning {
                Versioning::Off => {
                    let mut retired = Vec::new();
                    if let Some((_, r)) = db::delete_version(tx, &bucket, &key, "null")? {
                        retired = r;
                    }
                    Ok((Deleted::default(), retired))
                }
                Versioning::Enabled | Versioning::Suspended => {
                    let marker = NewVersion {
                        size: 0,
                        etag: String::new(),
                        meta: ObjectMeta::default(),
                        segments: Vec::new(),
                    };
                    let (id, retired) = db::insert_version(tx, &b, &key, true, &marker, now)?;
                    Ok((
                        Deleted {
                            delete_marker: true,
                            version_id: Some(id),
                        },
                        retired,
                    ))
                }
            }
        })
        .await?;
    store.blobs.retire(retired);
    Ok(deleted)
}

pub async fn delete_object(
    store: &Store,
    req: S3Request<DeleteObjectInput>,
) -> StoreResult<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    if let Some(cond) = input.if_match.clone() {
        let (bucket, key) = (input.bucket.clone(), input.key.clone());
        store
            .read(move |c| {
                WriteConditions {
                    if_match: Some(cond),
                    if_none_match: None,
                }
                .check(db::latest(c, &bucket, &key)?.as_ref())
            })
            .await?;
    }
    let d = delete_one(store, input.bucket, input.key, input.version_id).await?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: d.delete_marker.then_some(true),
        version_id: d.version_id,
        ..Default::default()
    }))
}

pub async fn delete_objects(
    store: &Store,
    req: S3Request<DeleteObjectsInput>,
) -> StoreResult<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    bucket_row(store, &input.bucket).await?;
    if input.delete.objects.len() > 1000 {
        return Err(refuse(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        ));
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for object in input.delete.objects {
        match delete_one(
            store,
            input.bucket.clone(),
            object.key.clone(),
            object.version_id.clone(),
        )
        .await
        {
            Ok(d) => {
                if !quiet {
                    deleted.push(DeletedObject {
                        key: Some(object.key),
                        version_id: object.version_id,
                        delete_marker: d.delete_marker.then_some(true),
                        delete_marker_version_id: if d.delete_marker { d.version_id } else { None },
                    });
                }
            }
            Err(e) => {
                let e = s3s::S3Error::from(e);
                errors.push(Error {
                    code: Some(e.code().as_str().to_owned()),
                    message: e.message().map(str::to_owned),
                    key: Some(object.key),
                    version_id: object.version_id,
                });
            }
        }
    }
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: Some(deleted),
        errors: (!errors.is_empty()).then_some(errors),
        ..Default::default()
    }))
}

/// Copies the bytes of `segments[range]` into one new blob, hashing them. Blocking.
pub fn copy_bytes(
    store: &Store,
    segments: &[Segment],
    range: std::ops::Range<u64>,
    wanted: Wanted,
) -> StoreResult<(Option<String>, u64, String, Checksums)> {
    use s3s::crypto::Checksum as _;
    let mut temp = store.blobs.temp().map_err(StoreError::io("creating an object file"))?;
    let mut body =
        blobs::open_range(&store.blobs, segments, range).map_err(StoreError::io("opening an object file"))?;
    let mut md5 = s3s::crypto::Md5::new();
    let mut sums = wanted.hasher();
    let mut size = 0u64;
    while let Some(chunk) = body.next_blocking().map_err(StoreError::io("reading an object file"))? {
        md5.update(&chunk);
        sums.update(&chunk);
        temp.write_all(&chunk)
            .map_err(StoreError::io("writing an object file"))?;
        size += chunk.len() as u64;
    }
    let digest: [u8; 16] = md5.finalize();
    let blob = if size == 0 {
        None
    } else {
        Some(
            store
                .blobs
                .commit(temp)
                .map_err(StoreError::io("storing an object file"))?,
        )
    };
    Ok((blob, size, upload::hex(&digest), Checksums::from_dto(&sums.finalize())))
}

pub fn copy_source(source: &CopySource) -> StoreResult<(String, String, Option<String>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_ref().map(|v| v.to_string()),
        )),
        _ => Err(refuse(
            S3ErrorCode::NotImplemented,
            "Copying from an access point or outpost is not supported by the s3chaos store",
        )),
    }
}

pub async fn copy_object(store: &Store, req: S3Request<CopyObjectInput>) -> StoreResult<S3Response<CopyObjectOutput>> {
    let input = req.input;
    let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
    let conditions = ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
    let same_place = src_bucket == input.bucket && src_key == input.key && src_version.is_none();
    if same_place && !replace && input.storage_class.is_none() && input.website_redirect_location.is_none() {
        return Err(refuse(
            S3ErrorCode::InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    let algorithm = input.checksum_algorithm.as_ref().map(|a| a.as_str().to_owned());
    let mut wanted = Wanted::default();
    if let Some(a) = &algorithm {
        wanted.add(a)?;
    }
    let dst_bucket = input.bucket.clone();
    let (source, blob, size, md5, computed) = store
        .blocking(move |s| {
            let source = s.db.read(|c| {
                need_bucket(c, &dst_bucket)?;
                let v = find_version(c, &src_bucket, &src_key, src_version.as_deref())?;
                conditions.check(&v, true)?;
                Ok(v)
            })?;
            // The source's own checksums carry over; the requested one is computed.
            let mut w = wanted;
            if let Some(a) = source.meta.checksums.algorithm()
                && source.meta.checksums.kind.as_deref() != Some("COMPOSITE")
            {
                let _ = w.add(a);
            }
            let segments = s.db.read(|c| db::segments(c, source.row))?;
            let (blob, size, md5, computed) = copy_bytes(s, &segments, 0..source.size, w)?;
            Ok((source, blob, size, md5, computed))
        })
        .await?;
    let mut meta = if replace {
        object_meta(
            input.content_type.clone(),
            input.content_encoding.clone(),
            input.content_disposition.clone(),
            input.content_language.clone(),
            input.cache_control.clone(),
            input.expires.clone(),
            input.website_redirect_location.clone(),
            input.storage_class.as_ref().map(|s| s.as_str().to_owned()),
            input.metadata.clone(),
        )
    } else {
        let mut m = source.meta.clone();
        if let Some(sc) = &input.storage_class {
            m.storage_class = Some(sc.as_str().to_owned()).filter(|s| s != "STANDARD");
        }
        m
    };
    meta.parts = Vec::new();
    meta.tags = if replace_tags {
        input
            .tagging
            .as_deref()
            .map(parse_tagging_header)
            .transpose()?
            .unwrap_or_default()
    } else {
        source.meta.tags.clone()
    };
    meta.checksums = match &algorithm {
        Some(a) => kept_checksums(computed, &Checksums::default(), Some(a)),
        None => kept_checksums(computed, &source.meta.checksums, None),
    };
    let checksums = meta.checksums.clone();
    let new = NewVersion {
        size,
        etag: md5.clone(),
        meta,
        segments: blob.map(|b| vec![Segment { blob: b, len: size }]).unwrap_or_default(),
    };
    let modified_hint = SystemTime::now();
    let (version_id, bucket) = commit_version(store, input.bucket, input.key, new, WriteConditions::default()).await?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(etag(&md5)),
            last_modified: Some(timestamp(modified_hint)),
            checksum_crc32: checksums.crc32,
            checksum_crc32c: checksums.crc32c,
            checksum_sha1: checksums.sha1,
            checksum_sha256: checksums.sha256,
            checksum_crc64nvme: checksums.crc64nvme,
            checksum_type: checksums.kind.map(ChecksumType::from),
        }),
        version_id: shown_version(&bucket, &version_id),
        copy_source_version_id: (source.version_id != "null").then_some(source.version_id),
        ..Default::default()
    }))
}

pub async fn get_object_tagging(
    store: &Store,
    req: S3Request<GetObjectTaggingInput>,
) -> StoreResult<S3Response<GetObjectTaggingOutput>> {
    let input = req.input;
    let (v, b) = store
        .read(move |c| {
            let v = find_version(c, &input.bucket, &input.key, input.version_id.as_deref())?;
            Ok((v, need_bucket(c, &input.bucket)?))
        })
        .await?;
    // S3 answers a tag set in key order, whatever order it was given in.
    let mut tags = v.meta.tags.clone();
    tags.sort();
    Ok(S3Response::new(GetObjectTaggingOutput {
        tag_set: tags
            .into_iter()
            .map(|(k, val)| Tag {
                key: Some(k),
                value: Some(val),
            })
            .collect(),
        version_id: shown_version(&b, &v.version_id),
    }))
}

async fn set_tags(
    store: &Store,
    bucket: String,
    key: String,
    version_id: Option<String>,
    tags: Vec<(String, String)>,
) -> StoreResult<Option<String>> {
    store
        .write(move |tx| {
            let v = find_version(tx, &bucket, &key, version_id.as_deref())?;
            let b = need_bucket(tx, &bucket)?;
            let mut meta = v.meta.clone();
            meta.tags = tags;
            db::update_meta(tx, v.row, &meta)?;
            Ok(shown_version(&b, &v.version_id))
        })
        .await
}

pub async fn put_object_tagging(
    store: &Store,
    req: S3Request<PutObjectTaggingInput>,
) -> StoreResult<S3Response<PutObjectTaggingOutput>> {
    let input = req.input;
    let tags: Vec<(String, String)> = input
        .tagging
        .tag_set
        .into_iter()
        .map(|t| (t.key.unwrap_or_default(), t.value.unwrap_or_default()))
        .collect();
    check_tags(&tags)?;
    let version_id = set_tags(store, input.bucket, input.key, input.version_id, tags).await?;
    Ok(S3Response::new(PutObjectTaggingOutput { version_id }))
}

pub async fn delete_object_tagging(
    store: &Store,
    req: S3Request<DeleteObjectTaggingInput>,
) -> StoreResult<S3Response<DeleteObjectTaggingOutput>> {
    let input = req.input;
    let version_id = set_tags(store, input.bucket, input.key, input.version_id, Vec::new()).await?;
    let mut response = S3Response::new(DeleteObjectTaggingOutput { version_id });
    response.status = Some(http::StatusCode::NO_CONTENT);
    Ok(response)
}
