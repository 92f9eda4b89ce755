//! The ready-made scenarios in `scenarios/` load, and behave as their comments say.

use std::path::PathBuf;

use s3chaos::engine::Scenario;

fn scenario_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_loads_and_is_documented() {
    let files = scenario_files();
    assert!(files.len() >= 3, "at least three scenarios ship, found {files:?}");
    for file in files {
        let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!scenario.rules().is_empty(), "{} has no rules", file.display());
        let text = std::fs::read_to_string(&file).unwrap();
        let stem = file.file_stem().unwrap().to_str().unwrap();
        assert_eq!(scenario.name(), stem, "the scenario's name matches its file name");
        for section in ["What it reproduces:", "What a resilient client does:"] {
            assert!(text.contains(section), "{} lacks a `{section}` comment", file.display());
        }
    }
}

#[tokio::test]
async fn dead_bucket_hangs_archive_only() {
    use std::time::Duration;
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/dead-bucket.yaml")).unwrap();
    let h = crate::harness::Harness::start(&text).await;
    let c = h.single_attempt_client(Some(Duration::from_millis(300)));
    c.create_bucket().bucket("live").send().await.unwrap();
    assert!(c.head_bucket().bucket("live").send().await.is_ok());
    assert!(c.head_bucket().bucket("archive").send().await.is_err());
    assert_eq!(h.stats("archive-blackhole").injected, 1);
}

#[tokio::test]
async fn slowdown_storm_throttles_the_hot_prefix_only() {
    let text = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/slowdown-storm.yaml"))
        .unwrap();
    let h = crate::harness::Harness::start(&text).await;
    let c = h.single_attempt_client(None);
    c.create_bucket().bucket("bkt").send().await.unwrap();
    for key in ["hot/k", "cold/k"] {
        h.direct()
            .put_object()
            .bucket("bkt")
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(b"v"))
            .send()
            .await
            .unwrap();
    }
    let mut hot_failures = 0;
    for _ in 0..100 {
        assert!(c.head_object().bucket("bkt").key("cold/k").send().await.is_ok());
        if c.head_object().bucket("bkt").key("hot/k").send().await.is_err() {
            hot_failures += 1;
        }
    }
    // probability 0.3 with seed 2017: deterministic, and near 30.
    assert!(
        (15..=45).contains(&hot_failures),
        "{hot_failures} of 100 hot reads throttled"
    );
    assert_eq!(h.stats("spike/throttle-hot-reads").injected, hot_failures);
}

/// The shipped phased drill, placed mid-climb by anchoring it in the past: about half the
/// requests fail, and with the outage later, nearly all.
#[test]
fn escalating_errors_climbs_then_stays_down_then_ends() {
    use s3chaos::engine::Engine;
    let text =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/escalating-errors.yaml"))
            .unwrap();
    let failing_share = |minutes_in: u64| {
        let start = std::time::SystemTime::now() - std::time::Duration::from_secs(minutes_in * 60);
        let anchored = format!("start_at: {}\n{text}", humantime::format_rfc3339_seconds(start));
        let engine = Engine::new(Scenario::parse(&anchored, "escalating-errors.yaml").unwrap());
        let (method, uri) = (http::Method::GET, "/b/k".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        let info = s3chaos::s3::Classifier::default().classify(&method, &uri, &headers);
        (0..2000).filter(|_| engine.decide(&info).is_some()).count() as f64 / 2000.0
    };
    assert_eq!(failing_share(1), 0.0, "calm");
    let mid = failing_share(7);
    assert!((0.4..0.6).contains(&mid), "halfway up the climb: {mid}");
    assert!(failing_share(15) > 0.95, "outage");
    assert_eq!(failing_share(21), 0.0, "over: healthy");
}

/// Every built-in scenario, its timeline compressed to about two seconds, meets a real SDK
/// client doing everyday work (PUT, GET, HEAD, LIST, DELETE, a small multipart upload, a
/// look at the `archive` bucket): the scenario injects faults, and once it is halted the
/// same client works again. Scenarios without phases run until their first fault (their
/// draws are seeded, so that point is fixed).
#[tokio::test]
async fn every_builtin_scenario_runs_time_compressed_against_the_sdk() {
    for (name, text) in s3chaos::library::BUILTIN {
        run_compressed(name, text).await;
    }
}

async fn run_compressed(name: &'static str, text: &'static str) {
    use aws_sdk_s3::primitives::ByteStream;
    use std::time::{Duration, Instant};

    let scenario = Scenario::parse(text, name).unwrap();
    let phased = scenario.timeline().has_phases();
    let total = scenario
        .timeline()
        .phases()
        .last()
        .and_then(|p| p.end())
        .unwrap_or(Duration::from_secs(2));
    let options = s3chaos::engine::EngineOptions {
        time_scale: Some(Duration::from_secs(2).as_secs_f64() / total.as_secs_f64()),
        ..Default::default()
    };
    let h = crate::harness::Harness::start_with(text, options).await;
    let bucket = "drill";
    for b in [bucket, "archive"] {
        h.direct().create_bucket().bucket(b).send().await.unwrap();
    }
    h.direct()
        .put_object()
        .bucket(bucket)
        .key("hot/seed")
        .body(ByteStream::from(vec![7u8; 300 << 10]))
        .send()
        .await
        .unwrap();
    // The drill's clock started when the scenario loaded; start it again now that the setup
    // is done (a scenario of another name starts afresh, then this one does).
    h.engine.replace(Scenario::empty());
    h.engine.replace(Scenario::parse(text, name).unwrap());

    // Short per-attempt timeouts: blackholes and stalls must not hold the test.
    let c = h.single_attempt_client(Some(Duration::from_millis(300)));
    let started = Instant::now();
    let injected = || h.engine.stats().iter().map(|s| s.injected).sum::<u64>();
    let mut i = 0u32;
    loop {
        let elapsed = started.elapsed();
        let done = if phased {
            elapsed > Duration::from_millis(2300)
        } else {
            injected() > 0 || elapsed > Duration::from_secs(20)
        };
        if done {
            break;
        }
        i += 1;
        let key = format!("hot/k{}", i % 8);
        let _ = c
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(vec![1u8; 1024]))
            .send()
            .await;
        if let Ok(got) = c.get_object().bucket(bucket).key("hot/seed").send().await {
            let _ = got.body.collect().await;
        }
        let _ = c.head_object().bucket(bucket).key(&key).send().await;
        let _ = c.list_objects_v2().bucket(bucket).prefix("hot/").send().await;
        let _ = c.delete_object().bucket(bucket).key(&key).send().await;
        if i.is_multiple_of(4) {
            let _ = c.head_bucket().bucket("archive").send().await;
        }
        if i.is_multiple_of(5)
            && let Ok(upload) = c.create_multipart_upload().bucket(bucket).key("mp").send().await
        {
            let _ = c
                .upload_part()
                .bucket(bucket)
                .key("mp")
                .upload_id(upload.upload_id().unwrap_or_default())
                .part_number(1)
                .body(ByteStream::from(vec![2u8; 1024]))
                .send()
                .await;
        }
    }
    assert!(injected() > 0, "{name}: no fault injected in {i} rounds");
    h.engine.halt("test over");
    let ok = h.client().get_object().bucket(bucket).key("hot/seed").send().await;
    assert!(ok.is_ok(), "{name}: the client works once the drill is halted: {ok:?}");
}
