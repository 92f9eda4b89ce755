//! Multipart uploads: create, upload (and copy) parts, complete, abort, list parts and uploads.
//! A completed object keeps its parts' files as its segments (no copy at completion).

use std::collections::HashSet;
use std::time::SystemTime;

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response};

use super::common::*;
use super::multipart_checksum as checksum;
use super::objects::{Trailers, copy_bytes, copy_source, declared_with_trailers, wanted_for};
use crate::embedded::db::{self, NewVersion, PartRow, Segment, UploadRow};
use crate::embedded::error::{StoreError, StoreResult, refuse};
use crate::embedded::meta::{Checksums, UploadMeta};
use crate::embedded::store::Store;
use crate::embedded::upload::{self, Wanted};

/// Parts but the last must be at least this big (S3's minimum).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

fn no_such_upload() -> StoreError {
    refuse(
        S3ErrorCode::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
    )
}

fn need_upload(conn: &rusqlite::Connection, bucket: &str, key: &str, upload_id: &str) -> StoreResult<UploadRow> {
    need_bucket(conn, bucket)?;
    match db::upload(conn, upload_id)? {
        Some(u) if u.bucket == bucket && u.key == key => Ok(u),
        _ => Err(no_such_upload()),
    }
}

fn check_part_number(n: i32) -> StoreResult<u32> {
    if (1..=10_000).contains(&n) {
        Ok(n as u32)
    } else {
        Err(refuse(
            S3ErrorCode::InvalidArgument,
            "Part number must be an integer between 1 and 10000, inclusive",
        ))
    }
}

pub async fn create_multipart_upload(
    store: &Store,
    req: S3Request<CreateMultipartUploadInput>,
) -> StoreResult<S3Response<CreateMultipartUploadOutput>> {
    let input = req.input;
    let mut object = object_meta(
        input.content_type,
        input.content_encoding,
        input.content_disposition,
        input.content_language,
        input.cache_control,
        input.expires,
        input.website_redirect_location,
        input.storage_class.map(|s| s.as_str().to_owned()),
        input.metadata,
    );
    if let Some(t) = &input.tagging {
        object.tags = parse_tagging_header(t)?;
    }
    let algorithm = input.checksum_algorithm.map(|a| a.as_str().to_ascii_uppercase());
    if let Some(a) = &algorithm {
        Wanted::default().add(a)?;
    }
    let checksum_type = input.checksum_type.map(|t| t.as_str().to_ascii_uppercase());
    let row = UploadRow {
        upload_id: db::random_id(64),
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        initiated: SystemTime::now(),
        meta: UploadMeta {
            object,
            checksum_algorithm: algorithm.clone(),
            checksum_type: checksum_type.clone(),
        },
    };
    let upload_id = row.upload_id.clone();
    store
        .write(move |tx| {
            need_bucket(tx, &row.bucket)?;
            db::create_upload(tx, &row)
        })
        .await?;
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(upload_id),
        checksum_algorithm: algorithm.map(ChecksumAlgorithm::from),
        checksum_type: checksum_type.map(ChecksumType::from),
        ..Default::default()
    }))
}

async fn record_part(store: &Store, upload_id: String, part: PartRow, bucket: String, key: String) -> StoreResult<()> {
    let blob = part.blob.clone();
    let result = store
        .write(move |tx| {
            need_upload(tx, &bucket, &key, &upload_id)?;
            db::put_part(tx, &upload_id, &part)
        })
        .await;
    match result {
        Ok(replaced) => {
            store.blobs.retire(replaced);
            Ok(())
        }
        Err(e) => {
            store.blobs.retire(blob);
            Err(e)
        }
    }
}

pub async fn upload_part(store: &Store, req: S3Request<UploadPartInput>) -> StoreResult<S3Response<UploadPartOutput>> {
    let headers = req.headers.clone();
    let trailers = Trailers::of(&req);
    let input = req.input;
    let number = check_part_number(input.part_number)?;
    let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
    let up = store.read(move |c| need_upload(c, &bucket, &key, &upload_id)).await?;
    let declared_headers = declared(
        input.checksum_crc32,
        input.checksum_crc32c,
        input.checksum_sha1,
        input.checksum_sha256,
        input.checksum_crc64nvme,
    );
    let algorithm = input
        .checksum_algorithm
        .map(|a| a.as_str().to_owned())
        .or(up.meta.checksum_algorithm.clone());
    let wanted = wanted_for(&declared_headers, algorithm.as_deref(), &headers)?;
    let received = upload::receive(&store.blobs, input.body, input.content_length, wanted).await?;
    upload::check_content_md5(&received, input.content_md5.as_deref())?;
    let declared_all = declared_with_trailers(declared_headers, trailers.take().as_ref());
    upload::check_checksums(&received.checksums, &declared_all)?;
    let etag_value = received.md5_hex();
    let size = received.size;
    let checksums = received.checksums.clone();
    let temp = received.temp;
    let blob = if size == 0 {
        None
    } else {
        Some(
            store
                .blocking(move |s| s.blobs.commit(temp).map_err(StoreError::io("storing a part file")))
                .await?,
        )
    };
    let part = PartRow {
        number,
        blob,
        size,
        etag: etag_value.clone(),
        modified: SystemTime::now(),
        checksums: checksums.clone(),
    };
    record_part(store, input.upload_id, part, input.bucket, input.key).await?;
    Ok(S3Response::new(UploadPartOutput {
        e_tag: Some(etag(&etag_value)),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        ..Default::default()
    }))
}

pub async fn upload_part_copy(
    store: &Store,
    req: S3Request<UploadPartCopyInput>,
) -> StoreResult<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let number = check_part_number(input.part_number)?;
    let (src_bucket, src_key, src_version) = copy_source(&input.copy_source)?;
    let conditions = ReadConditions {
        if_match: input.copy_source_if_match.clone(),
        if_none_match: input.copy_source_if_none_match.clone(),
        if_modified_since: input.copy_source_if_modified_since.clone(),
        if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
    };
    let range_header = input.copy_source_range.clone();
    let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
    let (blob, size, md5, _) = store
        .blocking(move |s| {
            let (up, source) = s.db.read(|c| {
                let up = need_upload(c, &bucket, &key, &upload_id)?;
                let v = find_version(c, &src_bucket, &src_key, src_version.as_deref())?;
                conditions.check(&v, true)?;
                Ok((up, v))
            })?;
            let range = match range_header.as_deref() {
                None => 0..source.size,
                Some(h) => {
                    let bad = || refuse(S3ErrorCode::InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy");
                    let spec = h.strip_prefix("bytes=").ok_or_else(bad)?;
                    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
                    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                    if a > b || b >= source.size {
                        return Err(refuse(S3ErrorCode::InvalidRange, "The requested range is not satisfiable"));
                    }
                    a..b + 1
                }
            };
            let mut wanted = Wanted::default();
            if let Some(a) = &up.meta.checksum_algorithm {
                wanted.add(a)?;
            }
            let segments = s.db.read(|c| db::segments(c, source.row))?;
            copy_bytes(s, &segments, range, wanted)
        })
        .await?;
    let part = PartRow {
        number,
        blob,
        size,
        etag: md5.clone(),
        modified: SystemTime::now(),
        checksums: Checksums::default(),
    };
    let modified = part.modified;
    record_part(store, input.upload_id, part, input.bucket, input.key).await?;
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(CopyPartResult {
            e_tag: Some(etag(&md5)),
            last_modified: Some(timestamp(modified)),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

pub async fn complete_multipart_upload(
    store: &Store,
    req: S3Request<CompleteMultipartUploadInput>,
) -> StoreResult<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let asked: Vec<(u32, String)> = input
        .multipart_upload
        .as_ref()
        .and_then(|m| m.parts.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.part_number.unwrap_or(0).max(0) as u32,
                p.e_tag
                    .map(|e| e.value().trim_matches('"').to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    if asked.is_empty() {
        return Err(refuse(
            S3ErrorCode::MalformedXML,
            "The XML you provided was not well-formed or did not validate against our published schema",
        ));
    }
    if asked.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(refuse(
            S3ErrorCode::InvalidPartOrder,
            "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        ));
    }
    let conditions = WriteConditions {
        if_match: input.if_match.clone(),
        if_none_match: input.if_none_match.clone(),
    };
    // The whole object's checksum the client sends with Complete, checked against the parts.
    let declared = Checksums {
        crc32: input.checksum_crc32.clone(),
        crc32c: input.checksum_crc32c.clone(),
        sha1: input.checksum_sha1.clone(),
        sha256: input.checksum_sha256.clone(),
        crc64nvme: input.checksum_crc64nvme.clone(),
        kind: None,
    };
    let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
    let now = SystemTime::now();
    let (version_id, b, etag_value, checksums, retired) = store
        .write(move |tx| {
            let b = need_bucket(tx, &bucket)?;
            if db::upload(tx, &upload_id)?.is_none()
                && let Some(done) = db::completed(tx, &upload_id)?
                && done.bucket == bucket
                && done.key == key
            {
                // A retry of a Complete that succeeded: the same answer.
                return Ok((done.version_id, b, done.etag, done.checksums, Vec::new()));
            }
            let up = need_upload(tx, &bucket, &key, &upload_id)?;
            let stored = db::parts(tx, &upload_id, 0, 10_001)?;
            let mut chosen = Vec::with_capacity(asked.len());
            for (number, tag) in &asked {
                let invalid = || {
                    refuse(
                        S3ErrorCode::InvalidPart,
                        format!(
                            "One or more of the specified parts could not be found. The part may not have been uploaded, \
                             or the specified entity tag may not match the part's entity tag. (part {number})"
                        ),
                    )
                };
                let part = stored.iter().find(|p| p.number == *number).ok_or_else(invalid)?;
                if !tag.is_empty() && part.etag != *tag {
                    return Err(invalid());
                }
                chosen.push(part.clone());
            }
            for p in &chosen[..chosen.len() - 1] {
                if p.size < MIN_PART_SIZE {
                    return Err(refuse(
                        S3ErrorCode::EntityTooSmall,
                        format!("Your proposed upload is smaller than the minimum allowed object size. (part {})", p.number),
                    ));
                }
            }
            conditions.check(db::latest(tx, &bucket, &key)?.as_ref())?;
            let mut md5s = Vec::with_capacity(chosen.len() * 16);
            for p in &chosen {
                md5s.extend(
                    (0..p.etag.len() / 2).filter_map(|i| u8::from_str_radix(p.etag.get(2 * i..2 * i + 2)?, 16).ok()),
                );
            }
            use s3s::crypto::Checksum as _;
            let mut h = s3s::crypto::Md5::new();
            h.update(&md5s);
            let digest: [u8; 16] = h.finalize();
            let etag_value = format!("{}-{}", upload::hex(&digest), chosen.len());
            let mut meta = up.meta.object.clone();
            meta.parts = chosen.iter().map(|p| p.size).collect();
            if let Some(a) = up.meta.checksum_algorithm.as_deref() {
                let whole = checksum::of_parts(&chosen, a, up.meta.checksum_type.as_deref());
                checksum::check_declared(whole.as_ref(), a, &declared)?;
                meta.checksums = whole.unwrap_or_default();
            }
            let segments: Vec<Segment> = chosen
                .iter()
                .filter_map(|p| p.blob.clone().map(|blob| Segment { blob, len: p.size }))
                .collect();
            let keep: HashSet<String> = segments.iter().map(|s| s.blob.clone()).collect();
            let size = chosen.iter().map(|p| p.size).sum();
            let checksums = meta.checksums.clone();
            let new = NewVersion {
                size,
                etag: etag_value.clone(),
                meta,
                segments,
            };
            let (version_id, mut retired) = db::insert_version(tx, &b, &key, false, &new, now)?;
            retired.extend(db::end_upload(tx, &upload_id, &keep)?);
            let done = db::CompletedRow {
                bucket: bucket.clone(),
                key: key.clone(),
                version_id: version_id.clone(),
                etag: etag_value.clone(),
                checksums: checksums.clone(),
            };
            db::record_completed(tx, &upload_id, &done, now)?;
            Ok((version_id, b, etag_value, checksums, retired))
        })
        .await?;
    store.blobs.retire(retired);
    Ok(S3Response::new(CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        e_tag: Some(etag(&etag_value)),
        version_id: shown_version(&b, &version_id),
        checksum_crc32: checksums.crc32,
        checksum_crc32c: checksums.crc32c,
        checksum_sha1: checksums.sha1,
        checksum_sha256: checksums.sha256,
        checksum_crc64nvme: checksums.crc64nvme,
        checksum_type: checksums.kind.map(ChecksumType::from),
        ..Default::default()
    }))
}

pub async fn abort_multipart_upload(
    store: &Store,
    req: S3Request<AbortMultipartUploadInput>,
) -> StoreResult<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let retired = store
        .write(move |tx| {
            need_upload(tx, &input.bucket, &input.key, &input.upload_id)?;
            db::end_upload(tx, &input.upload_id, &HashSet::new())
        })
        .await?;
    store.blobs.retire(retired);
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(store: &Store, req: S3Request<ListPartsInput>) -> StoreResult<S3Response<ListPartsOutput>> {
    let input = req.input;
    let max = input.max_parts.map_or(1000, |m| m.clamp(0, 1000) as usize);
    let after: u32 = input.part_number_marker.unwrap_or(0).max(0) as u32;
    let (bucket, key, upload_id) = (input.bucket.clone(), input.key.clone(), input.upload_id.clone());
    let (up, mut parts) = store
        .read(move |c| {
            let up = need_upload(c, &bucket, &key, &upload_id)?;
            Ok((up, db::parts(c, &upload_id, after, max + 1)?))
        })
        .await?;
    let truncated = parts.len() > max;
    parts.truncate(max);
    let next = truncated.then(|| parts.last().map(|p| p.number as i32)).flatten();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        max_parts: Some(max as i32),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: next,
        is_truncated: Some(truncated),
        checksum_algorithm: up.meta.checksum_algorithm.clone().map(ChecksumAlgorithm::from),
        storage_class: Some(StorageClass::from("STANDARD".to_owned())),
        parts: Some(
            parts
                .into_iter()
                .map(|p| Part {
                    part_number: Some(p.number as i32),
                    size: Some(p.size as i64),
                    e_tag: Some(etag(&p.etag)),
                    last_modified: Some(timestamp(p.modified)),
                    checksum_crc32: p.checksums.crc32,
                    checksum_crc32c: p.checksums.crc32c,
                    checksum_sha1: p.checksums.sha1,
                    checksum_sha256: p.checksums.sha256,
                    checksum_crc64nvme: p.checksums.crc64nvme,
                })
                .collect(),
        ),
        ..Default::default()
    }))
}

/// ListMultipartUploads: uploads in (key, initiation) order, rolled up by delimiter, after
/// key-marker (and upload-id-marker within that key).
pub async fn list_multipart_uploads(
    store: &Store,
    req: S3Request<ListMultipartUploadsInput>,
) -> StoreResult<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    let max = input.max_uploads.map_or(1000, |m| m.clamp(0, 1000) as usize);
    let prefix = input.prefix.clone().unwrap_or_default();
    let delimiter = input.delimiter.clone().filter(|d| !d.is_empty());
    let key_marker = input.key_marker.clone().filter(|k| !k.is_empty());
    let upload_marker = input.upload_id_marker.clone().filter(|u| !u.is_empty());
    let url = input
        .encoding_type
        .as_ref()
        .is_some_and(|e| e.as_str().eq_ignore_ascii_case("url"));
    let bucket = input.bucket.clone();
    let all = store
        .read(move |c| {
            need_bucket(c, &bucket)?;
            db::uploads_from(c, &bucket, prefix.as_bytes(), true, usize::MAX >> 1)
        })
        .await?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, Option<String>)> = None;
    let mut upload_marker_passed = upload_marker.is_none();
    for up in all.into_iter().filter(|u| u.key.starts_with(&prefix)) {
        if let Some(km) = &key_marker {
            if up.key < *km {
                continue;
            }
            if up.key == *km {
                if upload_marker.is_none() {
                    continue;
                }
                if !upload_marker_passed {
                    upload_marker_passed = upload_marker.as_deref() == Some(up.upload_id.as_str());
                    continue;
                }
            }
        }
        let rolled = delimiter.as_deref().and_then(|d| {
            up.key[prefix.len()..]
                .find(d)
                .map(|i| up.key[..prefix.len() + i + d.len()].to_owned())
        });
        if let Some(p) = rolled {
            if prefixes.last() == Some(&p) || key_marker.as_deref().is_some_and(|k| p.as_str() <= k) {
                continue;
            }
            if uploads.len() + prefixes.len() == max {
                truncated = true;
                break;
            }
            last = Some((p.clone(), None));
            prefixes.push(p);
            continue;
        }
        if uploads.len() + prefixes.len() == max {
            truncated = true;
            break;
        }
        last = Some((up.key.clone(), Some(up.upload_id.clone())));
        uploads.push(MultipartUpload {
            key: Some(shown(&up.key, url)),
            upload_id: Some(up.upload_id),
            initiated: Some(timestamp(up.initiated)),
            storage_class: Some(StorageClass::from("STANDARD".to_owned())),
            checksum_algorithm: up.meta.checksum_algorithm.map(ChecksumAlgorithm::from),
            ..Default::default()
        });
    }
    let (next_key, next_upload) = match (truncated, last) {
        (true, Some((k, u))) => (Some(shown(&k, url)), u),
        _ => (None, None),
    };
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: Some(shown(&prefix, url)),
        delimiter: input.delimiter.map(|d| shown(&d, url)),
        key_marker: Some(input.key_marker.unwrap_or_default()),
        upload_id_marker: Some(input.upload_id_marker.unwrap_or_default()),
        max_uploads: Some(max as i32),
        is_truncated: Some(truncated),
        next_key_marker: next_key,
        next_upload_id_marker: next_upload,
        uploads: (!uploads.is_empty()).then_some(uploads),
        common_prefixes: (!prefixes.is_empty()).then(|| {
            prefixes
                .into_iter()
                .map(|p| CommonPrefix {
                    prefix: Some(shown(&p, url)),
                })
                .collect()
        }),
        encoding_type: input.encoding_type,
        ..Default::default()
    }))
}
