//! The first promise of a chaos proxy: no data changes unless a fault says so.
//!
//! Random objects (0 B to 64 MiB, keys drawn from every kind of character S3 takes, random
//! header sets) are uploaded through s3chaos in four ways (one sized PUT; an aws-chunked PUT
//! sent with `Transfer-Encoding: chunked` in random pieces; the SDK's own aws-chunked upload
//! with a checksum trailer; the SDK's multipart upload), then read back through s3chaos and directly
//! from the store: whole, by random ranges, by HEAD. Every answer through the proxy must equal
//! the store's own (status, headers but the date and request ids, every byte) and the bytes
//! must be the ones uploaded. Meanwhile other clients hammer another bucket whose rules
//! inject errors, resets, truncation and corruption over the same upstream pool.
//!
//! CI runs a small version. The long one, whose figures the README gives:
//! `S3CHAOS_PROPERTY_OBJECTS=2000 S3CHAOS_PROPERTY_MAX_SIZE=64MiB cargo test --release --test it property -- --nocapture`
//! (`S3CHAOS_PROPERTY_SEED=N` replays a run; the seed is printed).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{Harness, random_bytes, seed_object};
use crate::signed::{Payload, Seen, SignedClient, aws_chunked, aws_chunked_headers};

const BUCKET: &str = "property";
const MIB: usize = 1024 * 1024;

/// Rules that only ever match the `chaos` bucket: they keep the engine, the fault code and
/// the shared upstream pool busy while the property is checked on the other bucket.
const SCENARIO: &str = r#"
name: property-background
rules:
  - {name: slow, match: {bucket: chaos}, probability: 0.5, fault: {latency: 3ms}}
  - {name: errors, match: {bucket: chaos}, probability: 0.2, fault: {error: SlowDown}}
  - {name: resets, match: {bucket: chaos}, probability: 0.15, fault: reset}
  - {name: truncated, match: {bucket: chaos, operation: GetObject}, probability: 0.3, fault: {truncate: {after_bytes: 1000}}}
  - {name: corrupted, match: {bucket: chaos}, probability: 0.3, fault: {corrupt: {bytes: 3}}}
"#;

struct Settings {
    objects: usize,
    /// The largest random size (a 64 MiB object is always among them).
    max_size: usize,
    concurrency: usize,
    seed: u64,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok();
        Settings {
            objects: var("S3CHAOS_PROPERTY_OBJECTS").map_or(100, |v| v.parse().expect("S3CHAOS_PROPERTY_OBJECTS")),
            max_size: var("S3CHAOS_PROPERTY_MAX_SIZE").map_or(4 * MIB, |v| {
                v.parse::<bytesize::ByteSize>()
                    .expect("S3CHAOS_PROPERTY_MAX_SIZE")
                    .as_u64() as usize
            }),
            concurrency: 8,
            seed: var("S3CHAOS_PROPERTY_SEED").map_or_else(rand::random, |v| v.parse().expect("S3CHAOS_PROPERTY_SEED")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Upload {
    Sized,
    Chunked,
    SdkAwsChunked,
    SdkMultipart,
}

#[derive(Debug)]
struct Case {
    index: usize,
    key: String,
    size: usize,
    data_seed: u64,
    headers: Vec<(String, String)>,
    upload: Upload,
    /// HTTP chunk sizes and the aws-chunked chunk size of a chunked upload.
    pieces: Vec<usize>,
    aws_chunk: usize,
    /// `Range` headers to read back with.
    ranges: Vec<String>,
}

/// Characters for keys: every printable ASCII character but `/` (the separator, placed on
/// purpose), some whitespace, and multi-byte UTF-8 of 2, 3 and 4 bytes.
const KEY_CHARS: &[char] = &[
    ' ', '!', '"', '#', '$', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', ':', ';', '<', '=', '>', '?', '@', '[',
    '\\', ']', '^', '_', '`', '{', '|', '}', '~', 'a', 'Z', '0', '9', '\t', 'é', 'ß', 'Ω', 'ж', '✓', '€', '日', '本',
    '😀', '𝄞',
];

fn random_key(rng: &mut StdRng, index: usize) -> String {
    let mut key = format!("p{index}");
    for _ in 0..rng.random_range(0..4) {
        key.push('/');
        let len = rng.random_range(1..40);
        let mut segment: String = (0..len)
            .map(|_| KEY_CHARS[rng.random_range(0..KEY_CHARS.len())])
            .collect();
        // `.` and `..` segments name directories in a file-backed store; S3 takes them but the
        // SDKs and this store do not agree on them, which is not the proxy's business.
        if segment == "." || segment == ".." {
            segment.push('x');
        }
        key.push_str(&segment);
    }
    key
}

fn random_headers(rng: &mut StdRng) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    let types = [
        "application/octet-stream",
        "text/plain; charset=utf-8",
        "image/png",
        "application/x-ndjson",
    ];
    if rng.random_bool(0.7) {
        headers.push(("content-type".into(), types[rng.random_range(0..types.len())].into()));
    }
    if rng.random_bool(0.3) {
        headers.push(("cache-control".into(), "max-age=60, private".into()));
    }
    if rng.random_bool(0.3) {
        headers.push((
            "content-disposition".into(),
            format!("attachment; filename=\"f{}.bin\"", rng.random::<u16>()),
        ));
    }
    if rng.random_bool(0.2) {
        headers.push(("content-language".into(), "de-CH".into()));
    }
    for i in 0..rng.random_range(0..4) {
        let value: String = (0..rng.random_range(0..30))
            .map(|_| char::from(rng.random_range(b' '..=b'~')))
            .collect();
        headers.push((format!("x-amz-meta-m{i}"), value.trim().to_owned()));
    }
    headers
}

/// The largest object: S3 has larger ones, but past this a proxy's streaming has nothing new
/// to show.
const LARGEST: usize = 64 * MIB;

/// Sizes spread evenly over the orders of magnitude up to `max`, so that tiny, medium and
/// large objects all occur; the first two cases are always 0 bytes and [`LARGEST`].
fn random_size(rng: &mut StdRng, index: usize, max: usize) -> usize {
    match index {
        0 => 0,
        1 => LARGEST,
        _ => {
            let bits = rng.random_range(0.0..=(max as f64).log2());
            (2f64.powf(bits) as usize).min(max)
        }
    }
}

fn random_range(rng: &mut StdRng, size: usize) -> String {
    let n = size.max(1);
    // s3s-fs drops the connection on a suffix range of an empty object (a bug of the store,
    // seen directly as well), so an empty object is only asked for past its end.
    let kind = if size == 0 { 3 } else { rng.random_range(0..4) };
    match kind {
        0 => {
            let start = rng.random_range(0..n);
            let end = rng.random_range(start..n);
            format!("bytes={start}-{end}")
        }
        1 => format!("bytes={}-", rng.random_range(0..n)),
        2 => format!("bytes=-{}", rng.random_range(1..=n)),
        // Past the end: both must refuse it the same way.
        _ => format!("bytes={}-", size + rng.random_range(0..10)),
    }
}

fn make_case(rng: &mut StdRng, index: usize, max_size: usize) -> Case {
    let size = random_size(rng, index, max_size);
    let upload = match rng.random_range(0..4) {
        3 if size > 5 * MIB => Upload::SdkMultipart,
        2 => Upload::SdkAwsChunked,
        1 => Upload::Chunked,
        _ => Upload::Sized,
    };
    // The first HTTP chunks of a chunked upload are random; then 256 KiB each.
    let pieces = (0..rng.random_range(0..50))
        .map(|_| rng.random_range(1..=64 * 1024))
        .collect();
    Case {
        index,
        key: random_key(rng, index),
        size,
        data_seed: rng.random(),
        headers: random_headers(rng),
        upload,
        pieces,
        aws_chunk: rng.random_range(1..=128 * 1024),
        ranges: (0..2).map(|_| random_range(rng, size)).collect(),
    }
}

/// What one case proved.
enum Outcome {
    Checked {
        bytes: u64,
    },
    /// The store refused the upload, directly just as through the proxy.
    RefusedAlike,
}

async fn upload(h: &Harness, signed: &SignedClient, case: &Case, data: &Bytes, to_proxy: bool) -> Result<(), String> {
    let to = if to_proxy { h.proxy } else { h.store.addr };
    match case.upload {
        Upload::Sized | Upload::Chunked => {
            let payload = match case.upload {
                Upload::Sized => Payload::Sized(data.clone()),
                _ => {
                    // HTTP chunks that do not line up with the aws-chunked ones inside.
                    let encoded = Bytes::from(aws_chunked(data, case.aws_chunk));
                    let mut pieces = Vec::new();
                    let mut offset = 0;
                    for n in case.pieces.iter().chain(std::iter::repeat(&(256 * 1024))) {
                        if offset >= encoded.len() {
                            break;
                        }
                        let end = (offset + n).min(encoded.len());
                        pieces.push(encoded.slice(offset..end));
                        offset = end;
                    }
                    Payload::AwsChunked(pieces)
                }
            };
            let mut headers = case.headers.clone();
            if matches!(case.upload, Upload::Chunked) {
                headers.extend(aws_chunked_headers(data.len()));
            }
            let seen = signed.send(to, "PUT", BUCKET, &case.key, &headers, payload).await?;
            if seen.status == 200 {
                Ok(())
            } else {
                Err(format!(
                    "status {}: {}",
                    seen.status,
                    String::from_utf8_lossy(&seen.body)
                ))
            }
        }
        Upload::SdkAwsChunked | Upload::SdkMultipart => {
            let client = if to_proxy { h.client() } else { h.direct() };
            sdk_upload(&client, case, data).await
        }
    }
}

/// An SDK failure in the form [`status_of`] reads: `status NNN: ...`.
fn sdk_error<E: std::fmt::Debug>(e: aws_sdk_s3::error::SdkError<E>) -> String {
    let status = e.raw_response().map_or(0, |r| r.status().as_u16());
    format!("status {status}: {e:?}")
}

fn header<'a>(case: &'a Case, name: &str) -> Option<&'a str> {
    case.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn metadata(case: &Case) -> std::collections::HashMap<String, String> {
    case.headers
        .iter()
        .filter_map(|(n, v)| n.strip_prefix("x-amz-meta-").map(|m| (m.to_owned(), v.clone())))
        .collect()
}

async fn sdk_upload(client: &aws_sdk_s3::Client, case: &Case, data: &Bytes) -> Result<(), String> {
    let meta = Some(metadata(case));
    match case.upload {
        Upload::SdkMultipart => {
            let created = client
                .create_multipart_upload()
                .bucket(BUCKET)
                .key(&case.key)
                .set_content_type(header(case, "content-type").map(str::to_owned))
                .set_cache_control(header(case, "cache-control").map(str::to_owned))
                .set_metadata(meta)
                .send()
                .await
                .map_err(sdk_error)?;
            let id = created.upload_id().unwrap_or_default();
            let mut parts = Vec::new();
            for (i, chunk) in data.chunks(5 * MIB).enumerate() {
                let number = i as i32 + 1;
                let part = client
                    .upload_part()
                    .bucket(BUCKET)
                    .key(&case.key)
                    .upload_id(id)
                    .part_number(number)
                    .body(ByteStream::from(data.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(sdk_error)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            client
                .complete_multipart_upload()
                .bucket(BUCKET)
                .key(&case.key)
                .upload_id(id)
                .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                .send()
                .await
                .map_err(sdk_error)?;
        }
        _ => {
            // A file-backed body is what makes the SDK stream with a checksum trailer.
            let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
            std::fs::write(file.path(), data).map_err(|e| e.to_string())?;
            client
                .put_object()
                .bucket(BUCKET)
                .key(&case.key)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .set_content_type(header(case, "content-type").map(str::to_owned))
                .set_cache_control(header(case, "cache-control").map(str::to_owned))
                .set_content_disposition(header(case, "content-disposition").map(str::to_owned))
                .set_content_language(header(case, "content-language").map(str::to_owned))
                .set_metadata(meta)
                .body(ByteStream::from_path(file.path()).await.map_err(|e| e.to_string())?)
                .send()
                .await
                .map_err(sdk_error)?;
        }
    }
    Ok(())
}

/// One request sent through the proxy and directly; the two answers must be the same.
async fn same_both_ways(
    h: &Harness,
    signed: &SignedClient,
    case: &Case,
    method: &str,
    headers: &[(String, String)],
) -> Result<Seen, String> {
    let via = signed
        .send(h.proxy, method, BUCKET, &case.key, headers, Payload::Empty)
        .await
        .map_err(|e| format!("{method} {headers:?} through s3chaos: {e}"))?;
    let direct = signed
        .send(h.store.addr, method, BUCKET, &case.key, headers, Payload::Empty)
        .await
        .map_err(|e| format!("{method} {headers:?} direct: {e}"))?;
    if via.status != direct.status {
        return Err(format!(
            "{method} {headers:?}: status {} through s3chaos, {} direct",
            via.status, direct.status
        ));
    }
    if via.comparable_headers() != direct.comparable_headers() {
        return Err(format!(
            "{method} {headers:?}: headers differ\n through s3chaos: {:?}\n direct: {:?}",
            via.comparable_headers(),
            direct.comparable_headers()
        ));
    }
    if comparable_body(via.status, &via.body) != comparable_body(direct.status, &direct.body) {
        return Err(format!(
            "{method} {headers:?}: bodies differ ({} bytes through s3chaos, {} direct)",
            via.body.len(),
            direct.body.len()
        ));
    }
    Ok(via)
}

/// A body as the comparison sees it: an error's `<RequestId>` and `<HostId>` emptied, since
/// every answer has its own (as S3's do); every other byte counts.
fn comparable_body(status: u16, body: &[u8]) -> Vec<u8> {
    let Some(text) = (status >= 300).then(|| std::str::from_utf8(body).ok()).flatten() else {
        return body.to_vec();
    };
    let mut out = text.to_owned();
    for tag in ["RequestId", "HostId"] {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        if let (Some(a), Some(b)) = (out.find(&open), out.find(&close))
            && a < b
        {
            out.replace_range(a + open.len()..b, "");
        }
    }
    out.into_bytes()
}

/// The bytes `bytes=...` selects from `len` bytes, for a satisfiable range.
fn expected_range(spec: &str, len: usize) -> Option<(usize, usize)> {
    let spec = spec.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.parse::<usize>().ok(), b.parse::<usize>().ok()) {
        (Some(a), Some(b)) => (a, b.min(len.checked_sub(1)?)),
        (Some(a), None) => (a, len.checked_sub(1)?),
        (None, Some(n)) => (len.saturating_sub(n), len.checked_sub(1)?),
        (None, None) => return None,
    };
    (start <= end && start < len).then_some((start, end + 1))
}

async fn check(h: &Harness, signed: &SignedClient, case: &Case) -> Result<Outcome, String> {
    let data = Bytes::from(random_bytes(case.size, case.data_seed));
    if let Err(via) = upload(h, signed, case, &data, true).await {
        // A key the store cannot hold must be refused directly too, with the same status.
        return match upload(h, signed, case, &data, false).await {
            Err(direct) if status_of(&via) == status_of(&direct) => {
                eprintln!("property: case {} ({:?}) refused alike: {via}", case.index, case.key);
                Ok(Outcome::RefusedAlike)
            }
            Err(direct) => Err(format!("upload refused both ways, differently: {via} / {direct}")),
            Ok(()) => Err(format!("upload through s3chaos failed but direct worked: {via}")),
        };
    }

    let got = same_both_ways(h, signed, case, "GET", &[]).await?;
    if got.status != 200 || got.body != data {
        return Err(format!(
            "GET returned {} with {} bytes, not the {} uploaded",
            got.status,
            got.body.len(),
            data.len()
        ));
    }
    for (name, value) in case
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-amz-meta-") || n == "content-type")
    {
        if got.headers.get(name).map(|v| v.as_bytes()) != Some(value.as_bytes()) {
            return Err(format!(
                "{name}: {value:?} was uploaded, GET answers {:?}",
                got.headers.get(name)
            ));
        }
    }
    let head = same_both_ways(h, signed, case, "HEAD", &[]).await?;
    if head.status != 200 || !head.body.is_empty() {
        return Err(format!("HEAD: {} with {} body bytes", head.status, head.body.len()));
    }
    for range in &case.ranges {
        let seen = same_both_ways(h, signed, case, "GET", &[("range".into(), range.clone())]).await?;
        if let Some((start, end)) = expected_range(range, data.len())
            && seen.status == 206
            && seen.body != data.slice(start..end)
        {
            return Err(format!("{range}: not bytes {start}..{end} of the object"));
        }
    }
    let gone = signed
        .send(h.proxy, "DELETE", BUCKET, &case.key, &[], Payload::Empty)
        .await?;
    if gone.status != 204 {
        return Err(format!("DELETE: {}", gone.status));
    }
    Ok(Outcome::Checked {
        bytes: data.len() as u64,
    })
}

fn status_of(error: &str) -> Option<&str> {
    error.strip_prefix("status ").and_then(|s| s.get(..3))
}

/// Clients that keep requesting the `chaos` bucket, where every rule fires, until told to
/// stop; returns how many requests they made.
fn background_chaos(h: &Harness, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..3)
        .map(|n| {
            let client = h.single_attempt_client(Some(std::time::Duration::from_secs(5)));
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && sent < 1_000_000 {
                    let key = format!("k{}", sent % 5);
                    if sent % 3 == n {
                        let _ = client
                            .put_object()
                            .bucket("chaos")
                            .key(&key)
                            .body(ByteStream::from(vec![n as u8; 20_000]))
                            .send()
                            .await;
                    } else if let Ok(got) = client.get_object().bucket("chaos").key("seeded").send().await {
                        let _ = got.body.collect().await;
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfaulted_objects_are_byte_identical_to_direct_while_others_are_faulted() {
    let settings = Settings::from_env();
    eprintln!(
        "property: seed {} (S3CHAOS_PROPERTY_SEED={} replays this run), {} objects up to {} bytes",
        settings.seed, settings.seed, settings.objects, settings.max_size
    );
    let h = Harness::start(SCENARIO).await;
    h.direct().create_bucket().bucket(BUCKET).send().await.unwrap();
    seed_object(&h, "chaos", "seeded", 64 * 1024).await;

    let stop = Arc::new(AtomicBool::new(false));
    let chaos = background_chaos(&h, stop.clone());

    let mut rng = StdRng::seed_from_u64(settings.seed);
    let cases: Vec<Case> = (0..settings.objects)
        .map(|i| make_case(&mut rng, i, settings.max_size))
        .collect();
    let signed = SignedClient::new();
    let started = Instant::now();
    let checked_bytes = AtomicU64::new(0);
    let results: Vec<(usize, Result<Outcome, String>)> = futures_util::stream::iter(cases.iter())
        .map(|case| async { (case.index, check(&h, &signed, case).await) })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    stop.store(true, Ordering::Relaxed);
    let mut background = 0;
    for task in chaos {
        background += task.await.unwrap();
    }

    let mut failures = Vec::new();
    let (mut checked, mut refused) = (0, 0);
    for (index, result) in results {
        match result {
            Ok(Outcome::Checked { bytes }) => {
                checked += 1;
                checked_bytes.fetch_add(bytes, Ordering::Relaxed);
            }
            Ok(Outcome::RefusedAlike) => refused += 1,
            Err(e) => failures.push(format!("case {index} {:?}: {e}", cases[index])),
        }
    }
    let injected: u64 = h.engine.stats().iter().map(|s| s.injected).sum();
    eprintln!(
        "property: {checked} objects checked byte for byte ({} MiB), {refused} refused by the store \
         alike both ways, {} failures, in {:.1} s; alongside, {background} requests to the faulted \
         bucket got {injected} faults",
        checked_bytes.load(Ordering::Relaxed) / MIB as u64,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "seed {}:\n{}", settings.seed, failures.join("\n"));
    assert!(
        checked * 10 >= settings.objects * 9,
        "only {checked} of {} objects could be stored; the property checked too little",
        settings.objects
    );
    for rule in ["errors", "resets", "truncated", "corrupted"] {
        assert!(h.stats(rule).injected > 0, "{rule} never fired alongside");
    }
}
