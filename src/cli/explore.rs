//! `s3chaos explore --out DIR -- COMMAND...`: finds the S3 faults a test does not survive.
//! Runs the command twice without faults (each run on its own proxy and, with the embedded
//! store, its own fresh data directory), records its logical calls, then runs it once per
//! fault point with one `nth:` rule hitting exactly that call (see `s3chaos::explore` for
//! what is run and how equivalent points are pruned). Writes the matrix, a JUnit file, an
//! HTML page, and for each failure a self-contained scenario and the command that replays it.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use s3chaos::explore::html::{self, Finding};
use s3chaos::explore::{self, FaultClass, Matrix, Outcome, Plan, Point, Recorded};
use s3chaos::telemetry::RequestEvent;
use s3chaos::verdict::{self, Expectations, Verdicts};
use serde_yaml_ng::{Mapping, Value};

use super::junit::{self, Failure, Skipped, TestCase};
use super::serve::{self, RunArgs};

#[derive(Args)]
pub struct ExploreArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Where the results go: the matrix (results.json, report.html), one scenario per failure
    /// (fail-NNN.yaml) and each run's event log and output (runs/).
    #[arg(long, default_value = "chaos-explore")]
    out: PathBuf,
    /// The fault classes to try, comma-separated: transient, persistent, reset, ambiguous,
    /// cut, corrupt, hang (default all but hang, which costs a client timeout per point).
    #[arg(long, default_value = "transient,persistent,reset,ambiguous,cut,corrupt")]
    faults: String,
    /// Runs at once, each with its own proxy.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    jobs: u16,
    /// Run at most this many fault points (the baselines do not count).
    #[arg(long)]
    max_runs: Option<usize>,
    /// Start no new run after this long (e.g. 10m); runs under way finish.
    #[arg(long, value_parser = serve::duration_arg)]
    time: Option<Duration>,
    /// A run still going after this long is killed and counts as a hang (default: ten times
    /// the slower baseline, at least 30s).
    #[arg(long, value_parser = serve::duration_arg)]
    run_timeout: Option<Duration>,
    /// How many faults one run may combine: 1 faults the baseline's calls only; 2 also faults
    /// each call that appeared only under a fault (the app's error path).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=4))]
    depth: u16,
    /// Also write a JUnit XML file: one test case per fault point.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Exit 0 even when a point failed.
    #[arg(long)]
    allow_failures: bool,
    /// The test command, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// What one run of the command came to.
struct RunResult {
    /// `None`: killed at the run timeout.
    code: Option<Option<i32>>,
    seconds: f64,
    events: Vec<RequestEvent>,
    /// Faults injected, by rule name.
    injected: Vec<(String, u64)>,
    verdicts: Verdicts,
}

impl RunResult {
    fn injected_by(&self, rule: &str) -> u64 {
        self.injected.iter().find(|(n, _)| n == rule).map_or(0, |(_, n)| *n)
    }
}

/// Everything a run needs that does not change from run to run.
struct Setup {
    run: RunArgs,
    command: Vec<String>,
    /// The user's scenario (`--scenario`), the base every run's scenario adds its rules to.
    base: Mapping,
    out: PathBuf,
}

/// The name of the rule for the `i`-th fault (from 0) of a point.
fn rule_name(i: usize, class: FaultClass) -> String {
    format!("explore-{}-{class}", i + 1)
}

impl Setup {
    /// The self-contained scenario of a point: the user's, with the point's rules first.
    fn scenario(&self, point: Option<&Point>, name: &str) -> String {
        let mut scenario = self.base.clone();
        scenario.insert("name".into(), name.into());
        if let Some(point) = point {
            let mut rules: Vec<Value> = point
                .faults
                .iter()
                .enumerate()
                .map(|(i, f)| f.class.rule(&rule_name(i, f.class), &f.call, f.bytes))
                .collect();
            if let Some(Value::Sequence(own)) = scenario.get("rules") {
                rules.extend(own.iter().cloned());
            }
            scenario.insert("rules".into(), Value::Sequence(rules));
        }
        serde_yaml_ng::to_string(&scenario).expect("a YAML mapping serialises")
    }

    /// Runs the command once against a proxy of its own under `scenario`, in `dir`.
    async fn run(&self, dir: &Path, scenario: &str, timeout: Duration) -> anyhow::Result<RunResult> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let scenario_path = dir.join("scenario.yaml");
        std::fs::write(&scenario_path, scenario)?;
        let mut run = self.run.clone();
        run.scenario = Some(scenario_path.display().to_string());
        run.listen = "127.0.0.1:0".parse().expect("an address");
        run.admin = "127.0.0.1:0".into();
        run.data_dir = dir.join("data");
        run.events = Some(dir.join("events.jsonl"));
        run.tls_ca_out = dir.join("ca.pem");
        run.workers = run.workers.or(Some(1));
        let started = serve::start(&run).await?;
        let trust = dir.join("trust");
        let (mut command, _) = super::exec::command_against(&run, &started, &self.command, &trust)?;
        let output = std::fs::File::create(dir.join("output.txt"))?;
        command
            .stdin(Stdio::null())
            .stdout(output.try_clone()?)
            .stderr(output)
            .process_group(0)
            .kill_on_drop(true);
        let began = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run `{}`", self.command[0]))?;
        let code = match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => Some(status?.code()),
            Err(_) => {
                // The whole process group: a test runner's children too.
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) with a negative pid signals that process group; no memory is involved.
                    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
                }
                let _ = child.wait().await;
                None
            }
        };
        let seconds = began.elapsed().as_secs_f64();
        let expectations = Expectations::of_scenario(&started.engine.scenario());
        let injected = started
            .engine
            .stats()
            .into_iter()
            .map(|s| (s.name, s.injected))
            .collect();
        started.stop();
        let events = verdict::read_events(&dir.join("events.jsonl")).unwrap_or_default();
        let verdicts = verdict::judge(&events, &expectations);
        let _ = std::fs::remove_dir_all(dir.join("data"));
        let _ = std::fs::remove_dir_all(&trust);
        Ok(RunResult {
            code,
            seconds,
            events,
            injected,
            verdicts,
        })
    }
}

/// What a point's run came to.
fn outcome_of(point: &Point, result: &RunResult) -> Outcome {
    let own = rule_name(point.depth() - 1, point.own().class);
    let fired = result.injected_by(&own) > 0;
    match result.code {
        None => Outcome::Hang,
        Some(Some(0)) if !fired => Outcome::NotReached,
        Some(Some(0)) if !result.verdicts.passed() => Outcome::VerdictFailed {
            expectations: result.verdicts.failed().map(|v| v.expectation.to_owned()).collect(),
        },
        Some(Some(0)) => Outcome::Survived,
        Some(code) => Outcome::TestFailed { code },
    }
}

/// The user's scenario as a YAML mapping (validated), or an empty one.
fn base_scenario(spec: Option<&str>) -> anyhow::Result<Mapping> {
    let Some(spec) = spec else {
        return Ok(Mapping::new());
    };
    let (text, origin) = match s3chaos::library::resolve(spec) {
        Some(builtin) => {
            let (text, origin) = builtin.map_err(anyhow::Error::msg)?;
            (text.to_owned(), origin)
        }
        None => (
            std::fs::read_to_string(spec).with_context(|| format!("cannot read the scenario {spec}"))?,
            spec.to_owned(),
        ),
    };
    s3chaos::engine::Scenario::parse(&text, &origin).map_err(|e| anyhow::anyhow!("{e}"))?;
    match serde_yaml_ng::from_str(&text)? {
        Value::Mapping(m) => Ok(m),
        _ => anyhow::bail!("{origin}: a scenario is a mapping"),
    }
}

/// The options given to explore that the replay's `exec` takes too: every proxy option but
/// those explore sets per run. `argv` is the whole command line.
fn replay_options(argv: &[String]) -> Vec<String> {
    const OWN_WITH_VALUE: [&str; 13] = [
        "--out",
        "--faults",
        "--jobs",
        "--max-runs",
        "--time",
        "--run-timeout",
        "--depth",
        "--junit",
        "--scenario",
        "--data-dir",
        "--events",
        "--listen",
        "--admin",
    ];
    let Some(start) = argv.iter().position(|a| a == "explore") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut args = argv[start + 1..].iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == "--allow-failures" {
            continue;
        }
        let flag = arg.split('=').next().unwrap_or(arg);
        if OWN_WITH_VALUE.contains(&flag) {
            if !arg.contains('=') {
                args.next();
            }
            continue;
        }
        out.push(arg.clone());
    }
    out
}

/// A word quoted for a POSIX shell, when it needs to be.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Shows where the exploration stands: one line rewritten in a terminal, a line per run
/// otherwise.
struct Progress {
    began: Instant,
    tty: bool,
    done: usize,
    run_seconds: f64,
}

impl Progress {
    fn update(&mut self, plan: &Plan, jobs: usize, running: usize, last: &str) {
        self.done = plan.done.len();
        let left = plan.queued() + running;
        let total = self.done + left;
        let mean = if self.done == 0 {
            0.0
        } else {
            self.run_seconds / self.done as f64
        };
        let eta = Duration::from_secs_f64(mean * left as f64 / jobs as f64);
        let percent = (self.done * 100).checked_div(total).unwrap_or(100);
        let width = 24;
        let filled = percent * width / 100;
        let line = format!(
            "[{}{}] {}/{} points {percent:>3}%  skipped {}  elapsed {}  ETA {}  {last}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.done,
            total,
            plan.skipped.len(),
            humantime::format_duration(Duration::from_secs(self.began.elapsed().as_secs())),
            humantime::format_duration(Duration::from_secs(eta.as_secs())),
        );
        if self.tty {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("s3chaos explore: {line}");
        }
    }

    fn end(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

pub async fn explore(args: ExploreArgs, argv: Vec<String>) -> anyhow::Result<ExitCode> {
    let classes = explore::class::parse_list(&args.faults).map_err(anyhow::Error::msg)?;
    let base = base_scenario(args.run.scenario.as_deref())?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    // Results of an earlier exploration into the same folder would mix with these.
    let _ = std::fs::remove_dir_all(args.out.join("runs"));
    for entry in std::fs::read_dir(&args.out)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("fail-") && name.ends_with(".yaml") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    let shown = args
        .command
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let setup = std::sync::Arc::new(Setup {
        run: args.run.clone(),
        command: args.command.clone(),
        base,
        out: args.out.clone(),
    });
    let began = Instant::now();

    // 1. Two baselines, each on its own proxy and data directory.
    eprintln!("s3chaos explore: baseline: running `{shown}` twice without faults");
    let first_timeout = args.run_timeout.unwrap_or(Duration::from_secs(600));
    let mut baselines = Vec::new();
    for i in 1..=2 {
        let dir = setup.out.join("runs").join(format!("baseline-{i}"));
        let scenario = setup.scenario(None, &format!("explore-baseline-{i}"));
        let result = setup.run(&dir, &scenario, first_timeout).await?;
        let output = dir.join("output.txt");
        match result.code {
            Some(Some(0)) => {}
            None => anyhow::bail!(
                "the command did not finish within {} without any fault (baseline {i}; its output: {})",
                humantime::format_duration(first_timeout),
                output.display()
            ),
            Some(code) => {
                let tail = std::fs::read_to_string(&output).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(20).collect();
                anyhow::bail!(
                    "the command fails without any fault (baseline {i}, exit status {}); fix that first. The end of its output ({}):\n{}",
                    code.map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
                    output.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            }
        }
        if !result.verdicts.passed() {
            anyhow::bail!(
                "the command passes without any fault, but the drill's expectations fail already (baseline {i}); fix that first:\n{}",
                verdict::table(&result.verdicts)
            );
        }
        baselines.push(result);
    }
    let calls: Vec<Vec<Recorded>> = baselines.iter().map(|b| explore::record(&b.events)).collect();
    let comparison = explore::compare(&calls[0], &calls[1]);
    let mut notes = Vec::new();
    if calls[0].is_empty() {
        anyhow::bail!(
            "the command made no S3 call through s3chaos (does it use AWS_ENDPOINT_URL, or S3CHAOS_ENDPOINT?)"
        );
    }
    if comparison.deterministic() {
        notes.push(format!(
            "The test is deterministic: both baselines made the same {} logical calls.",
            comparison.shared.len()
        ));
    } else {
        let list = |ids: &[explore::CallId]| ids.iter().take(5).map(|c| c.to_string()).collect::<Vec<_>>().join(", ");
        let note = format!(
            "NONDETERMINISTIC test: the two baselines differ ({} calls only in the first: {}; {} only in the second: {}). Exploring the {} calls both made.",
            comparison.only_first.len(),
            list(&comparison.only_first),
            comparison.only_second.len(),
            list(&comparison.only_second),
            comparison.shared.len()
        );
        eprintln!("s3chaos explore: {note}");
        notes.push(note);
    }
    let slower = baselines.iter().map(|b| b.seconds).fold(0.0, f64::max);
    let run_timeout = args
        .run_timeout
        .unwrap_or_else(|| Duration::from_secs_f64((slower * 10.0).max(30.0)));

    // 2. One run per point, `jobs` at once, within the budget.
    let mut plan = Plan::new(&comparison.shared, &classes, usize::from(args.depth));
    let jobs = usize::from(args.jobs);
    let deadline = args.time.map(|t| began + t);
    let mut progress = Progress {
        began,
        tty: std::io::stderr().is_terminal(),
        done: 0,
        run_seconds: 0.0,
    };
    let mut running = tokio::task::JoinSet::new();
    let mut started = 0usize;
    let mut budget_note = None;
    loop {
        while running.len() < jobs {
            if args.max_runs.is_some_and(|max| started >= max) {
                budget_note.get_or_insert_with(|| format!("Stopped at --max-runs {started}."));
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                budget_note.get_or_insert_with(|| "Stopped at --time: no new run was started after it.".to_owned());
                break;
            }
            let Some(point) = plan.next_point() else { break };
            started += 1;
            let setup = setup.clone();
            running.spawn(async move {
                let dir = setup.out.join("runs").join(format!("{:03}", point.number));
                let scenario = setup.scenario(Some(&point), &format!("explore-{:03}", point.number));
                let result = setup.run(&dir, &scenario, run_timeout).await;
                (point, result)
            });
        }
        let Some(joined) = running.join_next().await else { break };
        let (point, result) = joined.context("a run's task failed")?;
        let result = result.with_context(|| format!("point {} ({})", point.number, point.describe()))?;
        let outcome = outcome_of(&point, &result);
        let recorded = explore::record(&result.events);
        let last = format!("#{} {}: {}", point.number, point.describe(), outcome.word());
        progress.run_seconds += result.seconds;
        plan.finish(point, outcome, result.seconds, &recorded);
        progress.update(&plan, jobs, running.len(), &last);
    }
    progress.end();

    // 3. The outputs.
    let unrun = plan.leftover();
    let matrix = Matrix::of(&plan, &comparison.shared, &unrun);
    let run_count = plan.done.len();
    let full = run_count + plan.skipped.len() + unrun.len();
    notes.push(format!(
        "{run_count} points run, {} skipped as equivalent to one that was, {} not run; {full} points in all ({} calls × the classes that apply, and the error path's calls).",
        plan.skipped.len(),
        unrun.len(),
        comparison.shared.len(),
    ));
    if let Some(note) = budget_note.filter(|_| !unrun.is_empty()) {
        notes.push(note);
    }
    let not_reached = plan.done.iter().filter(|d| d.outcome == Outcome::NotReached).count();
    if not_reached > 0 {
        notes.push(format!(
            "{not_reached} points were not reached: their call did not happen in that run (an earlier fault changed the path, or the test is nondeterministic)."
        ));
    }
    notes.push(format!(
        "Took {} (--jobs {jobs}; the baselines took {:.1}s and {:.1}s; run timeout {}).",
        humantime::format_duration(Duration::from_secs(began.elapsed().as_secs())),
        baselines[0].seconds,
        baselines[1].seconds,
        humantime::format_duration(run_timeout)
    ));
    let replay_base = {
        let mut words = vec!["s3chaos".to_owned(), "exec".to_owned()];
        words.extend(replay_options(&argv).iter().map(|w| shell_quote(w)));
        words
    };
    let mut findings = Vec::new();
    for done in plan.failures() {
        let n = done.point.number;
        let file = format!("fail-{n:03}.yaml");
        let path = setup.out.join(&file);
        let mut replay = replay_base.clone();
        replay.push("--scenario".into());
        replay.push(shell_quote(&path.display().to_string()));
        if setup.run.upstream.is_none() {
            // A fresh store each time, as the exploration's run had.
            replay.push("--data-dir".into());
            replay.push("\"$(mktemp -d)\"".into());
        }
        replay.push("--".into());
        replay.push(shown.clone());
        let replay = replay.join(" ");
        let scenario = std::fs::read_to_string(setup.out.join("runs").join(format!("{n:03}")).join("scenario.yaml"))?;
        let mut text = String::new();
        let _ = writeln!(text, "# s3chaos explore, point {n}: {}", done.point.describe());
        let _ = writeln!(text, "# What happened: {}.", done.outcome.detail());
        let _ = writeln!(text, "# Replay: {replay}");
        text.push_str(&scenario);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        findings.push(Finding {
            number: n,
            point: done.point.describe(),
            detail: done.outcome.detail(),
            scenario: file,
            replay,
            output: format!("runs/{n:03}/output.txt"),
        });
    }
    println!("{}", matrix.text());
    for note in &notes {
        println!("{note}");
    }
    if findings.is_empty() {
        println!("No fault point failed.");
    } else {
        println!("\n{} fault points failed:", findings.len());
        for f in &findings {
            println!("  #{} {}: {}\n    replay: {}", f.number, f.point, f.detail, f.replay);
        }
    }
    let page = html::render(&html::Page {
        command: &shown,
        matrix: &matrix,
        findings: &findings,
        notes: &notes,
    });
    std::fs::write(setup.out.join("report.html"), page)?;
    let results = serde_json::json!({
        "command": shown,
        "deterministic": comparison.deterministic(),
        "baseline_calls": comparison.shared,
        "notes": notes,
        "points": plan.done,
        "skipped": plan.skipped,
        "not_run": unrun,
        "failures": findings,
    });
    std::fs::write(
        setup.out.join("results.json"),
        serde_json::to_string_pretty(&results).expect("results serialise"),
    )?;
    if let Some(path) = &args.junit {
        std::fs::write(path, junit_of(&plan, &unrun, &findings))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    eprintln!(
        "s3chaos explore: results in {} (report.html, results.json{})",
        setup.out.display(),
        if findings.is_empty() { "" } else { ", fail-NNN.yaml" }
    );
    if !findings.is_empty() && !args.allow_failures {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// One test case per point: run (failed or not), skipped as equivalent, or not run.
fn junit_of(plan: &Plan, unrun: &[Vec<explore::Injection>], findings: &[Finding]) -> String {
    let classname = "s3chaos.explore".to_owned();
    let describe = |faults: &[explore::Injection]| {
        faults
            .iter()
            .map(|f| format!("{} × {}", f.call, f.class))
            .collect::<Vec<_>>()
            .join(", then ")
    };
    let mut cases = Vec::new();
    for done in &plan.done {
        let finding = findings.iter().find(|f| f.number == done.point.number);
        cases.push(TestCase {
            name: format!("#{} {}", done.point.number, done.point.describe()),
            classname: classname.clone(),
            time: Some(format!("{:.3}", done.seconds)),
            failure: finding.map(|f| Failure {
                message: format!("{}\nreplay: {}", f.detail, f.replay),
            }),
            skipped: (done.outcome == Outcome::NotReached).then(|| Skipped {
                message: done.outcome.detail(),
            }),
            system_out: None,
        });
    }
    for s in &plan.skipped {
        cases.push(TestCase {
            name: describe(&s.faults),
            classname: classname.clone(),
            time: None,
            failure: None,
            skipped: Some(Skipped {
                message: format!(
                    "equivalent to point {} ({})",
                    s.like,
                    plan.outcome_of(s.like).map_or("still running", Outcome::word)
                ),
            }),
            system_out: None,
        });
    }
    for faults in unrun {
        cases.push(TestCase {
            name: describe(faults),
            classname: classname.clone(),
            time: None,
            failure: None,
            skipped: Some(Skipped {
                message: "not run: the budget (--max-runs, --time) ran out".into(),
            }),
            system_out: None,
        });
    }
    junit::render("s3chaos explore", cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_keeps_the_proxy_options_and_drops_explores_own() {
        let argv: Vec<String> = [
            "s3chaos",
            "explore",
            "--out",
            "x",
            "--jobs=2",
            "--upstream",
            "http://127.0.0.1:9000",
            "--allow-failures",
            "--scenario",
            "s.yaml",
            "--tls-self-signed",
            "--",
            "pytest",
            "-x",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            replay_options(&argv),
            ["--upstream", "http://127.0.0.1:9000", "--tls-self-signed"]
        );
        assert_eq!(shell_quote("tests/test_a.py"), "tests/test_a.py");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
