//! A real S3 server (the embedded store, SigV4 checked) on loopback, s3chaos in front of it, and real
//! aws-sdk-s3 clients for either.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use s3chaos::admin::{Admin, AdminState};
use s3chaos::control::Control;
use s3chaos::drill::Supervisor;
use s3chaos::embedded::{self, EmbeddedStore};
use s3chaos::engine::{Engine, EngineOptions, RuleStats};
use s3chaos::frontend::{Frontend, Running};
use s3chaos::proxy::{ServeOptions, Upstream, UpstreamOptions};
use s3chaos::scenario::Source;
use s3chaos::telemetry::{RequestEvent, RequestLog, Telemetry};

pub const ACCESS_KEY: &str = "AKIAS3CHAOSTEST";
pub const SECRET_KEY: &str = "s3chaos-test-secret";

pub struct Harness {
    pub store: EmbeddedStore,
    pub proxy: SocketAddr,
    pub engine: Arc<Engine>,
    pub telemetry: Arc<Telemetry>,
    handle: Option<Running>,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.store.task.abort();
    }
}

impl Harness {
    /// Store + proxy running `scenario` (YAML text).
    pub async fn start(scenario: &str) -> Harness {
        Harness::start_with(scenario, EngineOptions::default()).await
    }

    /// The same, with engine options (time scale, dry run, ...).
    pub async fn start_with(scenario: &str, options: EngineOptions) -> Harness {
        Harness::start_full(scenario, options, false).await
    }

    /// Store + proxy writing the event log (`--events`) to [`Harness::events_path`].
    pub async fn start_logged(scenario: &str) -> Harness {
        Harness::start_full(scenario, EngineOptions::default(), true).await
    }

    /// The same, serving clients with `serve`'s limits (timeouts, connection cap).
    pub async fn start_serving(scenario: &str, serve: ServeOptions) -> Harness {
        Harness::start_full_serving(scenario, EngineOptions::default(), false, serve).await
    }

    async fn start_full(scenario: &str, options: EngineOptions, log: bool) -> Harness {
        Harness::start_full_serving(scenario, options, log, ServeOptions::default()).await
    }

    async fn start_full_serving(scenario: &str, options: EngineOptions, log: bool, serve: ServeOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = start_store(dir.path()).await;
        let upstream = Upstream::new(&store.url(), &UpstreamOptions::default()).unwrap();
        let request_log = log.then(|| RequestLog::open(&dir.path().join("events.jsonl"), 1024).unwrap());
        let telemetry = Arc::new(Telemetry::new(request_log));
        let (proxy, engine, handle) = start_proxy_serving(upstream, scenario, telemetry.clone(), options, serve).await;
        Harness {
            store,
            proxy,
            engine,
            telemetry,
            handle: Some(handle),
            _dir: dir,
        }
    }

    fn running(&self) -> &Running {
        self.handle.as_ref().expect("the proxy is running")
    }

    /// Stops the proxy as the binary does at its end: its workers stop, and requests still
    /// held (blackholes) end as `still_held`. The store and the event log stay.
    pub fn stop_proxy(&mut self) {
        if let Some(running) = self.handle.take() {
            running.stop();
        }
    }

    pub fn events_path(&self) -> std::path::PathBuf {
        self._dir.path().join("events.jsonl")
    }

    /// The event log's lines once at least `n` are written (waits up to 10 s).
    pub async fn events(&self, n: usize) -> Vec<RequestEvent> {
        for _ in 0..200 {
            let text = std::fs::read_to_string(self.events_path()).unwrap_or_default();
            let lines: Vec<RequestEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if lines.len() >= n {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("fewer than {n} event lines after 10 s");
    }

    pub fn client(&self) -> Client {
        client_for(self.proxy, |c| c)
    }

    /// A client that makes one attempt per call, optionally with a per-attempt timeout, so a
    /// test sees each fault itself rather than the SDK's recovery from it.
    pub fn single_attempt_client(&self, attempt_timeout: Option<Duration>) -> Client {
        client_for(self.proxy, |b| single_attempt(b, attempt_timeout))
    }

    /// A client that talks to the store directly, bypassing s3chaos.
    pub fn direct(&self) -> Client {
        client_for(self.store.addr, |c| c)
    }

    /// Connections this harness's proxy holds open for blackholes.
    pub fn blackholed(&self) -> usize {
        self.running().proxy.blackholed_connections()
    }

    /// The admin API for this harness's proxy, on a loopback port, with the drill supervisor
    /// running (rules' ttl, stop condition). `scenario` is the text it was started with.
    pub async fn admin(&self, scenario: &str, token: Option<&str>) -> (SocketAddr, Arc<Control>) {
        let control = Arc::new(Control::new(self.engine.clone(), scenario.into(), "test.yaml".into()));
        let admin = Admin::bind(
            "127.0.0.1:0".parse().unwrap(),
            AdminState {
                control: control.clone(),
                telemetry: self.telemetry.clone(),
                blackholed: self.running().proxy.blackholed_counter(),
                upstream_idle: Default::default(),
                token: token.map(str::to_owned),
            },
        )
        .await
        .unwrap();
        let addr = admin.local_addr();
        admin.spawn();
        Supervisor::new(control.clone()).spawn();
        (addr, control)
    }

    pub fn stats(&self, rule: &str) -> RuleStats {
        self.engine
            .stats()
            .into_iter()
            .find(|s| s.name == rule)
            .expect("rule exists")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy, path)
    }
}

/// The embedded store on a loopback port, with data under `dir`, checking signatures made
/// with [`ACCESS_KEY`] and [`SECRET_KEY`].
pub async fn start_store(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::start(
        dir,
        embedded::Credentials::Fixed {
            access_key: ACCESS_KEY.into(),
            secret_key: SECRET_KEY.into(),
        },
        &[],
    )
    .await
    .unwrap()
}

pub async fn start_proxy(upstream: Arc<Upstream>, scenario: &str) -> (SocketAddr, Arc<Engine>, Running) {
    start_proxy_with(upstream, scenario, Arc::default(), EngineOptions::default()).await
}

/// s3chaos in front of `upstream`, started as `s3chaos run` starts it (the library's builder).
pub async fn start_proxy_with(
    upstream: Arc<Upstream>,
    scenario: &str,
    telemetry: Arc<Telemetry>,
    options: EngineOptions,
) -> (SocketAddr, Arc<Engine>, Running) {
    start_proxy_serving(upstream, scenario, telemetry, options, ServeOptions::default()).await
}

/// [`start_proxy_with`], serving clients with `serve`'s limits.
pub async fn start_proxy_serving(
    upstream: Arc<Upstream>,
    scenario: &str,
    telemetry: Arc<Telemetry>,
    options: EngineOptions,
    serve: ServeOptions,
) -> (SocketAddr, Arc<Engine>, Running) {
    let running = Frontend::builder(
        "127.0.0.1:0".parse().unwrap(),
        upstream,
        Source::text(scenario, "test.yaml"),
    )
    .engine_options(options)
    .telemetry(telemetry)
    .serve_options(serve)
    // Two workers, as on a 2-core machine.
    .workers(2)
    .start()
    .unwrap();
    (running.addr, running.engine.clone(), running)
}

/// An SDK client as an app would configure it: path-style against an IP endpoint, standard
/// retries (3 attempts) with short backoff so tests stay quick.
pub fn client_for(
    addr: SocketAddr,
    f: impl FnOnce(aws_sdk_s3::config::Builder) -> aws_sdk_s3::config::Builder,
) -> Client {
    let builder = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
        .endpoint_url(format!("http://{addr}"))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(50)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    Client::from_conf(f(builder).build())
}

/// No retries, and an optional per-attempt timeout.
pub fn single_attempt(
    builder: aws_sdk_s3::config::Builder,
    attempt_timeout: Option<Duration>,
) -> aws_sdk_s3::config::Builder {
    let builder = builder.retry_config(RetryConfig::disabled());
    match attempt_timeout {
        Some(t) => builder.timeout_config(TimeoutConfig::builder().operation_attempt_timeout(t).build()),
        None => builder,
    }
}

/// Puts `len` random bytes at `bucket/key` directly in the store (creating the bucket),
/// and returns them.
pub async fn seed_object(h: &Harness, bucket: &str, key: &str, len: usize) -> Vec<u8> {
    let body = random_bytes(len, 77);
    let d = h.direct();
    let _ = d.create_bucket().bucket(bucket).send().await;
    d.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    body
}

/// Creates `bucket`, uploads `len` random bytes to `bucket/obj` and downloads them: the bytes
/// that come back must be the ones sent.
pub async fn round_trip(c: &Client, bucket: &str, len: usize, seed: u64) {
    c.create_bucket().bucket(bucket).send().await.unwrap();
    let body = random_bytes(len, seed);
    c.put_object()
        .bucket(bucket)
        .key("obj")
        .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket(bucket).key("obj").send().await.unwrap();
    assert!(
        got.body.collect().await.unwrap().into_bytes() == body,
        "byte-exact round trip"
    );
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut out = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut out);
    out
}

/// A plain HTTP response as a client on the wire sees it.
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Sends one unsigned request (for checks on the wire format, not on S3 semantics).
pub async fn raw(method: &str, url: &str) -> RawResponse {
    let client: HyperClient<HttpConnector, Full<Bytes>> = HyperClient::builder(TokioExecutor::new()).build_http();
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    RawResponse { status, headers, body }
}

/// The request line target and `Host` of a presigned GET, for raw-socket checks against the
/// signature-checking upstream.
/// A raw socket to the proxy that has sent a presigned GET of `bucket/key` (HTTP/1.1), for
/// tests that read the wire themselves.
pub async fn send_raw_get(h: &Harness, bucket: &str, key: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let (target, host) = presigned_get(h, bucket, key).await;
    let mut s = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    s.write_all(format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    s
}

/// A presigned request's path and query, and the Host it was signed for: what a raw-socket
/// test sends.
pub fn path_and_host(presigned: &aws_sdk_s3::presigning::PresignedRequest) -> (String, String) {
    let uri: http::Uri = presigned.uri().parse().unwrap();
    (
        uri.path_and_query().unwrap().to_string(),
        uri.authority().unwrap().to_string(),
    )
}

fn five_minutes() -> aws_sdk_s3::presigning::PresigningConfig {
    aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(300)).unwrap()
}

/// A presigned PUT of `bucket/key` (see [`path_and_host`]).
pub async fn presigned_put(h: &Harness, bucket: &str, key: &str) -> (String, String) {
    let presigned = h
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .presigned(five_minutes())
        .await
        .unwrap();
    path_and_host(&presigned)
}

/// A presigned GET of `bucket/key` (see [`path_and_host`]).
pub async fn presigned_get(h: &Harness, bucket: &str, key: &str) -> (String, String) {
    let presigned = h
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .presigned(five_minutes())
        .await
        .unwrap();
    path_and_host(&presigned)
}
