//! The `s3chaos` command line.

mod cli;

use cli::{ctl, exec, explore, junit, serve};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use s3chaos::embedded::{Credentials, EmbeddedStore};
use s3chaos::engine::Scenario;

#[derive(Parser)]
#[command(
    name = "s3chaos",
    version,
    about = "Fault-injection reverse proxy for S3-compatible object storage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum ScenariosCommand {
    /// One line per built-in scenario.
    List,
    /// Print a built-in scenario's file, to run as is or to start your own from.
    Show { name: String },
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (in front of --upstream, or of an embedded S3 store when none is given).
    Run(Box<serve::RunArgs>),
    /// Run a command against s3chaos (CI in one line): `s3chaos exec --scenario F -- make test`.
    /// Takes every option `run` takes; exports AWS_ENDPOINT_URL; exits with the command's status.
    Exec(Box<exec::ExecArgs>),
    /// Find the S3 faults a test does not survive: runs the command without faults (twice),
    /// records its S3 calls, then once per call × fault class, and reports which failed,
    /// each with a scenario and the command that replays it: `s3chaos explore -- pytest -x`.
    /// Takes every option `run` takes.
    Explore(Box<explore::ExploreArgs>),
    /// The built-in scenario library: list them, or `show NAME` to print one.
    Scenarios {
        #[command(subcommand)]
        command: Option<ScenariosCommand>,
    },
    /// Talk to a running s3chaos's admin API: status, halt, resume, apply, add-rule, ...
    Ctl(ctl::CtlArgs),
    /// Turn an event log (`run --events FILE`) into a drill report: HTML (default) or Markdown.
    Report {
        file: PathBuf,
        /// `html` (self-contained page with the timeline) or `md`.
        #[arg(long, default_value = "html", value_parser = ["html", "md"])]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The drill's scenario, for the verdicts' `expect:` (without it, the default checks).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Judge a recorded drill (`run --events FILE`): did the app's clients retry with backoff,
    /// recover, give up on held requests, close their multipart uploads... Exits 1 when an
    /// expectation failed.
    Verdict {
        file: PathBuf,
        /// The drill's scenario, for its `expect:` (without it, only the default checks fail).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Also write the verdicts as JUnit XML, one test case per expectation.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Print the verdicts as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check scenario files; prints `file:line:column: problem` for each error.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run only the embedded S3 store, without the proxy (a baseline for benchmarks).
    #[command(hide = true)]
    Store {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
        #[arg(long, default_value = "s3chaos-data")]
        data_dir: PathBuf,
        /// No longer needed (the store accepts unsigned requests and any credentials); kept so
        /// old scripts still run.
        #[arg(long)]
        anonymous: bool,
        /// fsync each object file and metadata commit before answering (see `run --fsync`).
        #[arg(long)]
        fsync: bool,
    },
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match cli.command {
        Command::Exec(mut args) => {
            // Under exec, the command learns the addresses from its environment: listen on
            // free ports unless told otherwise, so parallel CI jobs cannot collide.
            let sub = matches.subcommand_matches("exec").expect("the exec subcommand");
            for (arg, free) in [("listen", true), ("admin", false)] {
                if sub.value_source(arg) == Some(clap::parser::ValueSource::DefaultValue) {
                    if free {
                        args.run.listen = "127.0.0.1:0".parse().expect("a valid address");
                    } else {
                        args.run.admin = "127.0.0.1:0".into();
                    }
                }
            }
            init_logging(args.run.log_json);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            match runtime.block_on(exec::exec(*args)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("s3chaos exec: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Explore(args) => {
            // Quiet: a proxy starts per run; its start-up lines would bury the progress.
            init_logging_at(args.run.log_json, "warn,s3s::ops=off");
            let argv: Vec<String> = std::env::args().collect();
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            match runtime.block_on(explore::explore(*args, argv)) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("s3chaos explore: {e:#}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Scenarios { command } => scenarios(command.unwrap_or(ScenariosCommand::List)),
        Command::Validate { files } => validate(&files),
        Command::Verdict {
            file,
            scenario,
            junit,
            json,
        } => match verdict(&file, scenario.as_deref(), junit.as_deref(), json) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("s3chaos verdict: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Ctl(args) => ctl::run(args),
        Command::Report {
            file,
            format,
            output,
            scenario,
        } => report(&file, &format, output.as_deref(), scenario.as_deref()),
        Command::Store {
            listen,
            data_dir,
            anonymous,
            fsync,
        } => {
            init_logging(false);
            // Any credentials, and unsigned requests too: `--anonymous` is kept for old scripts.
            let _ = anonymous;
            let options = s3chaos::embedded::StoreOptions {
                credentials: Credentials::Any,
                domains: Vec::new(),
                durability: serve::durability(fsync),
            };
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            runtime.block_on(async {
                match EmbeddedStore::start_with(listen, &data_dir, options).await {
                    Ok(store) => {
                        tracing::info!(data_dir = %store.data_dir.display(), "embedded S3 store listening on {}", store.url());
                        let _ = store.task.await;
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("s3chaos: {e}");
                        ExitCode::FAILURE
                    }
                }
            })
        }
        Command::Run(args) => {
            init_logging(args.log_json);
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            let code = match runtime.block_on(serve::run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("s3chaos: {e:#}");
                    ExitCode::FAILURE
                }
            };
            // Dropping a runtime waits for its blocking tasks without limit; a scenario read
            // stuck on a hung file system must not keep a stopped process alive.
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            code
        }
    }
}

fn verdict(
    file: &std::path::Path,
    scenario: Option<&std::path::Path>,
    junit_out: Option<&std::path::Path>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use s3chaos::verdict;
    let (name, expectations) = match scenario {
        Some(path) => {
            let s = Scenario::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            (s.name().to_owned(), verdict::Expectations::of_scenario(&s))
        }
        None => ("drill".to_owned(), verdict::Expectations::default()),
    };
    let events = verdict::read_events(file)?;
    if events.is_empty() {
        anyhow::bail!(
            "{} holds no request events (is it a `run --events` file?)",
            file.display()
        );
    }
    let verdicts = verdict::judge(&events, &expectations);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&verdicts).expect("verdicts serialise")
        );
    } else {
        print!("{}", verdict::table(&verdicts));
    }
    if let Some(out) = junit_out {
        let cases = junit::verdict_cases(&format!("s3chaos.{name}"), &verdicts);
        std::fs::write(out, junit::render(&format!("s3chaos verdicts: {name}"), cases))
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(if verdicts.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match Scenario::load(file) {
            Ok(s) => {
                let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let phases = if s.timeline().has_phases() {
                    format!("{}, ", plural(s.timeline().phases().len(), "phase"))
                } else {
                    String::new()
                };
                println!(
                    "{}: ok ({phases}{}, scenario `{}`)",
                    file.display(),
                    plural(s.rules().len(), "rule"),
                    s.name()
                )
            }
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn scenarios(command: ScenariosCommand) -> ExitCode {
    match command {
        ScenariosCommand::List => {
            for (name, _) in s3chaos::library::BUILTIN {
                let description = s3chaos::library::load(name)
                    .and_then(Result::ok)
                    .map(|s| s.description().to_owned())
                    .unwrap_or_default();
                println!("{name:<26} {description}");
            }
            println!("\nRun one: s3chaos run --scenario builtin:NAME   Print one: s3chaos scenarios show NAME");
            ExitCode::SUCCESS
        }
        ScenariosCommand::Show { name } => match s3chaos::library::text(&name) {
            Some(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("s3chaos: no built-in scenario `{name}`; `s3chaos scenarios` lists them");
                ExitCode::FAILURE
            }
        },
    }
}

fn report(
    file: &std::path::Path,
    format: &str,
    output: Option<&std::path::Path>,
    scenario: Option<&std::path::Path>,
) -> ExitCode {
    let expectations = match scenario.map(Scenario::load).transpose() {
        Ok(s) => s
            .map(|s| s3chaos::verdict::Expectations::of_scenario(&s))
            .unwrap_or_default(),
        Err(e) => {
            eprintln!("s3chaos report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match s3chaos::report::load_judged(file, &expectations) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("s3chaos report: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if format == "md" {
        report.markdown()
    } else {
        report.html()
    };
    match output {
        Some(path) => match std::fs::write(path, text) {
            Ok(()) => {
                eprintln!(
                    "wrote {} ({} requests, {} faults injected)",
                    path.display(),
                    report.requests,
                    report.injected
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("s3chaos report: cannot write {}: {e}", path.display());
                ExitCode::FAILURE
            }
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}

fn init_logging(json: bool) {
    init_logging_at(json, "info");
}

/// Logging to standard error at `default` level, unless RUST_LOG says otherwise.
fn init_logging_at(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    // The embedded store's library (s3s) logs whole requests at debug level, credentials
    // included (`Authorization`, `x-amz-security-token`) and signatures it compared: never
    // below info, whatever RUST_LOG asks (tests/it/secrets.rs checks at trace level).
    let filter = filter.add_directive("s3s=info".parse().expect("a valid directive"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
