//! s3chaos as a dev-dependency: a fault-injecting S3 endpoint inside a Rust test.
//!
//! [`ChaosS3::start`] gives a test an S3 endpoint on a free loopback port, served by the
//! embedded store in a temporary directory (or, with [`Builder::upstream`], proxying a real
//! one). Point the client under test at [`ChaosS3::endpoint`], put faults in front of it with
//! [`ChaosS3::fault`] (removed when the guard drops), and read what happened with
//! [`ChaosS3::events`] and [`ChaosS3::verdicts`]. Everything stops when the handle drops.
//!
//! ```
//! use s3chaos::testing::ChaosS3;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let chaos = ChaosS3::start().await?;
//! let s3 = client(chaos.endpoint()).await;
//! s3.create_bucket().bucket("tutorial").send().await?;
//! {
//!     // Two `503 SlowDown` for the next PUTs; the SDK's retries get over them.
//!     let _throttled = chaos.fault("{match: {operation: PutObject}, limit: 2, fault: {error: SlowDown}}")?;
//!     s3.put_object().bucket("tutorial").key("k").body(b"v".to_vec().into()).send().await?;
//! } // the rule is gone here
//! let events = chaos.events();
//! let statuses: Vec<_> = events.iter().filter(|e| e.key == "k").map(|e| e.status).collect();
//! assert_eq!(statuses, [Some(503), Some(503), Some(200)]);
//! assert!(chaos.verdicts().passed(), "the SDK backed off and recovered");
//! # Ok(()) }
//! # async fn client(endpoint: &str) -> aws_sdk_s3::Client {
//! #     let config = aws_sdk_s3::Config::builder()
//! #         .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
//! #         .region(aws_sdk_s3::config::Region::new("us-east-1"))
//! #         .endpoint_url(endpoint)
//! #         .force_path_style(true)
//! #         .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "test"))
//! #         .http_client(aws_smithy_http_client::Builder::new().build_http())
//! #         .build();
//! #     aws_sdk_s3::Client::from_conf(config)
//! # }
//! ```
//!
//! A rule is written as in a scenario file (YAML, or JSON), `ttl:` allowed; see the README's
//! scenario reference. The crate's `examples/` hold a test of an `aws-sdk-s3` client and one
//! of the `object_store` crate's S3 backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::control::ControlError;
use crate::embedded::{Credentials, EmbeddedError, EmbeddedStore, StoreOptions};
use crate::engine::RuleStats;
use crate::frontend::{Frontend, FrontendError, Running};
use crate::proxy::{Upstream, UpstreamOptions};
use crate::scenario::Source;
use crate::telemetry::{RequestEvent, RequestLog, Telemetry};
use crate::verdict::{Expectations, Verdicts};

/// Why a [`ChaosS3`] did not start, or refused a rule.
#[derive(Debug, thiserror::Error)]
pub enum TestingError {
    #[error("cannot make the temporary directory {path}: {source}")]
    TempDir { path: PathBuf, source: std::io::Error },
    #[error("starting the embedded S3 store: {0}")]
    Store(#[from] EmbeddedError),
    #[error("the upstream: {0}")]
    Upstream(String),
    #[error("starting s3chaos: {0}")]
    Frontend(#[from] FrontendError),
    #[error("the event log: {0}")]
    Events(std::io::Error),
    #[error("the rule was refused: {0}")]
    Rule(#[from] ControlError),
}

/// How to start a [`ChaosS3`]: [`ChaosS3::builder`].
#[derive(Debug, Default)]
pub struct Builder {
    upstream: Option<String>,
    scenario: Option<String>,
    workers: Option<usize>,
}

impl Builder {
    /// Proxy this S3 endpoint instead of serving the embedded store.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = s3chaos::testing::ChaosS3::start().await?; // stands in for MinIO or S3
    /// let chaos = s3chaos::testing::ChaosS3::builder().upstream(store.endpoint()).start().await?;
    /// assert_ne!(chaos.endpoint(), store.endpoint());
    /// # Ok(()) }
    /// ```
    pub fn upstream(mut self, url: impl Into<String>) -> Builder {
        self.upstream = Some(url.into());
        self
    }

    /// Run this scenario (a scenario file's YAML) from the start.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::builder()
    ///     .scenario_yaml("name: t\nrules:\n  - {name: slow, fault: {latency: 10ms}}\n")
    ///     .start()
    ///     .await?;
    /// assert_eq!(chaos.stats()[0].name, "slow");
    /// # Ok(()) }
    /// ```
    pub fn scenario_yaml(mut self, yaml: impl Into<String>) -> Builder {
        self.scenario = Some(yaml.into());
        self
    }

    /// Proxy worker threads (default 1: a test needs no more).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::builder().workers(2).start().await?;
    /// # let _ = chaos;
    /// # Ok(()) }
    /// ```
    pub fn workers(mut self, workers: usize) -> Builder {
        self.workers = Some(workers.max(1));
        self
    }

    /// Starts it: the store (unless an upstream was given) and the proxy, on free ports.
    pub async fn start(self) -> Result<ChaosS3, TestingError> {
        let dir = TempDir::new()?;
        let (upstream_url, store) = match self.upstream {
            Some(url) => (url, None),
            None => {
                let options = StoreOptions {
                    credentials: Credentials::Any,
                    domains: Vec::new(),
                    durability: Default::default(),
                };
                let store = EmbeddedStore::start_with(loopback(), &dir.0.join("data"), options).await?;
                (store.url(), Some(store))
            }
        };
        let upstream = Upstream::new(&upstream_url, &UpstreamOptions::default())
            .map_err(|e| TestingError::Upstream(e.to_string()))?;
        let events_path = dir.0.join("events.jsonl");
        let log = RequestLog::open(&events_path, 65_536).map_err(TestingError::Events)?;
        let telemetry = Arc::new(Telemetry::new(Some(log)));
        let source = match self.scenario {
            Some(text) => Source::text(text, "scenario_yaml"),
            None => Source::None,
        };
        let running = Frontend::builder(loopback(), upstream, source)
            .telemetry(telemetry.clone())
            .workers(self.workers.unwrap_or(1))
            .start()?;
        Ok(ChaosS3 {
            endpoint: format!("http://{}", running.addr),
            running: Some(running),
            telemetry,
            store,
            events_path,
            _dir: dir,
        })
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A running s3chaos for one test; stops when dropped.
pub struct ChaosS3 {
    endpoint: String,
    running: Option<Running>,
    telemetry: Arc<Telemetry>,
    store: Option<EmbeddedStore>,
    events_path: PathBuf,
    // Last: removed after everything that writes into it has stopped.
    _dir: TempDir,
}

impl ChaosS3 {
    /// How to start one with an upstream, a scenario or more workers.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The embedded store in a temporary directory, behind s3chaos, on free loopback ports.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// assert!(chaos.endpoint().starts_with("http://127.0.0.1:"));
    /// # Ok(()) }
    /// ```
    pub async fn start() -> Result<ChaosS3, TestingError> {
        Builder::default().start().await
    }

    /// The S3 endpoint to give the client under test (path-style; any access key whose
    /// secret is the same string works with the embedded store, e.g. `test`/`test`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("running until dropped")
    }

    /// Adds a rule (as a scenario file writes one) in front of the file's rules, until the
    /// returned guard drops. A rule the scenario format refuses is an error saying why.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// let guard = chaos.fault("{name: dead, match: {bucket: archive}, fault: blackhole}")?;
    /// assert_eq!(guard.name(), "api/dead");
    /// assert!(chaos.stats().iter().any(|r| r.name == "api/dead"));
    /// drop(guard);
    /// assert!(chaos.stats().is_empty());
    /// let refused = chaos.fault("{fault: {error: SlowDwn}}").err().unwrap();
    /// assert!(refused.to_string().contains("unknown S3 error code `SlowDwn`"), "{refused}");
    /// # Ok(()) }
    /// ```
    pub fn fault(&self, rule: &str) -> Result<FaultGuard<'_>, TestingError> {
        let name = self.running().control.add_rule(rule)?;
        Ok(FaultGuard { chaos: self, name })
    }

    /// The kill switch: every fault off (traffic passes untouched) until [`ChaosS3::resume`].
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// chaos.halt("the test has seen enough");
    /// assert_eq!(chaos.halted().as_deref(), Some("the test has seen enough"));
    /// chaos.resume();
    /// assert_eq!(chaos.halted(), None);
    /// # Ok(()) }
    /// ```
    pub fn halt(&self, reason: &str) {
        self.running().engine.halt(reason);
    }

    /// Faults on again after [`ChaosS3::halt`] (see its example).
    pub fn resume(&self) {
        self.running().engine.resume();
    }

    /// Why the drill is halted, if it is (see [`ChaosS3::halt`]'s example).
    pub fn halted(&self) -> Option<String> {
        self.running().engine.halted()
    }

    /// Each rule in force with its counters: how many requests it matched, how many it
    /// faulted.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// let _g = chaos.fault("{name: r, fault: reset}")?;
    /// assert_eq!((chaos.stats()[0].matched, chaos.stats()[0].injected), (0, 0));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Vec<RuleStats> {
        self.running().engine.stats()
    }

    /// Every request that has ended so far, oldest first: operation, key, status, how it
    /// ended (`outcome`), the rule and fault that hit it, the SDK's attempt number...
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// assert!(chaos.events().is_empty());
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> Vec<RequestEvent> {
        if let Some(log) = self.telemetry.request_log() {
            log.flush();
        }
        crate::verdict::read_events(&self.events_path).unwrap_or_default()
    }

    /// The event log's path (it is removed with the handle), for `s3chaos report` or
    /// `s3chaos verdict` on a test's run.
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// assert!(chaos.events_path().ends_with("events.jsonl"));
    /// # Ok(()) }
    /// ```
    pub fn events_path(&self) -> &Path {
        &self.events_path
    }

    /// The requests so far judged against the scenario's `expect:` (or the default checks:
    /// no tight retry loop, no request left held, no multipart upload left open).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// let verdicts = chaos.verdicts();
    /// assert!(verdicts.passed());
    /// assert_eq!(verdicts.requests, 0);
    /// # Ok(()) }
    /// ```
    pub fn verdicts(&self) -> Verdicts {
        let expectations = Expectations::of_scenario(&self.running().engine.scenario());
        crate::verdict::judge(&self.events(), &expectations)
    }
}

impl Drop for ChaosS3 {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop();
        }
        if let Some(log) = self.telemetry.request_log() {
            log.close();
        }
        if let Some(store) = self.store.take() {
            store.task.abort();
        }
    }
}

/// A rule added by [`ChaosS3::fault`]; removed when dropped.
#[must_use = "the rule is removed as soon as the guard drops"]
pub struct FaultGuard<'a> {
    chaos: &'a ChaosS3,
    name: String,
}

impl FaultGuard<'_> {
    /// The rule's name in the running scenario (`api/NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This rule's counters (`None` once its `ttl` removed it).
    ///
    /// ```
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let chaos = s3chaos::testing::ChaosS3::start().await?;
    /// let guard = chaos.fault("{fault: {latency: 1ms}}")?;
    /// assert_eq!(guard.stats().map(|s| s.injected), Some(0));
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Option<RuleStats> {
        self.chaos.stats().into_iter().find(|s| s.name == self.name)
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        if let Some(running) = &self.chaos.running {
            // Already gone when its `ttl` ran out: nothing to do.
            let _ = running.control.remove_rule(&self.name);
        }
    }
}

/// A directory removed on drop (the crate does not depend on `tempfile`).
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, TestingError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "s3chaos-test-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).map_err(|source| TestingError::TempDir {
            path: path.clone(),
            source,
        })?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
