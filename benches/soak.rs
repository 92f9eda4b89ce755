//! The soak: s3chaos (a real `s3chaos run` process in front of a real `s3chaos store`)
//! under many concurrent clients doing mixed S3 operations while about 10% of requests are
//! faulted, for a bounded time. Every few seconds it samples the proxy's resident memory,
//! open file descriptors and threads (from /proc) and its request and fault counters (from
//! the admin API); after the load it checks that memory stopped growing once warmed up and
//! that descriptors went back down when the clients left.
//!
//! Long run: `cargo run --release --features bench --bin s3chaos-bench -- soak --duration 10m --clients 200`
//! CI runs 60 seconds of it: `cargo test --test reliability soak`.
//!
//! This file is compiled into both (the bench driver and the reliability tests), so it uses
//! the library's own dependencies only.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// About 10% of requests faulted, with every kind a drill uses: errors, latency, resets,
/// truncated and corrupted downloads, and blackholes (which the clients' timeout leaves).
pub const SCENARIO: &str = r#"
name: soak
seed: 7
rules:
  - {name: slowdown, probability: 0.04, fault: {error: SlowDown}}
  - {name: internal-error, probability: 0.02, fault: {error: InternalError}}
  - {name: latency, probability: 0.02, fault: {latency: 100ms}}
  - {name: reset, probability: 0.005, fault: reset}
  - {name: truncate, match: {operation: GetObject}, probability: 0.01, fault: {truncate: {after_bytes: 100}}}
  - {name: corrupt, match: {operation: GetObject}, probability: 0.01, fault: {corrupt: {bytes: 1}}}
  - {name: blackhole, probability: 0.001, fault: blackhole}
"#;

/// Runs at least this long are checked for flat memory after warm-up.
pub const FLATNESS_RUN: Duration = Duration::from_secs(300);
/// The most a shorter run may use: a 10-minute release run plateaus under 60 MiB.
pub const SHORT_RUN_CEILING_KIB: u64 = 192 * 1024;

pub struct Settings {
    pub duration: Duration,
    pub clients: usize,
    pub sample_every: Duration,
}

impl Settings {
    /// The warm-up: the first quarter of the run, at most two minutes. Memory may grow in it
    /// (pools, buffers, allocator arenas); after it, it must not.
    pub fn warm_up(&self) -> Duration {
        (self.duration / 4).min(Duration::from_secs(120))
    }
}

/// One look at the proxy process.
#[derive(Clone, Debug)]
pub struct Sample {
    pub at: Duration,
    pub rss_kib: u64,
    pub fds: usize,
    pub threads: usize,
    pub requests: u64,
    pub faults: u64,
    pub open_connections: u64,
    pub blackholed: u64,
    /// Kept-alive upstream connections in s3chaos's pools (each an open descriptor).
    pub upstream_idle: u64,
}

pub struct Report {
    pub settings_line: String,
    pub samples: Vec<Sample>,
    /// Once the clients have gone.
    pub after: Sample,
    /// The first sample after warm-up.
    pub warm: Sample,
    pub ok: u64,
    pub failed: u64,
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!("{}\n", self.settings_line);
        let _ = writeln!(
            out,
            "{:>7} {:>9} {:>6} {:>7} {:>10} {:>8} {:>6} {:>10}",
            "t (s)", "RSS MiB", "FDs", "threads", "requests", "faults", "conns", "blackholed"
        );
        for s in self.samples.iter().chain(std::iter::once(&self.after)) {
            let _ = writeln!(
                out,
                "{:>7} {:>9.1} {:>6} {:>7} {:>10} {:>8} {:>6} {:>10}",
                if std::ptr::eq(s, &self.after) {
                    "after".to_owned()
                } else {
                    format!("{:.0}", s.at.as_secs_f64())
                },
                s.rss_kib as f64 / 1024.0,
                s.fds,
                s.threads,
                s.requests,
                s.faults,
                s.open_connections,
                s.blackholed
            );
        }
        let end = self.samples.last().unwrap_or(&self.warm);
        let _ = writeln!(
            out,
            "client operations: {} succeeded, {} failed (faults and their effects); faults injected: {} of {} requests ({:.1}%)",
            self.ok,
            self.failed,
            self.after.faults,
            self.after.requests,
            100.0 * self.after.faults as f64 / self.after.requests.max(1) as f64
        );
        let _ = writeln!(
            out,
            "memory after warm-up: {:.1} MiB at {:.0} s, {:.1} MiB at {:.0} s (peak {:.1} MiB)",
            self.warm.rss_kib as f64 / 1024.0,
            self.warm.at.as_secs_f64(),
            end.rss_kib as f64 / 1024.0,
            end.at.as_secs_f64(),
            self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0
        );
        let _ = writeln!(
            out,
            "after the clients left: {} descriptors, {} of them idle upstream connections kept alive",
            self.after.fds, self.after.upstream_idle
        );
        out
    }

    /// What a soak must show: descriptors back near where they were once the clients left
    /// (idle pooled upstream connections may stay, at most one per client), no connection
    /// or blackhole left open, traffic that really flowed and was really faulted, and
    /// memory that stops growing. Memory takes about two minutes to settle under this load
    /// (connection buffers grow as large bodies pass), so a run of [`FLATNESS_RUN`] or more
    /// must be flat after warm-up (within 10% or 8 MiB, whichever is more: allocator
    /// noise); a shorter one (CI's minute) is held to [`SHORT_RUN_CEILING_KIB`], which
    /// catches a leak per request but not a slow one.
    pub fn verdict(&self, clients: usize, duration: Duration) -> Result<(), String> {
        let mut problems = Vec::new();
        let end = self.samples.last().unwrap_or(&self.warm);
        let peak = self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        if duration >= FLATNESS_RUN {
            let allowed = (self.warm.rss_kib / 10).max(8 * 1024);
            if end.rss_kib > self.warm.rss_kib + allowed {
                problems.push(format!(
                    "memory grew after warm-up: {} KiB -> {} KiB",
                    self.warm.rss_kib, end.rss_kib
                ));
            }
        } else if peak > SHORT_RUN_CEILING_KIB {
            problems.push(format!(
                "memory reached {peak} KiB, over the {SHORT_RUN_CEILING_KIB} KiB a short run may use"
            ));
        }
        let first = self.samples.first().unwrap_or(&self.warm);
        // Every descriptor is accounted for: those at the start, plus the kept-alive upstream
        // connections the pools report, plus a few (the event log, admin connections). Each
        // worker's pool holds at most as many as it had requests in flight at once.
        let idle = self.after.upstream_idle as usize;
        if self.after.fds > first.fds + idle + 16 {
            problems.push(format!(
                "descriptors: {} at the start, {} after the clients left, of which {idle} are idle upstream connections",
                first.fds, self.after.fds
            ));
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        if idle > clients * workers {
            problems.push(format!(
                "{idle} idle upstream connections for {clients} clients on {workers} workers"
            ));
        }
        if self.after.open_connections != 0 || self.after.blackholed != 0 {
            problems.push(format!(
                "after the clients left: {} client connections and {} blackholes still open",
                self.after.open_connections, self.after.blackholed
            ));
        }
        if self.ok == 0 || self.after.faults == 0 {
            problems.push(format!(
                "{} operations succeeded and {} faults fired",
                self.ok, self.after.faults
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// Runs the soak against `bin` (the s3chaos binary).
pub fn run(bin: &Path, settings: &Settings) -> Result<Report> {
    let work = tempdir()?;
    let result = run_in(bin, settings, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn tempdir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("s3chaos-soak-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Kills its processes when dropped, whatever happened.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn wait_listening(addr: SocketAddr) -> Result<()> {
    for _ in 0..200 {
        if std::net::TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on {addr} after 10 s")
}

fn run_in(bin: &Path, settings: &Settings, work: &Path) -> Result<Report> {
    let (store, proxy, admin) = (free_port()?, free_port()?, free_port()?);
    let scenario = work.join("soak.yaml");
    std::fs::write(&scenario, SCENARIO)?;
    let quiet = |cmd: &mut Command| {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env("RUST_LOG", "error")
            .spawn()
    };
    let mut children = Children(Vec::new());
    children.0.push(
        quiet(
            Command::new(bin)
                .args(["store", "--anonymous", "--listen"])
                .arg(store.to_string())
                .arg("--data-dir")
                .arg(work.join("data")),
        )
        .context("starting the store")?,
    );
    wait_listening(store)?;
    children.0.push(
        quiet(
            Command::new(bin)
                .args(["run", "--listen"])
                .arg(proxy.to_string())
                .arg("--upstream")
                .arg(format!("http://{store}"))
                .arg("--admin")
                .arg(admin.to_string())
                .arg("--scenario")
                .arg(&scenario),
        )
        .context("starting s3chaos")?,
    );
    wait_listening(proxy)?;
    wait_listening(admin)?;
    let pid = children.0[1].id();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = runtime.block_on(drive(pid, proxy, admin, settings))?;
    drop(children);
    Ok(report)
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn sample(pid: u32, admin: SocketAddr, started: Instant, http: &HttpClient) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the proxy process is gone")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let resp = http
        .get(format!("http://{admin}/status").parse()?)
        .await
        .context("GET /status")?;
    let body = resp.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).context("the /status JSON")?;
    let number = |name: &str| json.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(Sample {
        at: started.elapsed(),
        rss_kib: field("VmRSS:"),
        fds,
        threads: field("Threads:") as usize,
        requests: number("requests"),
        faults: number("faults_injected"),
        open_connections: number("open_connections"),
        blackholed: number("blackholed_connections"),
        upstream_idle: number("upstream_idle_connections"),
    })
}

async fn drive(pid: u32, proxy: SocketAddr, admin: SocketAddr, settings: &Settings) -> Result<Report> {
    let admin_http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    let mut samples = vec![sample(pid, admin, started, &admin_http).await?];
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..settings.clients)
        .map(|n| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(client_loop(n, proxy, stop, ok, failed))
        })
        .collect();
    let mut warm = None;
    while started.elapsed() < settings.duration {
        tokio::time::sleep(
            settings
                .sample_every
                .min(settings.duration.saturating_sub(started.elapsed())),
        )
        .await;
        let s = sample(pid, admin, started, &admin_http).await?;
        if warm.is_none() && s.at >= settings.warm_up() {
            warm = Some(s.clone());
        }
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    // The clients (and their connections) are gone; let the proxy notice.
    let mut after = sample(pid, admin, started, &admin_http).await?;
    for _ in 0..100 {
        if after.open_connections == 0 && after.blackholed == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        after = sample(pid, admin, started, &admin_http).await?;
    }
    let warm = warm.unwrap_or_else(|| samples[samples.len() / 2].clone());
    Ok(Report {
        settings_line: format!(
            "soak: {} s, {} clients, mixed operations, ~10% of requests faulted",
            settings.duration.as_secs(),
            settings.clients
        ),
        samples,
        after,
        warm,
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
    })
}

/// One client: its own connection pool (as separate apps have), keys of its own, a timeout
/// that leaves blackholes, and a mix of the operations apps do most.
async fn client_loop(n: usize, proxy: SocketAddr, stop: Arc<AtomicBool>, ok: Arc<AtomicU64>, failed: Arc<AtomicU64>) {
    let http: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut rng = StdRng::seed_from_u64(n as u64);
    let bucket = format!("soak{}", n % 8);
    let _ = request(&http, "PUT", &format!("http://{proxy}/{bucket}"), Bytes::new(), None).await;
    let payload = Bytes::from(vec![n as u8; 256 * 1024]);
    // Bounded: a soak of hours at full speed stays far below this.
    for _ in 0..100_000_000u64 {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let key = format!("c{n}/k{}", rng.random_range(0..16));
        let url = format!("http://{proxy}/{bucket}/{key}");
        let roll = rng.random_range(0..100);
        let result = match roll {
            0..40 => request(&http, "GET", &url, Bytes::new(), None).await,
            40..60 => {
                let len = if rng.random_bool(0.02) {
                    payload.len()
                } else {
                    rng.random_range(0..16 * 1024)
                };
                request(&http, "PUT", &url, payload.slice(..len), None).await
            }
            60..70 => request(&http, "HEAD", &url, Bytes::new(), None).await,
            70..80 => {
                let list = format!("http://{proxy}/{bucket}?list-type=2&prefix=c{n}/");
                request(&http, "GET", &list, Bytes::new(), None).await
            }
            80..90 => request(&http, "DELETE", &url, Bytes::new(), None).await,
            _ => request(&http, "GET", &url, Bytes::new(), Some("bytes=10-99")).await,
        };
        match result {
            Ok(status) if status < 500 => ok.fetch_add(1, Ordering::Relaxed),
            _ => failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Sends one request and reads the whole answer; the status, or an error for a reset,
/// a cut body or the 5 s timeout.
async fn request(http: &HttpClient, method: &str, url: &str, body: Bytes, range: Option<&str>) -> Result<u16> {
    let mut req = http::Request::builder().method(method).uri(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let req = req.body(Full::new(body))?;
    let exchange = async {
        let resp = http.request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok::<u16, anyhow::Error>(status)
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .context("timed out")?
}
