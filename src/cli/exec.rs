//! `s3chaos exec --scenario FILE -- COMMAND...`: CI in one line. Starts the proxy (with every
//! option `run` takes), runs the command with the endpoint exported, stops the proxy, prints
//! what was injected, writes a report or a JUnit file if asked, and exits with the
//! command's status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use clap::Args;

use super::junit::{self, Failure, TestCase};
use super::serve::{self, RunArgs};

#[derive(Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Write the HTML drill report here when the command ends.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write a JUnit XML file: one test case for the command, one per rule (did it fire,
    /// did the clients recover after its last fault) and one per expectation (`expect:`).
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Print the verdicts but exit with the command's status even if an expectation failed
    /// (by default a failed expectation makes exec exit 1 when the command succeeded).
    #[arg(long)]
    ignore_verdicts: bool,
    /// The command to run, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub async fn exec(mut args: ExecArgs) -> anyhow::Result<ExitCode> {
    // The verdicts, the report and the JUnit file are made from the event log: keep one if
    // none was asked.
    let temporary_log = args
        .run
        .events
        .is_none()
        .then(|| std::env::temp_dir().join(format!("s3chaos-exec-{}.jsonl", std::process::id())));
    if let Some(path) = &temporary_log {
        let _ = std::fs::remove_file(path);
        args.run.events = Some(path.clone());
    }
    let started = serve::start(&args.run).await?;
    let trust_dir = std::env::temp_dir().join(format!("s3chaos-exec-{}-trust", std::process::id()));
    let (mut command, endpoint) = command_against(&args.run, &started, &args.command, &trust_dir)?;
    tracing::info!(command = %args.command.join(" "), %endpoint, "running the command against s3chaos");
    let began = Instant::now();
    let status = command
        .status()
        .await
        .with_context(|| format!("cannot run `{}`", args.command[0]))?;
    let took = began.elapsed();
    let scenario = started.engine.scenario();
    let expectations = s3chaos::verdict::Expectations::of_scenario(&scenario);
    let stats = started.engine.stats();
    let requests = started.telemetry.totals().requests_total();
    started.stop();

    let code = status.code().unwrap_or(1);
    let shown = args.command.join(" ");
    eprintln!(
        "s3chaos exec: `{shown}` exited with {} after {:.1}s; scenario `{}`: {requests} requests, {} faults injected",
        status.code().map_or_else(|| "a signal".to_owned(), |c| c.to_string()),
        took.as_secs_f64(),
        scenario.name(),
        stats.iter().map(|s| s.injected).sum::<u64>()
    );
    for s in &stats {
        eprintln!("  {:<40} matched {:>7}  injected {:>7}", s.name, s.matched, s.injected);
    }

    let report = match &args.run.events {
        Some(path) if args.report.is_some() || args.junit.is_some() => {
            s3chaos::report::load_judged(path, &expectations).ok()
        }
        _ => None,
    };
    // The report judged the log already; without one, judge it here.
    let verdicts = match (&report, &args.run.events) {
        (Some(r), _) => Some(r.verdicts.clone()),
        (None, Some(path)) => Some(s3chaos::verdict::judge(
            &s3chaos::verdict::read_events(path)?,
            &expectations,
        )),
        (None, None) => None,
    };
    if let Some(v) = &verdicts {
        eprint!("s3chaos exec: {}", s3chaos::verdict::table(v));
    }
    if let Some(out) = &args.report {
        match &report {
            Some(r) => {
                std::fs::write(out, r.html()).with_context(|| format!("cannot write {}", out.display()))?;
                eprintln!("s3chaos exec: report written to {}", out.display());
            }
            None => eprintln!("s3chaos exec: no requests reached s3chaos; no report written"),
        }
    }
    if let Some(out) = &args.junit {
        let xml = junit(
            scenario.name(),
            &shown,
            code,
            took.as_secs_f64(),
            &stats,
            report.as_ref(),
            verdicts.as_ref(),
        );
        std::fs::write(out, xml).with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("s3chaos exec: JUnit results written to {}", out.display());
    }
    if let Some(path) = temporary_log {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir_all(&trust_dir);
    let failed: Vec<&str> = verdicts
        .iter()
        .flat_map(|v| v.failed())
        .map(|v| v.expectation)
        .collect();
    if code == 0 && !failed.is_empty() && !args.ignore_verdicts {
        eprintln!(
            "s3chaos exec: the command passed, but the drill did not: {} (exit 1; --ignore-verdicts to keep the command's status)",
            failed.join(", ")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// `argv` set up to run against `started`: the endpoint exported (or, in forward mode, the
/// proxy), every ecosystem's clients trusting the CA (see `trust`; the bundles are written in
/// `trust_dir`, which lives as long as the command), the admin address, and test credentials
/// for the embedded store where the environment has none. Returns it with the endpoint.
pub(super) fn command_against(
    run: &RunArgs,
    started: &serve::Started,
    argv: &[String],
    trust_dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Command, String)> {
    let tls = run.tls_cert.is_some() || run.tls_self_signed;
    let endpoint = format!("{}://{}", if tls { "https" } else { "http" }, started.addr);
    let mut command = tokio::process::Command::new(&argv[0]);
    command.args(&argv[1..]).env("S3CHAOS_ENDPOINT", &endpoint);
    let forward = run.mode == serve::Mode::Forward;
    if forward {
        // The command keeps its own endpoints and reaches them through s3chaos.
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            command.env(name, &endpoint);
        }
    } else {
        command
            .env("AWS_ENDPOINT_URL", &endpoint)
            .env("AWS_ENDPOINT_URL_S3", &endpoint);
    }
    if run.tls_self_signed || forward {
        std::fs::create_dir_all(trust_dir).with_context(|| format!("cannot create {}", trust_dir.display()))?;
        let exports = super::trust::exports(&serve::ca_bundle(run), trust_dir, |name| std::env::var(name).ok())?;
        for (name, path) in exports {
            command.env(name, path);
        }
    }
    if let Some(admin) = started.admin {
        command.env("S3CHAOS_ADMIN", format!("http://{admin}"));
    }
    if started.embedded {
        // The embedded store takes any key whose secret is the same string; fill in what the
        // command's environment does not already say.
        for (name, value) in [
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_REGION", "us-east-1"),
        ] {
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
    }
    Ok((command, endpoint))
}

/// One test case for the command and one per rule: a rule that never fired did not test
/// anything; a rule after whose last fault no request of that operation succeeded left the
/// clients broken.
fn junit(
    scenario: &str,
    command: &str,
    code: i32,
    seconds: f64,
    stats: &[s3chaos::engine::RuleStats],
    report: Option<&s3chaos::report::Report>,
    verdicts: Option<&s3chaos::verdict::Verdicts>,
) -> String {
    let classname = format!("s3chaos.{scenario}");
    let mut cases = vec![TestCase {
        name: format!("command: {command}"),
        classname: classname.clone(),
        time: Some(format!("{seconds:.3}")),
        failure: (code != 0).then(|| Failure {
            message: format!("the command exited with {code}"),
        }),
        skipped: None,
        system_out: None,
    }];
    for s in stats {
        let outcome = report.and_then(|r| r.rules.iter().find(|o| o.rule == s.name));
        let failure = if s.injected == 0 {
            Some(format!(
                "the rule never fired (its match selected {} requests)",
                s.matched
            ))
        } else {
            match outcome {
                Some(o) if !o.recovered => {
                    Some("no request of the faulted operation succeeded after the rule's last fault".to_owned())
                }
                _ => None,
            }
        };
        cases.push(TestCase {
            name: format!("rule: {}", s.name),
            classname: classname.clone(),
            time: None,
            failure: failure.map(|message| Failure { message }),
            skipped: None,
            system_out: None,
        });
    }
    if let Some(verdicts) = verdicts {
        cases.extend(junit::verdict_cases(&classname, verdicts));
    }
    junit::render(&format!("s3chaos: {scenario}"), cases)
}
