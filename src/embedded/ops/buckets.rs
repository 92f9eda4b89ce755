//! Bucket operations: create, delete, head, list, location, versioning.

use std::time::SystemTime;

use s3s::dto::*;
use s3s::{S3ErrorCode, S3Request, S3Response};

use super::common::*;
use crate::embedded::credentials::REGION;
use crate::embedded::db::{self, Versioning};
use crate::embedded::error::{StoreResult, refuse};
use crate::embedded::store::Store;

pub async fn create_bucket(
    store: &Store,
    req: S3Request<CreateBucketInput>,
) -> StoreResult<S3Response<CreateBucketOutput>> {
    // The region the request asks for; none means us-east-1, the store's.
    let asked_region = req
        .input
        .create_bucket_configuration
        .as_ref()
        .and_then(|c| c.location_constraint.as_ref())
        .map(|l| l.as_str().to_owned())
        .filter(|l| !l.is_empty());
    let name = req.input.bucket;
    let now = SystemTime::now();
    let location = format!("/{name}");
    let created = store.write(move |tx| db::create_bucket(tx, &name, now)).await?;
    // S3 in us-east-1 answers 200 to re-creating your own bucket, for legacy compatibility
    // (its contents stay); every other region answers BucketAlreadyOwnedByYou.
    if !created && asked_region.is_some_and(|r| r != REGION) {
        return Err(refuse(
            S3ErrorCode::BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it.",
        ));
    }
    Ok(S3Response::new(CreateBucketOutput {
        location: Some(location),
    }))
}

pub async fn delete_bucket(
    store: &Store,
    req: S3Request<DeleteBucketInput>,
) -> StoreResult<S3Response<DeleteBucketOutput>> {
    let name = req.input.bucket;
    let retired = store
        .write(move |tx| {
            need_bucket(tx, &name)?;
            if !db::bucket_is_empty(tx, &name)? {
                return Err(refuse(
                    S3ErrorCode::BucketNotEmpty,
                    "The bucket you tried to delete is not empty",
                ));
            }
            db::delete_bucket(tx, &name)
        })
        .await?;
    store.blobs.retire(retired);
    Ok(S3Response::new(DeleteBucketOutput {}))
}

pub async fn head_bucket(store: &Store, req: S3Request<HeadBucketInput>) -> StoreResult<S3Response<HeadBucketOutput>> {
    bucket_row(store, &req.input.bucket).await?;
    Ok(S3Response::new(HeadBucketOutput {
        bucket_region: Some(REGION.to_owned()),
        ..Default::default()
    }))
}

/// ListBuckets, in name order, with S3's optional paging (`max-buckets`, a continuation
/// token: the last name of the page before) and `prefix`.
pub async fn list_buckets(
    store: &Store,
    req: S3Request<ListBucketsInput>,
) -> StoreResult<S3Response<ListBucketsOutput>> {
    let input = req.input;
    let max = input.max_buckets.map_or(usize::MAX, |m| m.clamp(1, 10_000) as usize);
    let prefix = input.prefix.clone().unwrap_or_default();
    let after = input.continuation_token.clone().unwrap_or_default();
    let mut rows: Vec<_> = store
        .read(db::buckets)
        .await?
        .into_iter()
        .filter(|b| b.name.starts_with(&prefix) && b.name > after)
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    let more = rows.len() > max;
    rows.truncate(max);
    let next = more.then(|| rows.last().map(|b| b.name.clone())).flatten();
    Ok(S3Response::new(ListBucketsOutput {
        buckets: Some(
            rows.into_iter()
                .map(|b| Bucket {
                    name: Some(b.name),
                    creation_date: Some(timestamp(b.created)),
                    bucket_region: Some(REGION.to_owned()),
                })
                .collect(),
        ),
        continuation_token: next,
        prefix: input.prefix,
        owner: Some(Owner {
            display_name: Some("s3chaos".into()),
            id: Some("s3chaos".into()),
        }),
    }))
}

pub async fn get_bucket_location(
    store: &Store,
    req: S3Request<GetBucketLocationInput>,
) -> StoreResult<S3Response<GetBucketLocationOutput>> {
    bucket_row(store, &req.input.bucket).await?;
    // us-east-1 is the empty LocationConstraint, as S3 answers it.
    Ok(S3Response::new(GetBucketLocationOutput {
        location_constraint: None,
    }))
}

pub async fn get_bucket_versioning(
    store: &Store,
    req: S3Request<GetBucketVersioningInput>,
) -> StoreResult<S3Response<GetBucketVersioningOutput>> {
    let b = bucket_row(store, &req.input.bucket).await?;
    Ok(S3Response::new(GetBucketVersioningOutput {
        status: match b.versioning {
            Versioning::Off => None,
            v => Some(BucketVersioningStatus::from(v.as_str().to_owned())),
        },
        mfa_delete: None,
    }))
}

pub async fn put_bucket_versioning(
    store: &Store,
    req: S3Request<PutBucketVersioningInput>,
) -> StoreResult<S3Response<PutBucketVersioningOutput>> {
    let input = req.input;
    let status = input.versioning_configuration.status.map(|s| s.as_str().to_owned());
    let versioning = match status.as_deref() {
        Some("Enabled") => Versioning::Enabled,
        Some("Suspended") => Versioning::Suspended,
        _ => {
            return Err(refuse(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            ));
        }
    };
    let name = input.bucket;
    store
        .write(move |tx| {
            let b = need_bucket(tx, &name)?;
            // A bucket that never had versioning stays "off" when suspended (S3 keeps it
            // unversioned until the first Enabled).
            let next = if b.versioning == Versioning::Off && versioning == Versioning::Suspended {
                Versioning::Suspended
            } else {
                versioning
            };
            db::set_versioning(tx, &name, next)
        })
        .await?;
    Ok(S3Response::new(PutBucketVersioningOutput {}))
}
