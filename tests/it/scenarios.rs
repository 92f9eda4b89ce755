//! The ready-made scenarios in `scenarios/` load, and behave as their comments say.

use std::path::PathBuf;

use s3chaos::scenario::Scenario;

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
    assert_eq!(h.stats("throttle-hot-reads").injected, hot_failures);
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
