//! The `s3chaos` command line.

mod ctl;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use s3chaos::admin::{Admin, AdminState};
use s3chaos::control::Control;
use s3chaos::drill::Supervisor;
use s3chaos::embedded::{Credentials, EmbeddedStore};
use s3chaos::engine::{Engine, EngineOptions};
use s3chaos::proxy::{Proxy, Shared, Upstream, UpstreamOptions};
use s3chaos::reload::Reloader;
use s3chaos::s3::Classifier;
use s3chaos::scenario::Scenario;

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
enum Command {
    /// Run the proxy (in front of --upstream, or of an embedded S3 store when none is given).
    Run(Box<RunArgs>),
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
        /// Accept unsigned requests only (no SigV4), for plain HTTP load generators.
        #[arg(long)]
        anonymous: bool,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9080", env = "S3CHAOS_LISTEN")]
    listen: SocketAddr,
    /// The S3 endpoint to forward to, e.g. http://127.0.0.1:9000 or https://s3.example.com.
    /// Without it, an embedded S3 store serves --data-dir.
    #[arg(long, env = "S3CHAOS_UPSTREAM")]
    upstream: Option<String>,
    /// Extra CA certificate(s), PEM, to trust for an https:// upstream.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Scenario file; without it every request passes through untouched.
    #[arg(long, env = "S3CHAOS_SCENARIO")]
    scenario: Option<PathBuf>,
    /// Base domain for virtual-hosted-style requests (bucket.DOMAIN); repeatable.
    /// `localhost` is always one.
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// Where the embedded store keeps its data (only without --upstream).
    #[arg(long, default_value = "s3chaos-data")]
    data_dir: PathBuf,
    /// Embedded store: the only access key accepted (with --secret-key). Default: any access
    /// key whose secret key is the same string.
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    /// Embedded store: the secret key for --access-key.
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// Time allowed to connect to the upstream.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// Time allowed for the upstream to start answering a request.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    upstream_timeout: Duration,
    /// Worker threads serving requests (default: one per CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Evaluate rules and log what would be injected; inject nothing.
    #[arg(long)]
    dry_run: bool,
    /// Stop every fault this long after start, whatever the scenario says (e.g. 30m).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_duration: Option<Duration>,
    /// Run the scenario's timeline faster: 0.01 plays an hour-long drill in 36 s (phase
    /// durations, after/until and max_duration scale; latencies and rates do not).
    #[arg(long, value_parser = parse_time_scale)]
    time_scale: Option<f64>,
    /// How often the scenario file is checked for changes (SIGHUP reloads at once).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    reload_poll: Duration,
    /// Admin API address (`off` to disable). A non-loopback address needs --admin-token.
    #[arg(long, default_value = "127.0.0.1:9081", env = "S3CHAOS_ADMIN_LISTEN")]
    admin: String,
    /// Bearer token every admin API call must carry.
    #[arg(long, env = "S3CHAOS_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Append one JSON line per proxied request to this file (for `s3chaos report`).
    #[arg(long)]
    events: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Ctl(args) => ctl::run(args),
        Command::Report { file, format, output } => report(&file, &format, output.as_deref()),
        Command::Store {
            listen,
            data_dir,
            anonymous,
        } => {
            init_logging(false);
            let credentials = if anonymous {
                Credentials::Anonymous
            } else {
                Credentials::SecretEqualsKey
            };
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            runtime.block_on(async {
                match EmbeddedStore::start_on(listen, &data_dir, credentials, &[]).await {
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
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("s3chaos: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn parse_time_scale(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
        _ => Err(format!("`{s}` is not a positive number, e.g. 0.01")),
    }
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

fn report(file: &std::path::Path, format: &str, output: Option<&std::path::Path>) -> ExitCode {
    let report = match s3chaos::report::load(file) {
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
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

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let source = match &args.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some((text, path.display().to_string()))
        }
        None => None,
    };
    let scenario = match &source {
        // The error already reads `file:line:column: problem`.
        Some((text, origin)) => Scenario::parse(text, origin).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => Scenario::empty(),
    };
    let admin_addr: Option<SocketAddr> = match args.admin.as_str() {
        "off" => None,
        addr => Some(
            addr.parse()
                .with_context(|| format!("--admin: `{addr}` is not an address (or `off`)"))?,
        ),
    };
    let request_log = match &args.events {
        Some(path) => Some(
            s3chaos::telemetry::RequestLog::open(path, 65_536)
                .with_context(|| format!("cannot open the event log {}", path.display()))?,
        ),
        None => None,
    };
    let telemetry = Arc::new(s3chaos::telemetry::Telemetry::new(request_log));

    let (upstream_url, embedded) = match &args.upstream {
        Some(url) => (url.clone(), None),
        None => {
            let credentials = match (&args.access_key, &args.secret_key) {
                (Some(a), Some(s)) => Credentials::Fixed {
                    access_key: a.clone(),
                    secret_key: s.clone(),
                },
                _ => Credentials::SecretEqualsKey,
            };
            let store = EmbeddedStore::start(&args.data_dir, credentials, &args.domains)
                .await
                .context("starting the embedded S3 store")?;
            (store.url(), Some(store))
        }
    };
    let options = UpstreamOptions {
        ca_file: args.upstream_ca.clone(),
        connect_timeout: args.connect_timeout,
        response_timeout: args.upstream_timeout,
    };
    let upstream = Upstream::new(&upstream_url, &options)?;

    let rules = scenario.rules().len();
    let (name, seed, seed_given) = (scenario.name().to_owned(), scenario.seed(), scenario.seed_given());
    let engine = Arc::new(Engine::with_options(
        scenario,
        EngineOptions {
            dry_run: args.dry_run,
            max_duration: args.max_duration,
            time_scale: args.time_scale,
        },
    ));
    let shared = Shared::new(
        engine.clone(),
        upstream,
        Classifier::new(&args.domains),
        telemetry.clone(),
    );
    let proxy = Proxy::bind(args.listen, shared).with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = proxy.local_addr();
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let handle = proxy.start(workers).context("starting proxy workers")?;
    let control = Arc::new(match source {
        Some((text, origin)) => Control::new(engine.clone(), text, origin),
        None => Control::passthrough(engine.clone()),
    });
    let _admin = match admin_addr {
        Some(addr) => {
            let admin = Admin::bind(
                addr,
                AdminState {
                    control: control.clone(),
                    telemetry: telemetry.clone(),
                    blackholed: handle.blackholed_counter(),
                    token: args.admin_token.clone().filter(|t| !t.is_empty()),
                },
            )
            .await?;
            tracing::info!(
                "admin API on http://{}  —  try: s3chaos ctl --admin {} status",
                admin.local_addr(),
                admin.local_addr()
            );
            Some(admin.spawn())
        }
        None => None,
    };

    match &embedded {
        Some(store) => tracing::info!(
            data_dir = %store.data_dir.display(),
            "upstream: embedded S3 store; any access key works when the secret key is the same string{}",
            if args.access_key.is_some() { " (overridden: only --access-key/--secret-key)" } else { "" }
        ),
        None => tracing::info!(upstream = %upstream_url, "forwarding to upstream"),
    }
    tracing::info!(
        scenario = %name,
        rules,
        seed,
        "scenario loaded{}",
        if seed_given { "" } else { " (random seed; put `seed:` in the file to replay this run)" }
    );
    tracing::info!(
        workers,
        "s3chaos listening on http://{addr}  —  try: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 aws --endpoint-url http://{addr} s3 ls"
    );

    if args.dry_run {
        tracing::warn!("dry run: rules are evaluated and logged as `dry run: would inject`; nothing is injected");
    }
    if let Some(max) = args.max_duration {
        tracing::info!("every fault stops by itself after {}", humantime::format_duration(max));
    }
    let _supervisor = Supervisor::new(control.clone()).spawn();
    let reload_now = args.scenario.as_ref().map(|path| {
        let (now, task) = Reloader::new(path, control.clone()).spawn(args.reload_poll);
        tracing::info!(file = %path.display(), "watching the scenario file; a valid change applies live (SIGHUP reloads now)");
        (now, task)
    });

    serve_signals(&engine, reload_now.as_ref().map(|(now, _)| now.clone())).await?;
    handle.shutdown();
    if let Some(log) = telemetry.request_log() {
        log.close();
    }
    Ok(())
}

/// Waits for a signal to stop, meanwhile handling the others: SIGHUP reloads the scenario,
/// SIGUSR1 halts every fault (the big red button), SIGUSR2 resumes.
async fn serve_signals(engine: &Engine, reload_now: Option<Arc<tokio::sync::Notify>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; shutting down");
                return Ok(());
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM; shutting down");
                return Ok(());
            }
            _ = hup.recv() => match &reload_now {
                Some(now) => now.notify_one(),
                None => tracing::warn!("SIGHUP: no --scenario file to reload"),
            },
            _ = usr1.recv() => {
                if engine.halt("SIGUSR1") {
                    tracing::warn!(target: "s3chaos::drill", "HALTED by SIGUSR1 — every fault is off, traffic passes untouched (SIGUSR2 resumes)");
                }
            }
            _ = usr2.recv() => {
                if engine.resume() {
                    tracing::warn!(target: "s3chaos::drill", "resumed by SIGUSR2 — faults apply again");
                }
            }
        }
    }
}
