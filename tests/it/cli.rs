//! The `s3chaos` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_s3chaos");

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn validate_reports_file_line_column_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(&dir, "good.yaml", "name: ok\nrules:\n  - fault: {latency: 10ms}\n");
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\nrules:\n  - name: r\n    match: {operation: GetObjects}\n    fault: reset\n",
    );
    let out = Command::new(BIN).arg("validate").arg(&good).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:4:24: ", bad.display());
    assert!(stderr.contains(&expected), "expected `{expected}` in {stderr}");
    assert!(stderr.contains("unknown S3 operation `GetObjects`"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("good.yaml: ok"));

    let out = Command::new(BIN).arg("validate").arg(&good).output().unwrap();
    assert!(out.status.success());
}

#[test]
fn validate_accepts_the_shipped_scenarios() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    let out = Command::new(BIN).arg("validate").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn run_refuses_a_bad_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        &dir,
        "bad.yaml",
        "name: bad\nrules:\n  - fault: {error: SlowDown}\n    probability: 1.7\n",
    );
    let out = Command::new(BIN)
        .args(["run", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{}:4:18: ", bad.display())), "{stderr}");
    assert!(stderr.contains("probability must be between 0 and 1"), "{stderr}");
}

/// `--time-scale 1e-20` made a worker thread panic (`cannot convert float seconds to
/// Duration`); now it is refused at start with the range, before anything runs.
#[test]
fn run_refuses_a_time_scale_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("escalating.yaml");
    std::fs::write(&scenario, s3chaos::library::text("escalating-errors").unwrap()).unwrap();
    for scale in ["1e-20", "1e300", "0", "fast"] {
        let out = Command::new(BIN)
            .args(["run", "--listen", "127.0.0.1:0", "--time-scale", scale, "--scenario"])
            .arg(&scenario)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{scale}: a usage error: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains("--time-scale"), "{scale}: {stderr}");
    }
    let out = Command::new(BIN)
        .args(["run", "--time-scale", "1e-20"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside 1e-6..=1e6"));
}

/// A running `s3chaos run`, with its log lines as they come.
pub(crate) struct Running {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) admin: std::net::SocketAddr,
    /// Every line read so far.
    pub(crate) log: Vec<String>,
}

impl Running {
    fn start(args: &[&std::ffi::OsStr]) -> Running {
        Running::start_logging(args, "info")
    }

    /// [`Running::start`] with `RUST_LOG` set to `filter`.
    pub(crate) fn start_logging(args: &[&std::ffi::OsStr], filter: &str) -> Running {
        let mut child = Command::new(BIN)
            .arg("run")
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", filter)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running = Running {
            child,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            log: Vec::new(),
        };
        let line = running.wait_for("admin API on http://");
        let rest = line.split("admin API on http://").nth(1).unwrap();
        running.admin = rest.split_whitespace().next().unwrap().parse().unwrap();
        let line = running.wait_for("s3chaos listening on ");
        let rest = line.split("://").nth(1).unwrap();
        running.addr = rest.split_whitespace().next().unwrap().parse().unwrap();
        running
    }

    /// `s3chaos run` with its data under `dir`, the scenario `yaml` (if any) written to
    /// `dir/scenario.yaml`, and `extra` arguments.
    pub(crate) fn in_dir(dir: &tempfile::TempDir, yaml: Option<&str>, extra: &[&str]) -> Running {
        let data = dir.path().join("data");
        let mut args: Vec<&std::ffi::OsStr> = vec!["--data-dir".as_ref(), data.as_os_str()];
        let scenario = yaml.map(|y| write(dir, "scenario.yaml", y));
        if let Some(path) = &scenario {
            args.extend(["--scenario".as_ref(), path.as_os_str()]);
        }
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        Running::start(&args)
    }

    /// The next log line containing `needle` (panics after 20 s).
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with `{needle}`; log so far:\n{}", self.log.join("\n")));
            self.log.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Stops the process with SIGTERM and returns its whole log.
    pub(crate) fn finish(mut self) -> Vec<String> {
        self.signal("TERM");
        let _ = self.child.wait();
        // The reader thread ends at the end of stderr.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(10)) {
            self.log.push(line);
        }
        std::mem::take(&mut self.log)
    }

    /// Sends SIGTERM; true if the process exited within `limit` (its log is read on).
    pub(crate) fn stop_within(&mut self, limit: Duration) -> bool {
        self.signal("TERM");
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Resident memory of the process, in KiB (`VmRSS`).
    pub(crate) fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Open file descriptors of the process.
    pub(crate) fn descriptors(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The README's first command: `s3chaos run` with no upstream serves an embedded store that
/// an SDK can use with the credentials people already have in their CI (test/test).
#[tokio::test]
async fn run_without_upstream_serves_an_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::in_dir(&dir, None, &[]);
    assert!(
        running.log.iter().any(|l| l.contains("data_dir=")),
        "the log says where the data lives"
    );
    let addr = running.addr;

    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "ci"))
        .endpoint_url(format!("http://{addr}"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    c.create_bucket().bucket("first").send().await.unwrap();
    c.put_object()
        .bucket("first")
        .key("hello.txt")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hi"))
        .send()
        .await
        .unwrap();
    let got = c.get_object().bucket("first").key("hello.txt").send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"hi");
    assert!(
        dir.path().join("data/s3chaos-store").exists(),
        "the store lives in --data-dir"
    );
    assert!(
        dir.path().join("data/meta.sqlite").exists(),
        "its metadata database too"
    );
    assert!(!dir.path().join("data/first").exists(), "a bucket is not a folder");
}

/// A game day at the command line: the file is edited live (a bad edit is refused with its
/// line and column and the drill keeps running), SIGUSR1 is the big red button, SIGUSR2
/// resumes, SIGHUP reloads at once, SIGTERM stops cleanly.
#[tokio::test]
async fn live_reload_and_the_kill_switch_from_the_shell() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::in_dir(
        &dir,
        Some("name: drill\nrules:\n  - {name: down, match: {bucket: drill}, fault: {error: ServiceUnavailable}}\n"),
        &["--reload-poll", "100ms"],
    );
    let scenario = dir.path().join("scenario.yaml");
    // Unsigned requests to a bucket that does not exist: the store (any credentials, unsigned
    // too) answers 404 NoSuchBucket; the fault answers 503 before the store sees it.
    let url = format!("http://{}/drill", running.addr);
    let status = || async { crate::harness::raw("HEAD", &url).await.status };
    assert_eq!(status().await, 503);

    running.signal("USR1");
    running.wait_for("HALTED by SIGUSR1");
    assert_eq!(status().await, 404, "halted: traffic passes untouched");
    running.signal("USR2");
    running.wait_for("resumed by SIGUSR2");
    assert_eq!(status().await, 503);

    std::fs::write(
        &scenario,
        "name: drill\nrules:\n  - {name: down, fault: {error: ServiceUnavailabe}}\n",
    )
    .unwrap();
    let refused = running.wait_for("scenario not reloaded");
    assert!(refused.contains(&format!("{}:3:", scenario.display())), "{refused}");
    assert!(refused.contains("still running `drill`"), "{refused}");
    assert_eq!(status().await, 503, "the last good scenario keeps running");

    // SIGHUP applies a change without waiting for the poll.
    std::fs::write(&scenario, "name: drill\nrules: []\n").unwrap();
    running.signal("HUP");
    running.wait_for("scenario reloaded");
    assert_eq!(status().await, 404);

    running.signal("TERM");
    running.wait_for("SIGTERM; shutting down");
    let exit = running.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

/// The log narrates a drill (each phase, then its end), and `--dry-run` logs what it would
/// inject while the client is left alone.
#[tokio::test]
async fn the_log_narrates_the_drill_and_dry_run_injects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::in_dir(
        &dir,
        Some(
            "name: short\nphases:\n  - {name: first, duration: 2s}\n  - name: second\n    duration: 2s\n    rules:\n      - {name: down, fault: {error: ServiceUnavailable}}\n",
        ),
        &["--dry-run"],
    );
    running.wait_for("phase `second` started (2 of 2)");
    let url = format!("http://{}/drill", running.addr);
    assert_eq!(
        crate::harness::raw("HEAD", &url).await.status,
        404,
        "dry run: not injected"
    );
    let would = running.wait_for("dry run: would inject");
    assert!(
        would.contains("second/down") && would.contains("ServiceUnavailable"),
        "{would}"
    );
    running.wait_for("drill over");
}

/// `s3chaos ctl` against a running proxy, as a CI job uses it.
#[tokio::test]
async fn ctl_scripts_a_running_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let running = Running::in_dir(&dir, None, &[]);
    let admin = running.admin.to_string();
    let ctl = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("ctl")
            .args(["--admin", &admin])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let url = format!("http://{}/drill", running.addr);
    let status = || async { crate::harness::raw("HEAD", &url).await.status };

    let (ok, out, err) = ctl(&[
        "add-rule",
        "--op",
        "HeadBucket",
        "--error",
        "SlowDown",
        "--probability",
        "1",
        "--ttl",
        "60s",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "added rule `api/rule-1`");
    assert_eq!(status().await, 503);

    let (ok, out, _) = ctl(&["rules"]);
    assert!(ok);
    assert!(
        out.contains("api/rule-1") && out.contains("error SlowDown (503)"),
        "{out}"
    );

    let (ok, out, _) = ctl(&["halt", "--reason", "ci"]);
    assert!(ok && out.contains("halted"), "{out}");
    assert_eq!(status().await, 404);
    let (_, out, _) = ctl(&["status"]);
    assert!(out.contains("HALTED (admin API: ci)"), "{out}");
    let (ok, _, _) = ctl(&["resume"]);
    assert!(ok);
    assert_eq!(status().await, 503);

    let (ok, out, _) = ctl(&["--json", "status"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["halted"], false);
    assert!(json["faults_injected"].as_u64().unwrap() >= 2);

    let (ok, out, _) = ctl(&["events"]);
    assert!(ok && out.contains("api/rule-1") && out.contains("HeadBucket"), "{out}");

    let (ok, _, _) = ctl(&["rm-rule", "api/rule-1"]);
    assert!(ok);
    assert_eq!(status().await, 404);
    let (ok, _, err) = ctl(&["rm-rule", "api/rule-1"]);
    assert!(!ok, "removing it twice fails");
    assert!(err.contains("no rule added at run time is named"), "{err}");

    let bad = write(&dir, "bad.yaml", "name: x\nrules:\n  - fault: {error: SlowDwn}\n");
    let (ok, _, err) = ctl(&["apply", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains(":3:") && err.contains("unknown S3 error code"), "{err}");
    let good = write(
        &dir,
        "good.yaml",
        "name: good\nrules:\n  - {match: {bucket: drill}, fault: {error: InternalError}}\n",
    );
    let (ok, out, _) = ctl(&["apply", good.to_str().unwrap()]);
    assert!(ok && out.contains("applied scenario `good`"), "{out}");
    assert_eq!(status().await, 500);

    let (ok, out, _) = ctl(&["metrics"]);
    assert!(ok && out.contains("# TYPE s3chaos_requests_total counter"), "{out}");

    let (ok, _, err) = Command::new(BIN)
        .args(["ctl", "--admin", "127.0.0.1:1", "status"])
        .output()
        .map(|o| (o.status.success(), (), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert!(!ok);
    assert!(err.contains("cannot reach the admin API"), "{err}");
}

/// A real drill's event log becomes a report: the Markdown summary shows the phases, the
/// failures and the SDK's retries; the HTML page renders its charts in headless Chromium.
#[tokio::test]
async fn event_log_of_a_drill_becomes_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let mut running = Running::in_dir(
        &dir,
        Some(
            "name: reported\nphases:\n  - {name: calm, duration: 2s}\n  - name: outage\n    duration: 3s\n    rules:\n      - {name: down, match: {operation: GetObject}, fault: {error: ServiceUnavailable}}\n  - {name: recovery, duration: 1s}\n",
        ),
        &["--events", events.to_str().unwrap()],
    );
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "ci"))
        .endpoint_url(format!("http://{}", running.addr))
        .force_path_style(true)
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(
            aws_sdk_s3::config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .build();
    let c = aws_sdk_s3::Client::from_conf(conf);
    c.create_bucket().bucket("rep").send().await.unwrap();
    c.put_object()
        .bucket("rep")
        .key("k")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    // Traffic, then nothing for about 1.7 s in the middle of the outage (a client backing
    // off), then traffic again: at least one whole second without a request.
    let began = std::time::Instant::now();
    while began.elapsed() < Duration::from_millis(6500) {
        let t = began.elapsed();
        if t > Duration::from_millis(2600) && t < Duration::from_millis(4300) {
            tokio::time::sleep(Duration::from_millis(4300) - t).await;
            continue;
        }
        let _ = c.get_object().bucket("rep").key("k").send().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.signal("TERM");
    assert!(running.child.wait().unwrap().success());

    let out = Command::new(BIN)
        .args(["report", "--format", "md"])
        .arg(&events)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("Phases: calm") && md.contains("outage") && md.contains("recovery"),
        "{md}"
    );
    let row = md
        .lines()
        .find(|l| l.starts_with("| GetObject |"))
        .expect("a GetObject row");
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let failed: u64 = cells[3].split_whitespace().next().unwrap().parse().unwrap();
    let retries: u64 = cells[5].parse().unwrap();
    assert!(failed >= 10, "the outage failed GETs: {row}");
    // Each failed GetObject is retried by the SDK (attempt=2, 3) until its retry quota runs
    // dry, so retries show up, fewer than the failures.
    assert!(retries >= 10 && retries < failed, "the SDK's retries show: {row}");
    assert!(md.contains("the last requests succeeded"), "{md}");
    assert!(md.contains("| outage/down |"), "{md}");
    assert!(
        md.contains("## Verdicts") && md.contains("| `recovers_within` |"),
        "{md}"
    );

    let html_path = dir.path().join("report.html");
    let out = Command::new(BIN)
        .arg("report")
        .arg(&events)
        .arg("-o")
        .arg(&html_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "three charts");
    assert!(html.contains(r#"<h2 id="verdicts">"#), "the verdict table");
    assert_eq!(
        html.matches(r#"<tr class="verdict">"#).count(),
        10,
        "one row per expectation, and the observation"
    );
    assert!(
        html.contains("<details><summary>evidence</summary>"),
        "evidence one click away"
    );
    assert!(html.contains(r#"class="injected""#) && html.contains(r#"class="phase""#));
    for outside in ["<script", "src=", "href=", "@import", "url("] {
        assert!(!html.contains(outside), "self-contained: no `{outside}`");
    }
    // One band per phase on each chart, from the drill's own timeline (before, a band was
    // drawn per second that had requests: a dozen alternating bands, white gaps).
    for phase in ["calm", "outage", "recovery"] {
        assert_eq!(
            html.matches(&format!(r#"data-phase="{phase}""#)).count(),
            3,
            "{phase}: one band per chart"
        );
    }
    assert!(html.contains("<h2>By phase</h2>"), "per-phase rows");
    assert!(html.matches(r#"class="tick""#).count() >= 9, "a time axis with ticks");
    assert!(html.contains(r#"class="legend""#));
    render_in_chromium(&html_path, dir.path());
    let dom = dump_dom_in_chromium(&html_path, dir.path());
    if let Some(dom) = dom {
        let svgs: Vec<&str> = dom.split("<svg").skip(1).collect();
        assert_eq!(svgs.len(), 3, "three charts in the browser's DOM");
        assert_eq!(
            svgs[0].matches(r#"class="phase""#).count(),
            3,
            "as many bands as phases"
        );
        // The error line breaks at the empty second instead of dropping to 0 %.
        let lines = svgs[1].matches(r#"<polyline class="series""#).count()
            + svgs[1].matches(r#"<circle class="series""#).count();
        assert!(lines >= 2, "the error line has a gap: {lines} pieces");
        assert_eq!(
            svgs[0].matches(r#"<polyline class="series""#).count(),
            1,
            "the request rate is drawn through the gap (0 requests/s)"
        );
    }
}

/// The page's DOM as headless Chromium built it (`None`, and a loud skip, without Chromium).
fn dump_dom_in_chromium(page: &std::path::Path, dir: &std::path::Path) -> Option<String> {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("S3CHAOS_REQUIRE_CHROMIUM").is_none(),
            "S3CHAOS_REQUIRE_CHROMIUM is set but /usr/bin/chromium is missing"
        );
        eprintln!("SKIPPED the Chromium DOM check: /usr/bin/chromium is not installed (.ci/run installs it)");
        return None;
    }
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", dir.join("chromium-dom").display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        dom.contains("<svg"),
        "no DOM from Chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(dom)
}

/// Opens the page in headless Chromium and checks the charts were drawn: pixels of the
/// request-rate line (blue) and of the error line and fault marks (red). The screenshot is
/// kept as `target/test-artefacts/report.png`.
fn render_in_chromium(page: &std::path::Path, dir: &std::path::Path) {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("S3CHAOS_REQUIRE_CHROMIUM").is_none(),
            "S3CHAOS_REQUIRE_CHROMIUM is set but /usr/bin/chromium is missing"
        );
        eprintln!("SKIPPED the Chromium rendering check: /usr/bin/chromium is not installed (.ci/run installs it)");
        return;
    }
    let shot = dir.join("report.png");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1100,1700",
        ])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(shot.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let artefacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
    if std::fs::create_dir_all(&artefacts).is_ok() {
        let _ = std::fs::copy(&shot, artefacts.join("report.png"));
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let near = |px: &[u8], rgb: [u8; 3]| px.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) < 40);
    let (mut blue, mut red) = (0, 0);
    for px in buf[..info.buffer_size()].chunks(channels) {
        blue += usize::from(near(&px[..3], [0x1a, 0x73, 0xe8]));
        red += usize::from(near(&px[..3], [0xd9, 0x30, 0x25]));
    }
    assert!(blue > 200, "the request-rate line was drawn ({blue} blue pixels)");
    assert!(
        red > 200,
        "the error line and fault marks were drawn ({red} red pixels)"
    );
}

/// CI in one line: `s3chaos exec` runs a real SDK client (this test binary's
/// `exec_client_app`) against the proxy, passes its exit status through, and writes a JUnit
/// file with one case per rule and the drill report.
#[test]
fn exec_runs_a_command_against_the_proxy_and_reports_per_rule() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        &dir,
        "ci.yaml",
        "name: ci\nrules:\n  - {name: flaky-puts, match: {operation: PutObject}, every: 2, fault: {error: InternalError}}\n  - {name: never, match: {bucket: nowhere}, fault: reset}\n",
    );
    let (junit, report) = (dir.path().join("junit.xml"), dir.path().join("report.html"));
    let app = std::env::current_exe().unwrap();
    let out = Command::new(BIN)
        .arg("exec")
        .arg("--scenario")
        .arg(&scenario)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--junit")
        .arg(&junit)
        .arg("--report")
        .arg(&report)
        .arg("--")
        .arg(&app)
        .args(["--ignored", "--exact", "cli::exec_client_app"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("faults injected"), "the summary: {stderr}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    // The command, two rules, nine expectations and one observation (none stated: only the default checks
    // can fail, and the SDK's standard retries pass them).
    assert!(xml.contains(r#"tests="13" failures="1""#), "{xml}");
    assert!(xml.contains(r#"<testcase name="expect: backoff""#), "{xml}");
    assert!(
        stderr.contains("verdicts:") && stderr.contains("max_attempts"),
        "the verdict table: {stderr}"
    );
    assert!(
        xml.contains(r#"<testcase name="rule: flaky-puts" classname="s3chaos.ci"/>"#),
        "it fired and the client recovered: {xml}"
    );
    assert!(xml.contains("the rule never fired"), "{xml}");
    assert!(std::fs::read_to_string(&report).unwrap().contains("<svg"));

    let out = Command::new(BIN)
        .args(["exec", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--", "sh", "-c", "test -n \"$AWS_ENDPOINT_URL_S3\" && exit 7"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "the command's own status, with the endpoint exported"
    );
}

/// The app `exec_runs_a_command_against_the_proxy_and_reports_per_rule` runs under `s3chaos
/// exec`: an SDK client configured only from the environment, as a CI job's would be.
#[test]
#[ignore = "the command run by exec_runs_a_command_against_the_proxy_and_reports_per_rule"]
fn exec_client_app() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run under s3chaos exec: AWS_ENDPOINT_URL is exported");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "env"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        let c = aws_sdk_s3::Client::from_conf(conf);
        c.create_bucket().bucket("app").send().await.unwrap();
        for i in 0..6 {
            let body = format!("record {i}");
            c.put_object()
                .bucket("app")
                .key(format!("r{i}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(body.clone().into_bytes()))
                .send()
                .await
                .unwrap();
            let got = c.get_object().bucket("app").key(format!("r{i}")).send().await.unwrap();
            assert_eq!(got.body.collect().await.unwrap().into_bytes(), body.as_bytes());
        }
    });
}

/// `--ready-file`: a harness that asked for port 0 learns both addresses from a file written
/// once they are bound (the Python package starts the binary this way).
#[test]
fn the_ready_file_names_the_bound_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready.json");
    let running = Running::in_dir(&dir, None, &["--ready-file", ready.to_str().unwrap()]);
    // Written after the start-up log lines `Running` waits for.
    for _ in 0..200 {
        if ready.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let said: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
    assert_eq!(said["endpoint"], format!("http://{}", running.addr));
    assert_eq!(said["admin"], format!("http://{}", running.admin));
    assert!(!dir.path().join("ready.tmp").exists(), "written aside, then renamed");
    running.finish();
}

/// The embedded store's test credentials for a command run by a test, whatever the machine's
/// own AWS settings are.
pub(crate) fn test_credentials(command: &mut Command) -> &mut Command {
    command
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
}

/// Whether python3 can import `modules` (`"boto3, pytest"`). If not, `test` is skipped
/// loudly, or fails under S3CHAOS_REQUIRE_PYTHON (which `.ci/run` sets once it installed them).
pub(crate) fn python_with(modules: &str, test: &str) -> bool {
    let ready = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var_os("S3CHAOS_REQUIRE_PYTHON").is_none(),
            "S3CHAOS_REQUIRE_PYTHON is set but python3 with {modules} is missing"
        );
        eprintln!("SKIPPED {test}: python3 with {modules} is not installed (.ci/run installs them)");
    }
    ready
}

/// The shipped pytest example (boto3, the most used S3 SDK) under `s3chaos exec`, as the
/// GitHub Actions example runs it. Needs python3 with boto3 and pytest: `.ci/run` installs
/// them and sets S3CHAOS_REQUIRE_PYTHON=1; elsewhere the test is skipped with a message.
#[test]
fn exec_runs_the_pytest_example_with_boto3() {
    if !python_with("boto3, pytest", "the boto3/pytest example") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/examples/pytest");
    let out = test_credentials(
        Command::new(BIN)
            .args(["exec", "--scenario"])
            .arg(example.join("drill.yaml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--junit")
            .arg(&junit)
            .args(["--", "python3", "-m", "pytest", "-q", "-p", "no:cacheprovider"])
            .arg(&example),
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 passed"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testcase name="rule: put-stored-but-500" classname="s3chaos.pytest-example"/>"#),
        "the ambiguous PUTs fired and boto3 got over them: {xml}"
    );
    assert!(
        xml.contains(r#"<testcase name="observed: ambiguous_writes""#)
            && xml.contains("writes done but reported failed"),
        "what boto3 did after the ambiguous PUTs: {xml}"
    );
    for expectation in [
        "backoff",
        "max_attempts",
        "recovers_within",
        "no_open_multipart_uploads",
    ] {
        let case = format!(r#"<testcase name="expect: {expectation}" classname="s3chaos.pytest-example">"#);
        let at = xml.find(&case).unwrap_or_else(|| panic!("{case} in {xml}"));
        let rest = &xml[at..xml[at..].find("</testcase>").map_or(xml.len(), |e| at + e)];
        assert!(!rest.contains("<failure"), "boto3 meets `{expectation}`: {rest}");
    }
}

/// One process, two regions: the main listener plays a dead us-east-1 (every request held
/// unanswered), a `--route` a healthy us-west-2 in front of the same store. An app-style
/// loop with a per-attempt timeout fails over from the dead endpoint to the live one, and
/// every record it writes is there.
#[tokio::test]
async fn an_app_fails_over_from_a_dead_listener_to_a_live_route() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::in_dir(
        &dir,
        Some("name: us-east-1-down\nrules:\n  - {name: dead, fault: blackhole}\n"),
        &["--route", "listen=127.0.0.1:0"],
    );
    let line = running.wait_for("route listening on http://");
    let route: std::net::SocketAddr = line
        .split("route listening on http://")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let client = |addr: std::net::SocketAddr| {
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "app"))
            .endpoint_url(format!("http://{addr}"))
            .force_path_style(true)
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(300))
                    .build(),
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    };
    let endpoints = [client(running.addr), client(route)];
    endpoints[1].create_bucket().bucket("records").send().await.unwrap();
    let mut failovers = 0;
    for i in 0..5 {
        let body = format!("record {i}");
        let mut stored = false;
        for (n, c) in endpoints.iter().enumerate() {
            let put = c
                .put_object()
                .bucket("records")
                .key(format!("r{i}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(body.clone().into_bytes()))
                .send()
                .await;
            if put.is_ok() {
                stored = true;
                failovers += n;
                break;
            }
        }
        assert!(stored, "record {i} stored through one endpoint or the other");
    }
    assert_eq!(failovers, 5, "every write failed over from the dead endpoint");
    for i in 0..5 {
        let got = endpoints[1]
            .get_object()
            .bucket("records")
            .key(format!("r{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            got.body.collect().await.unwrap().into_bytes(),
            format!("record {i}").as_bytes()
        );
    }
}

/// SIGTERM: the listener closes at once, the request in flight (held by a 1.5 s latency)
/// still gets its answer, then the process exits 0.
#[tokio::test]
async fn sigterm_lets_the_request_in_flight_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::in_dir(
        &dir,
        Some(
            "name: slow\nrules:\n  - {name: slow, match: {bucket: slow}, fault: {latency: 1500ms}}\n  - {name: hole, match: {bucket: hole}, fault: blackhole}\n",
        ),
        &["--shutdown-grace", "10s"],
    );
    // A blackholed connection does not hold the stop up, and is let go.
    let mut held = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    held.write_all(b"HEAD /hole HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut in_flight = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    in_flight
        .write_all(b"HEAD /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.signal("TERM");
    running.wait_for("no longer accepting");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = tokio::net::TcpStream::connect(running.addr).await;
    assert!(refused.is_err(), "new connections are refused while draining");
    let mut answer = vec![0u8; 1024];
    let n = in_flight.read(&mut answer).await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 404"),
        "the request in flight got the store's answer: {}",
        String::from_utf8_lossy(&answer[..n])
    );
    running.wait_for("drained: every request in flight finished");
    let exit = running.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let mut rest = [0u8; 64];
    let released = tokio::time::timeout(Duration::from_secs(5), held.read(&mut rest)).await;
    assert!(
        matches!(released, Ok(Ok(0)) | Ok(Err(_))),
        "the blackholed connection was answered or kept: {released:?}"
    );
}

/// The proxy never becomes the outage: past `--max-connections` a client gets S3's
/// `503 SlowDown` and a close, a client that never finishes its request head (or never
/// starts it) is cut off after `--header-read-timeout`, and the others are served meanwhile.
#[tokio::test]
async fn connection_limits_protect_the_other_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let running = Running::in_dir(
        &dir,
        None,
        &["--max-connections", "2", "--header-read-timeout", "300ms"],
    );
    async fn ask(stream: &mut tokio::net::TcpStream) -> String {
        stream
            .write_all(b"HEAD /any HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 2048];
        let n = stream.read(&mut buf).await.unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    // A slowloris client: half a request line, then silence.
    let mut slow = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    slow.write_all(b"GET /slo").await.unwrap();
    let mut first = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    assert!(ask(&mut first).await.starts_with("HTTP/1.1 404"), "served");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let refused = ask(&mut over).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "over the limit: {refused}");
    assert!(
        refused.to_ascii_lowercase().contains("x-amz-request-id"),
        "an S3 answer: {refused}"
    );

    // The slowloris client is cut off, which frees its place.
    let mut rest = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "the slow client was disconnected");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut next = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    assert!(
        ask(&mut next).await.starts_with("HTTP/1.1 404"),
        "its place is free again"
    );
    // A keep-alive connection idle longer than the timeout is closed too, as S3 closes idle
    // connections; clients open a new one.
    assert_eq!(ask(&mut first).await, "", "the idle connection was closed");
    // A client that connects and sends nothing at all is cut off the same way.
    let mut silent = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(cut.is_ok(), "the silent client was disconnected");
}

#[test]
fn refuses_to_run_against_production_aws_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--upstream",
            "https://s3.us-east-1.amazonaws.com",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--i-know-this-is-production"), "{stderr}");
}

/// `run --tls-self-signed`: the log says where the CA is and how to trust it, an SDK that
/// trusts it is served over https; `exec` hands the command an https endpoint and
/// `AWS_CA_BUNDLE`.
#[tokio::test]
async fn tls_self_signed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let running = Running::in_dir(&dir, None, &["--tls-self-signed", "--tls-ca-out", ca.to_str().unwrap()]);
    assert!(
        running.log.iter().any(|l| l.contains("listening on https://")),
        "{:?}",
        running.log
    );
    let hint = running
        .log
        .iter()
        .find(|l| l.contains("AWS_CA_BUNDLE=") && l.contains("NODE_EXTRA_CA_CERTS="))
        .expect("the log says how to trust the CA");
    assert!(
        hint.contains(&*std::fs::canonicalize(&ca).unwrap().to_string_lossy()),
        "{hint}"
    );
    let client = crate::tls::https_client_with_keys(running.addr, &std::fs::read(&ca).unwrap(), "test", "test");
    client.create_bucket().bucket("over-tls").send().await.unwrap();
    assert_eq!(client.list_buckets().send().await.unwrap().buckets().len(), 1);
    drop(running);

    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "exec",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--tls-self-signed",
            "--data-dir",
            "d",
            "--",
        ])
        .args(["sh", "-c", "echo \"$AWS_ENDPOINT_URL $NODE_EXTRA_CA_CERTS\""])
        .env_remove("NODE_EXTRA_CA_CERTS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("https://127.0.0.1:"), "{said}");
    assert!(said.trim_end().ends_with("s3chaos-ca.pem"), "{said}");
}

/// `run --mode forward`: the log says how to point an app at it; an SDK app that uses it as
/// its proxy and trusts the CA file it wrote reaches an AWS host (here an in-process server
/// by that name, through `--connect-to`) and meets the scenario; `exec --mode forward` hands
/// the command HTTPS_PROXY and AWS_CA_BUNDLE, and no endpoint URL.
#[tokio::test]
async fn forward_mode_from_the_command_line() {
    let store = crate::forward::start_aws_like_store(true).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    let upstream_ca = write(&dir, "upstream-ca.pem", &store.ca_pem);
    let connect_to = format!("*.amazonaws.com:443:127.0.0.1:{}", store.addr.port());
    let running = Running::in_dir(
        &dir,
        Some("name: fwd\nrules:\n  - {name: throttle, match: {key: throttled}, fault: {error: SlowDown}}\n"),
        &[
            "--mode",
            "forward",
            "--tls-ca-out",
            ca.to_str().unwrap(),
            "--upstream-ca",
            upstream_ca.to_str().unwrap(),
            "--connect-to",
            &connect_to,
        ],
    );
    let hint = running
        .log
        .iter()
        .find(|l| l.contains("as a forward proxy"))
        .expect("the log says it is a forward proxy");
    assert!(hint.contains(&format!("HTTPS_PROXY=http://{}", running.addr)), "{hint}");
    assert!(
        running
            .log
            .iter()
            .any(|l| l.contains("*.amazonaws.com") && l.contains("tunnelled untouched")),
        "{:?}",
        running.log
    );
    let app = crate::forward::app_client(running.addr, &std::fs::read_to_string(&ca).unwrap(), None);
    app.create_bucket().bucket("cli-fwd").send().await.unwrap();
    app.put_object()
        .bucket("cli-fwd")
        .key("throttled")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap_err();
    let err = app
        .get_object()
        .bucket("cli-fwd")
        .key("throttled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&err), Some("SlowDown"));
    assert!(app.list_buckets().send().await.is_ok());
    drop(running);

    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args([
            "exec",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--mode",
            "forward",
            "--data-dir",
            "d",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo \"$HTTPS_PROXY $HTTP_PROXY ${AWS_ENDPOINT_URL:-none} $NODE_EXTRA_CA_CERTS $(grep -c 'BEGIN CERTIFICATE' \"$AWS_CA_BUNDLE\")\"",
        ])
        .env_remove("NODE_EXTRA_CA_CERTS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = said.split_whitespace().collect();
    assert!(
        words[0].starts_with("http://127.0.0.1:") && words[1] == words[0],
        "{said}"
    );
    assert_eq!(words[2], "none", "{said}");
    assert!(words[3].ends_with("s3chaos-ca.pem"), "Node adds the CA alone: {said}");
    let roots: usize = words[4].parse().unwrap();
    assert!(
        roots >= 2,
        "AWS_CA_BUNDLE keeps the roots it had and adds the CA: {said}"
    );
}

/// boto3, configured as an app that talks to AWS (no endpoint URL), run by `s3chaos exec
/// --mode forward`: it finds s3chaos through the HTTPS_PROXY and AWS_CA_BUNDLE that exec
/// exports, reaches "AWS" (an in-process server by that name, through --connect-to) and meets
/// the scenario's fault. Needs python3 with boto3, as the pytest example does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boto3_reaches_aws_through_exec_in_forward_mode() {
    if !python_with("boto3", "boto3 in forward mode") {
        return;
    }
    let store = crate::forward::start_aws_like_store(false).await;
    let dir = tempfile::tempdir().unwrap();
    let upstream_ca = write(&dir, "upstream-ca.pem", &store.ca_pem);
    let scenario = write(
        &dir,
        "scenario.yaml",
        "name: fwd\nrules:\n  - {name: throttle, match: {key: throttled}, fault: {error: SlowDown}}\n",
    );
    let script = r#"
import boto3, botocore.config, botocore.exceptions
s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="AKIAS3CHAOSTEST",
                  aws_secret_access_key="s3chaos-test-secret",
                  config=botocore.config.Config(s3={"addressing_style": "path"},
                                                retries={"mode": "standard", "max_attempts": 1}))
print("ENDPOINT", s3.meta.endpoint_url)
s3.create_bucket(Bucket="py-fwd")
s3.put_object(Bucket="py-fwd", Key="k", Body=b"hello through the proxy")
assert s3.get_object(Bucket="py-fwd", Key="k")["Body"].read() == b"hello through the proxy"
try:
    s3.get_object(Bucket="py-fwd", Key="throttled")
    raise SystemExit("the fault did not fire")
except botocore.exceptions.ClientError as e:
    print("CODE", e.response["Error"]["Code"])
"#;
    let connect_to = format!("*.amazonaws.com:443:127.0.0.1:{}", store.addr.port());
    let mut command = Command::new(BIN);
    command
        .current_dir(dir.path())
        .args(["exec", "--listen", "127.0.0.1:0", "--admin", "off", "--mode", "forward"])
        .args(["--data-dir", "d", "--connect-to", &connect_to, "--upstream-ca"])
        .arg(&upstream_ca)
        .arg("--scenario")
        .arg(&scenario)
        .args(["--", "python3", "-c", script]);
    for name in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_PROFILE",
        "AWS_CA_BUNDLE",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(name);
    }
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // boto3 picks the global endpoint for us-east-1 (newer releases may pick the regional
    // one); the in-process server answers to both names.
    assert!(
        stdout.contains("ENDPOINT https://s3.amazonaws.com")
            || stdout.contains("ENDPOINT https://s3.us-east-1.amazonaws.com"),
        "{stdout}"
    );
    assert!(stdout.contains("CODE SlowDown"), "{stdout}");
}

/// `s3chaos verdict` judges a recorded game day: a tight retry loop in the log fails (exit
/// 1, the verdict and its evidence printed, a JUnit case with the failure); a clean log
/// passes (exit 0); `--scenario` brings the drill's `expect:`.
#[test]
fn verdict_judges_a_recorded_drill_and_exits_1_on_a_failed_expectation() {
    let dir = tempfile::tempdir().unwrap();
    let line = |us: u64, status: u16, rule: &str| {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_800_000_000_000_000 + us);
        format!(
            r#"{{"time":"{}","operation":"GetObject","bucket":"b","key":"hot","status":{status},"latency_ms":0.2,"duration_ms":0.2,"outcome":"complete","conn":1{rule}}}"#,
            humantime::format_rfc3339_micros(at)
        )
    };
    let storm: Vec<String> = (0..6)
        .map(|i| {
            line(
                i * 500,
                if i < 5 { 503 } else { 200 },
                if i < 5 {
                    r#","rule":"storm","fault":"error SlowDown""#
                } else {
                    ""
                },
            )
        })
        .collect();
    let log = write(&dir, "storm.jsonl", &(storm.join("\n") + "\n"));
    let junit = dir.path().join("verdicts.xml");
    let out = Command::new(BIN)
        .arg("verdict")
        .arg(&log)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("FAIL") && stdout.contains("backoff") && stdout.contains("tight loop"),
        "{stdout}"
    );
    assert!(
        stdout.contains("GetObject b/hot"),
        "the evidence names the call: {stdout}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(r#"<testcase name="expect: backoff""#) && xml.contains("<failure"),
        "{xml}"
    );

    let calm = write(
        &dir,
        "calm.jsonl",
        &format!("{}\n{}\n", line(0, 200, ""), line(900_000, 200, "")),
    );
    let scenario = write(
        &dir,
        "drill.yaml",
        "name: drill\nexpect: {max_attempts: 1}\nrules: []\n",
    );
    let out = Command::new(BIN)
        .arg("verdict")
        .arg(&calm)
        .arg("--scenario")
        .arg(&scenario)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("pass") && stdout.contains("max_attempts"),
        "the stated expectation is judged: {stdout}"
    );
}

/// `exec --tls-self-signed` reaches every ecosystem's clients: the Rust SDK with its default
/// trust store (rustls-native-certs, which reads `SSL_CERT_FILE`) and, where installed,
/// Node's JS SDK v3 (`NODE_EXTRA_CA_CERTS`). Before, exec exported only `AWS_CA_BUNDLE`,
/// which neither reads: both failed on the self-signed certificate.
#[test]
fn exec_with_tls_is_trusted_by_the_rust_sdk_and_node() {
    let dir = tempfile::tempdir().unwrap();
    let app = std::env::current_exe().unwrap();
    let exec = |tail: &[&std::ffi::OsStr]| {
        Command::new(BIN)
            .args(["exec", "--tls-self-signed", "--tls-ca-out"])
            .arg(dir.path().join("ca.pem"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("SSL_CERT_FILE")
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("NODE_EXTRA_CA_CERTS")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .arg("--")
            .args(tail)
            .output()
            .unwrap()
    };
    let out = exec(&[
        app.as_os_str(),
        "--ignored".as_ref(),
        "--exact".as_ref(),
        "cli::exec_tls_client_app".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "the Rust SDK: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let Some(js) = crate::clients::javascript_sdk() else {
        return;
    };
    let script = js.join("tls.mjs");
    let out = exec(&["node".as_ref(), script.as_os_str()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("trusted s3chaos's CA"),
        "Node: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The app `exec_with_tls_is_trusted_by_the_rust_sdk_and_node` runs: the Rust SDK over
/// HTTPS with its default trust store, configured only from the environment.
#[test]
#[ignore = "the command run by exec_with_tls_is_trusted_by_the_rust_sdk_and_node"]
fn exec_tls_client_app() {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("run under s3chaos exec");
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let conf = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "env"))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .http_client(https)
            .build();
        let c = aws_sdk_s3::Client::from_conf(conf);
        c.create_bucket()
            .bucket("rusttls")
            .send()
            .await
            .expect("the CA is trusted");
        c.put_object()
            .bucket("rusttls")
            .key("k")
            .body(b"over TLS".to_vec().into())
            .send()
            .await
            .unwrap();
    });
}
