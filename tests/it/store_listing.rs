//! The embedded store's listings against a plain model of S3's rules, end to end: random keys
//! put through the Rust SDK, random prefix, delimiter, start-after and max-keys, the first
//! page compared with the model, then every page followed to the end, by continuation token
//! (V2) and by marker (V1). The keys use few characters ('/', '+', ' ', '.', 'é', '𝄞') so that
//! prefixes, delimiters and bounds collide often.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use s3chaos::embedded::{self, EmbeddedStore};

/// What a listing of `keys` must name, in order, as the rules say it: keys under `prefix`,
/// each rolled up to `prefix + rest up to the first delimiter` when it has one, listed
/// once, strictly after `after`, in UTF-8 byte order (which Rust's `str` order is).
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: &str, after: &str) -> Vec<String> {
    let mut names: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with(prefix))
        .map(|k| {
            match (!delimiter.is_empty())
                .then(|| k[prefix.len()..].find(delimiter))
                .flatten()
            {
                Some(i) => k[..prefix.len() + i + delimiter.len()].to_owned(),
                None => k.clone(),
            }
        })
        .filter(|n| n.as_str() > after)
        .collect();
    names.sort();
    names.dedup();
    names
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop::sample::select(vec!["a", "b", "/", "+", " ", ".", "é", "𝄞", "//"]),
        1..6,
    )
    .prop_map(|parts| parts.concat())
    // The Rust SDK refuses a key of only spaces before sending it ("key not set").
    .prop_filter("a key the SDK sends", |k| !k.trim().is_empty())
}

#[derive(Debug, Clone)]
struct Case {
    keys: BTreeSet<String>,
    prefix: String,
    delimiter: String,
    after: String,
    max: i32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::btree_set(key(), 0..25),
        proptest::collection::vec(prop::sample::select(vec!["", "a", "/", "a/", "b", "é"]), 1),
        prop::sample::select(vec!["", "/", "a", "//", "é", "+"]),
        proptest::option::of(key()),
        1i32..6,
    )
        .prop_map(|(keys, prefix, delimiter, after, max)| Case {
            keys,
            prefix: prefix.concat(),
            delimiter: delimiter.to_owned(),
            after: after.unwrap_or_default(),
            max,
        })
}

fn names(contents: &[aws_sdk_s3::types::Object], prefixes: &[aws_sdk_s3::types::CommonPrefix]) -> Vec<String> {
    let mut all: Vec<String> = contents
        .iter()
        .filter_map(|o| o.key.clone())
        .chain(prefixes.iter().filter_map(|p| p.prefix.clone()))
        .collect();
    all.sort();
    all
}

async fn check(c: &Client, bucket: &str, case: &Case) -> Result<(), TestCaseError> {
    c.create_bucket().bucket(bucket).send().await.unwrap();
    for k in &case.keys {
        c.put_object()
            .bucket(bucket)
            .key(k)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {k:?}: {e:?}"));
    }
    let want_first: Vec<String> = model(&case.keys, &case.prefix, &case.delimiter, &case.after)
        .into_iter()
        .take(case.max as usize)
        .collect();
    let want_all = model(&case.keys, &case.prefix, &case.delimiter, "");

    // V2: the first page after start-after, then every page from the start by token.
    let page = c
        .list_objects_v2()
        .bucket(bucket)
        .prefix(&case.prefix)
        .delimiter(&case.delimiter)
        .start_after(&case.after)
        .max_keys(case.max)
        .send()
        .await
        .unwrap();
    prop_assert_eq!(
        names(page.contents(), page.common_prefixes()),
        want_first.clone(),
        "V2 first page"
    );
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..=want_all.len() {
        let page = c
            .list_objects_v2()
            .bucket(bucket)
            .prefix(&case.prefix)
            .delimiter(&case.delimiter)
            .max_keys(case.max)
            .set_continuation_token(token.clone())
            .send()
            .await
            .unwrap();
        let got = names(page.contents(), page.common_prefixes());
        prop_assert!(got.len() <= case.max as usize, "V2 page longer than max-keys");
        seen.extend(got);
        token = page.next_continuation_token().map(str::to_owned);
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        prop_assert!(token.is_some(), "V2 truncated page without NextContinuationToken");
    }
    prop_assert_eq!(&seen, &want_all, "V2 followed by tokens");

    // V1: the first page after the marker, then every page by NextMarker (or, without a
    // delimiter, the last key, as S3 documents).
    let page = c
        .list_objects()
        .bucket(bucket)
        .prefix(&case.prefix)
        .delimiter(&case.delimiter)
        .marker(&case.after)
        .max_keys(case.max)
        .send()
        .await
        .unwrap();
    prop_assert_eq!(
        names(page.contents(), page.common_prefixes()),
        want_first,
        "V1 first page"
    );
    let mut seen = Vec::new();
    let mut marker = String::new();
    for _ in 0..=want_all.len() {
        let page = c
            .list_objects()
            .bucket(bucket)
            .prefix(&case.prefix)
            .delimiter(&case.delimiter)
            .max_keys(case.max)
            .marker(&marker)
            .send()
            .await
            .unwrap();
        let got = names(page.contents(), page.common_prefixes());
        seen.extend(got.iter().cloned());
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        marker = match page.next_marker() {
            Some(m) => m.to_owned(),
            None => {
                prop_assert!(
                    case.delimiter.is_empty(),
                    "V1 truncated with a delimiter but no NextMarker"
                );
                got.last().cloned().unwrap_or_default()
            }
        };
    }
    prop_assert_eq!(&seen, &want_all, "V1 followed by markers");
    Ok(())
}

#[test]
fn listings_of_random_keys_follow_s3s_rules() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(async {
        EmbeddedStore::start(dir.path(), embedded::Credentials::Any, &[])
            .await
            .unwrap()
    });
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("any", "any", None, None, "t"))
        .endpoint_url(store.url())
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let client = Client::from_conf(conf);
    let cases = std::env::var("S3CHAOS_LISTING_CASES").map_or(48, |v| v.parse().expect("S3CHAOS_LISTING_CASES"));
    let n = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases,
        // Shrinking re-runs against the store; a handful of steps finds a small case.
        max_shrink_iters: 200,
        ..Config::default()
    });
    runner
        .run(&case(), |case| {
            let bucket = format!("listing-{}", n.fetch_add(1, Ordering::Relaxed));
            rt.block_on(check(&client, &bucket, &case))
        })
        .unwrap_or_else(|e| panic!("{e}"));
}
