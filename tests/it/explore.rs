//! `s3chaos explore`: the binary, a real test program (pytest + boto3 against the embedded
//! store), its planted weaknesses found and replayed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::cli::{BIN, python_with, test_credentials};

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn explore(out: &Path, options: &[&str], command: &[&str]) -> Output {
    test_credentials(
        Command::new(BIN)
            .arg("explore")
            .arg("--out")
            .arg(out)
            .args(options)
            .arg("--")
            .args(command)
            .current_dir(REPO),
    )
    .output()
    .unwrap()
}

fn results(out: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap()
}

/// A point's description, as the matrix and results.json give it.
fn describe(point: &Value) -> String {
    point["point"]["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let c = &f["call"];
            let target = match (c["bucket"].as_str().unwrap(), c["key"].as_str().unwrap()) {
                ("", _) => String::new(),
                (b, "") => format!(" {b}"),
                (b, k) => format!(" {b}/{k}"),
            };
            format!(
                "{}{target} #{} × {}",
                c["operation"].as_str().unwrap(),
                c["nth"],
                f["class"].as_str().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", then ")
}

/// A small Python script (standard library only: unsigned requests, which the embedded store
/// takes), written to `dir`.
fn script(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("app.py");
    let text = format!(
        "import os, urllib.request, uuid\nE = os.environ['AWS_ENDPOINT_URL']\n\
         def put(path, data=b'', timeout=5):\n    urllib.request.urlopen(urllib.request.Request(E + path, data=data, method='PUT'), timeout=timeout).read()\n{body}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The acceptance test of the issue: explore finds exactly the three planted weaknesses of
/// tests/explore/test_ingest.py (and nothing on its clean part), prunes equivalent points,
/// explores the error path, and every failure's replay command reproduces it.
#[test]
fn explore_finds_exactly_the_planted_failures_and_each_replay_reproduces_one() {
    if !python_with("boto3, pytest", "explore on the pytest program") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("chaos-explore");
    let junit = dir.path().join("junit.xml");
    let output = explore(
        &out,
        &["--jobs", "2", "--junit", junit.to_str().unwrap()],
        &[
            "python3",
            "-m",
            "pytest",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/explore/test_ingest.py",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "points failed: exit 1\n{stdout}\n{stderr}"
    );
    let r = results(&out);
    assert_eq!(r["deterministic"], true, "{stdout}");

    let points = r["points"].as_array().unwrap();
    let mut failed: Vec<(String, String)> = points
        .iter()
        .filter(|p| !matches!(p["outcome"]["outcome"].as_str(), Some("survived")))
        .map(|p| (describe(p), p["outcome"]["outcome"].as_str().unwrap().to_owned()))
        .collect();
    failed.sort();
    let mut planted: Vec<(String, String)> = [
        // 1: retries off and the error not handled.
        ("PutObject ingest/planted/_SUCCESS #1 × transient", "test_failed"),
        ("PutObject ingest/planted/_SUCCESS #1 × persistent", "test_failed"),
        ("PutObject ingest/planted/_SUCCESS #1 × reset", "test_failed"),
        ("PutObject ingest/planted/_SUCCESS #1 × ambiguous", "test_failed"),
        // 2: the body's read error not handled, and what was read not checked.
        ("GetObject ingest/planted/config.json #1 × cut", "test_failed"),
        ("GetObject ingest/planted/config.json #1 × corrupt", "test_failed"),
        // 3: the upload never aborted: the test passes, the drill does not.
        (
            "UploadPart ingest/planted/archive.bin #1 × persistent",
            "verdict_failed",
        ),
        (
            "UploadPart ingest/planted/archive.bin #2 × persistent",
            "verdict_failed",
        ),
        (
            "CompleteMultipartUpload ingest/planted/archive.bin #1 × persistent",
            "verdict_failed",
        ),
    ]
    .map(|(p, o)| (p.to_owned(), o.to_owned()))
    .to_vec();
    planted.sort();
    assert_eq!(failed, planted, "exactly the planted failures, nothing else\n{stdout}");
    for p in points.iter().filter(|p| p["outcome"]["outcome"] == "verdict_failed") {
        assert_eq!(
            p["outcome"]["expectations"],
            serde_json::json!(["no_open_multipart_uploads"]),
            "{p}"
        );
    }

    // Pruning: the third of each loop's calls is skipped as equivalent, and fewer runs are
    // made than points enumerated.
    let skipped = r["skipped"].as_array().unwrap();
    assert!(!skipped.is_empty(), "{stdout}");
    assert!(
        skipped.iter().all(|s| s["faults"][0]["call"]["key"] == "items/2.json"),
        "only the loop's like calls are skipped: {skipped:?}"
    );
    assert!(r["not_run"].as_array().unwrap().is_empty());
    // The error path: a persistent PUT failure makes the app HEAD the key; that HEAD is
    // faulted in turn (two faults in one run), and the app survives it.
    let deeper: Vec<&Value> = points
        .iter()
        .filter(|p| p["point"]["faults"].as_array().unwrap().len() == 2)
        .collect();
    assert!(
        deeper.iter().any(|p| describe(p)
            == "PutObject ingest/items/0.json #1 × persistent, then HeadObject ingest/items/0.json #1 × persistent"),
        "{stdout}"
    );

    // The matrix as the terminal shows it, the page and the JUnit file.
    let row = stdout
        .lines()
        .find(|l| l.starts_with("PutObject ingest/planted/_SUCCESS #1"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(row.matches("TEST FAILED").count(), 4, "{row}");
    let skipped_row = stdout
        .lines()
        .find(|l| l.starts_with("PutObject ingest/items/2.json #1"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        skipped_row.matches(" survived").count(),
        4,
        "shown as its equivalents' outcome: {skipped_row}"
    );
    assert_eq!(
        skipped_row.matches(" =").count(),
        4,
        "and marked as not run (=N): {skipped_row}"
    );
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        page.contains("<h1>s3chaos explore</h1>") && page.contains("9</b> failing points"),
        "{page}"
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<failure").count(), 9, "{xml}");
    assert_eq!(
        xml.matches("<testcase").count(),
        points.len() + skipped.len(),
        "one case per point, run or skipped"
    );

    // Every failure comes with a scenario and a replay command that reproduces it.
    let failures = r["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 9);
    let path = format!(
        "{}:{}",
        Path::new(BIN).parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for f in failures {
        let replay = f["replay"].as_str().unwrap();
        assert!(replay.starts_with("s3chaos exec --scenario "), "{replay}");
        assert!(out.join(f["scenario"].as_str().unwrap()).exists(), "{f}");
        let again = test_credentials(
            Command::new("sh")
                .args(["-c", replay])
                .current_dir(REPO)
                .env("PATH", &path),
        )
        .output()
        .unwrap();
        let said = String::from_utf8_lossy(&again.stderr);
        assert_eq!(again.status.code(), Some(1), "`{replay}` fails again\n{said}");
        if f["detail"].as_str().unwrap().contains("drill failed") {
            assert!(
                said.contains("the command passed, but the drill did not: no_open_multipart_uploads"),
                "{said}"
            );
        } else {
            assert!(said.contains("exited with 1"), "{said}");
        }
    }
}

/// Two baselines that make different calls (a random key per run) mark the test
/// nondeterministic; explore goes on with the calls both made.
#[test]
fn a_nondeterministic_test_is_detected_and_only_the_shared_calls_are_explored() {
    let dir = tempfile::tempdir().unwrap();
    let app = script(
        dir.path(),
        "put('/ndet')\nput('/ndet/fixed', b'same')\nput('/ndet/run-' + uuid.uuid4().hex, b'random')\n",
    );
    let out = dir.path().join("out");
    let output = explore(
        &out,
        &["--faults", "transient", "--allow-failures"],
        &["python3", app.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "--allow-failures: exit 0\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("NONDETERMINISTIC test: the two baselines differ (1 calls only in the first"),
        "{stdout}"
    );
    let r = results(&out);
    assert_eq!(r["deterministic"], false);
    let keys: Vec<&str> = r["baseline_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"]["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["", "fixed"], "CreateBucket and the fixed key");
    // urllib does not retry: a transient fault fails it, and the failures are still shown.
    assert_eq!(r["points"].as_array().unwrap().len(), 2, "{stdout}");
    assert_eq!(r["failures"].as_array().unwrap().len(), 2, "{stdout}");
}

/// A test that fails with no fault at all stops the exploration with its own message.
#[test]
fn a_test_failing_without_faults_stops_exploration_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = explore(
        &dir.path().join("out"),
        &[],
        &["sh", "-c", "echo the fixture is broken >&2; exit 3"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the command fails without any fault (baseline 1, exit status 3)"),
        "{stderr}"
    );
    assert!(stderr.contains("the fixture is broken"), "{stderr}");
}

/// `--faults hang`: a client without a timeout is still waiting at `--run-timeout`, is
/// killed, and the point counts as a hang.
#[test]
fn a_client_without_timeouts_under_hang_is_killed_at_the_run_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let app = script(
        dir.path(),
        "put('/hang')\nput('/hang/k', b'x' * 100)\nurllib.request.urlopen(E + '/hang/k').read()  # no timeout\n",
    );
    let out = dir.path().join("out");
    let output = explore(
        &out,
        &["--faults", "hang", "--run-timeout", "3s", "--jobs", "2"],
        &["python3", app.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let r = results(&out);
    let outcomes: Vec<(String, &str)> = r["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (describe(p), p["outcome"]["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    let get = outcomes
        .iter()
        .find(|(d, _)| d == "GetObject hang/k #1 × hang")
        .unwrap();
    assert_eq!(get.1, "hang", "{outcomes:?}");
    assert!(stdout.contains("HANG"), "{stdout}");
}
