//! `s3chaos run`: the proxy with everything around it (embedded store, admin API, drill
//! supervisor, live reload, signals). `start` is shared with `s3chaos exec`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use s3chaos::admin::{Admin, AdminLimits, AdminState};
use s3chaos::embedded::{Credentials, Durability, EmbeddedStore, StoreOptions};
use s3chaos::engine::{Engine, EngineOptions};
use s3chaos::frontend::{Frontend, Running};
use s3chaos::proxy::connect_to::{ConnectTo, ConnectToTable};
use s3chaos::proxy::forward::Forward;
use s3chaos::proxy::targets::{AllowTarget, TargetPolicy};
use s3chaos::proxy::tls::PrivateCa;
use s3chaos::proxy::{ServeOptions, Upstream, UpstreamOptions};
use s3chaos::s3::Classifier;
use s3chaos::scenario::Source;
use s3chaos::telemetry::{RequestLog, Telemetry};
use tokio::task::JoinHandle;

#[derive(Args, Clone)]
pub struct RunArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9080", env = "S3CHAOS_LISTEN")]
    pub listen: SocketAddr,
    /// The S3 endpoint to forward to, e.g. http://127.0.0.1:9000 or https://s3.example.com.
    /// Without it, an embedded S3 store serves --data-dir.
    #[arg(long, env = "S3CHAOS_UPSTREAM")]
    pub upstream: Option<String>,
    /// Extra CA certificate(s), PEM, to trust for an https:// upstream.
    #[arg(long)]
    pub upstream_ca: Option<PathBuf>,
    /// Scenario file, or `builtin:NAME` (see `s3chaos scenarios`); without it every request
    /// passes through untouched.
    #[arg(long, env = "S3CHAOS_SCENARIO")]
    pub scenario: Option<String>,
    /// Base domain for virtual-hosted-style requests (bucket.DOMAIN); repeatable.
    /// `localhost` is always one.
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a certificate from a private CA made at start-up (rcgen) for
    /// localhost, 127.0.0.1, ::1, the --domain names and --tls-name; the CA certificate is
    /// written to --tls-ca-out for clients to trust (AWS_CA_BUNDLE).
    #[arg(long)]
    pub tls_self_signed: bool,
    /// Where --tls-self-signed and forward mode write the CA certificate they make.
    #[arg(long, default_value = "s3chaos-ca.pem")]
    pub tls_ca_out: PathBuf,
    /// Sign with this CA (PEM certificate) instead of one made at each start, so a CA
    /// installed once in a trust store serves every run; needs --tls-ca-key.
    #[arg(long, requires = "tls_ca_key")]
    pub tls_ca_cert: Option<PathBuf>,
    /// The private key (PEM, PKCS#8) of --tls-ca-cert.
    #[arg(long, requires = "tls_ca_cert")]
    pub tls_ca_key: Option<PathBuf>,
    /// A further name (DNS name or IP address) for the --tls-self-signed certificate;
    /// repeatable.
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Where the embedded store keeps its data (only without --upstream).
    #[arg(long, default_value = "s3chaos-data")]
    pub data_dir: PathBuf,
    /// Embedded store: the only access key accepted (with --secret-key; signatures are then
    /// checked). Default: any credentials, any region, signed or not.
    #[arg(long, requires = "secret_key")]
    pub access_key: Option<String>,
    /// Embedded store: the secret key for --access-key.
    #[arg(long, requires = "access_key")]
    pub secret_key: Option<String>,
    /// Embedded store: fsync each object file and each metadata commit before answering, so
    /// an acknowledged write survives a power loss. Default: it survives a crash or `kill -9`
    /// of s3chaos, not of the machine (the OS writes it back).
    #[arg(long)]
    pub fsync: bool,
    /// Time allowed to connect to the upstream.
    #[arg(long, default_value = "5s", value_parser = duration_arg)]
    pub connect_timeout: Duration,
    /// Time allowed for the upstream to start answering once the request (body included)
    /// has been sent; then it gets a 503 ServiceUnavailable.
    #[arg(long, default_value = "5m", value_parser = duration_arg)]
    pub upstream_timeout: Duration,
    /// Worker threads serving requests (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    pub log_json: bool,
    /// Once every listener is bound, write `{"endpoint": URL, "admin": URL}` to this file
    /// (atomically: written aside, then renamed), so a harness that asked for port 0 learns
    /// the ports without parsing logs.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Evaluate rules and log what would be injected; inject nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Stop every fault this long after start, whatever the scenario says (e.g. 30m).
    #[arg(long, value_parser = duration_arg)]
    pub max_duration: Option<Duration>,
    /// Run the scenario's timeline faster: 0.01 plays an hour-long drill in 36 s (phase
    /// durations, after/until and max_duration scale; latencies and rates do not).
    #[arg(long, value_parser = parse_time_scale)]
    pub time_scale: Option<f64>,
    /// Another front end, with its own upstream and scenario (repeatable):
    /// `listen=127.0.0.1:9180,upstream=https://s3.us-west-2.amazonaws.com,scenario=FILE`.
    /// `upstream` defaults to the main one, `scenario` to none (passthrough). One process then
    /// plays "us-east-1 is down, us-west-2 is fine" for an app that fails over.
    #[arg(long = "route", value_parser = parse_route)]
    pub routes: Vec<Route>,
    /// A client that has not sent a whole request head in this time is disconnected
    /// (slowloris); keep-alive connections idle this long are closed too, as S3 closes idle
    /// connections. `0s` turns it off.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub header_read_timeout: Duration,
    /// An upload that sends no byte of its body for this long is answered S3's
    /// `400 RequestTimeout` and its connection closed, as S3 does. `0s` turns it off.
    #[arg(long, default_value = "20s", value_parser = duration_arg)]
    pub body_read_timeout: Duration,
    /// At most this many client connections per listener; more get `503 SlowDown` and are
    /// closed (default: no limit beyond the file-descriptor limit).
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Speak only HTTP/1.1 to clients and upstreams (by default h2 is spoken where ALPN, or
    /// an h2 client's prior knowledge, agrees).
    #[arg(long)]
    pub no_http2: bool,
    /// `reverse`: clients use s3chaos as their S3 endpoint (AWS_ENDPOINT_URL). `forward`:
    /// clients keep talking to AWS through HTTPS_PROXY=http://LISTEN and trust the CA that
    /// s3chaos writes to --tls-ca-out (AWS_CA_BUNDLE); --intercept names the hosts it
    /// decrypts and faults, every other host is tunnelled untouched.
    #[arg(long, value_enum, default_value_t = Mode::Reverse)]
    pub mode: Mode,
    /// Forward mode: a host glob whose HTTPS traffic is decrypted and faulted (repeatable;
    /// default `*.amazonaws.com` and the --upstream host).
    #[arg(long = "intercept")]
    pub intercept: Vec<String>,
    /// Reach HOST:PORT at HOST2:PORT2 instead, keeping the name for TLS and `Host`, as curl's
    /// option does (repeatable; HOST may be a glob, HOST or PORT empty for any):
    /// `--connect-to 's3.us-east-1.amazonaws.com:443:minio.staging:9000'`.
    #[arg(long = "connect-to", value_parser = parse_connect_to)]
    pub connect_to: Vec<ConnectTo>,
    /// Forward mode: a HOST:PORT the proxy may reach for its clients although it is on
    /// loopback, link-local or this machine (repeatable; HOST a glob, PORT `*` for any).
    /// Without it such targets get 403, --upstream and --connect-to targets excepted, and
    /// s3chaos's own listener and admin API are never reached.
    #[arg(long = "allow-target", value_parser = parse_allow_target)]
    pub allow_target: Vec<AllowTarget>,
    /// Allow an upstream that looks like production AWS (`*.amazonaws.com`). Without it,
    /// s3chaos refuses to start against one: a drill belongs in staging.
    #[arg(long)]
    pub i_know_this_is_production: bool,
    /// On SIGTERM or Ctrl-C: stop accepting, let requests in flight finish for up to this
    /// long, then exit (held blackholes are released).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub shutdown_grace: Duration,
    /// Let a request ask for its own fault with an `x-s3chaos-fault` header (an S3 error
    /// code, `reset`, `blackhole`, or a scenario `fault:` value such as `{latency: 2s}`).
    #[arg(long)]
    pub allow_header_faults: bool,
    /// How often the scenario file is checked for changes (SIGHUP reloads at once).
    #[arg(long, default_value = "1s", value_parser = duration_arg)]
    pub reload_poll: Duration,
    /// Admin API address (`off` to disable). A non-loopback address needs --admin-token.
    #[arg(long, default_value = "127.0.0.1:9081", env = "S3CHAOS_ADMIN_LISTEN")]
    pub admin: String,
    /// Bearer token every admin API call must carry.
    #[arg(long, env = "S3CHAOS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Append one JSON line per proxied request to this file (for `s3chaos report`).
    #[arg(long)]
    pub events: Option<PathBuf>,
}

/// How clients reach s3chaos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// s3chaos is the clients' S3 endpoint.
    Reverse,
    /// s3chaos is the clients' HTTPS_PROXY.
    Forward,
}

fn parse_connect_to(s: &str) -> Result<ConnectTo, String> {
    s.parse()
}

fn parse_allow_target(s: &str) -> Result<AllowTarget, String> {
    s.parse()
}

pub fn parse_time_scale(s: &str) -> Result<f64, String> {
    let range = s3chaos::engine::TIME_SCALE;
    match s.parse::<f64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        Ok(v) if v > 0.0 && v.is_finite() => Err(format!(
            "{v} is outside {:e}..={:e}: drill time would overflow or stand still (0.01 plays an hour in 36 s)",
            range.start(),
            range.end()
        )),
        _ => Err(format!("`{s}` is not a positive number, e.g. 0.01")),
    }
}

/// One `--route`: a further listener with its own upstream and scenario.
#[derive(Debug, Clone)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: Option<String>,
    pub scenario: Option<String>,
}

pub fn parse_route(s: &str) -> Result<Route, String> {
    let (mut listen, mut upstream, mut scenario) = (None, None, None);
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: write key=value (listen, upstream, scenario)"))?;
        match key {
            "listen" => listen = Some(value.parse().map_err(|e| format!("listen `{value}`: {e}"))?),
            "upstream" => upstream = Some(value.to_owned()),
            "scenario" => scenario = Some(value.to_owned()),
            other => return Err(format!("unknown route key `{other}` (listen, upstream, scenario)")),
        }
    }
    Ok(Route {
        listen: listen.ok_or("a route needs listen=ADDR")?,
        upstream,
        scenario,
    })
}

/// A running proxy and what runs beside it. Dropping it stops the background tasks; call
/// [`Started::stop`] to stop the workers and flush the event log.
pub struct Started {
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub engine: Arc<Engine>,
    pub telemetry: Arc<Telemetry>,
    /// Whether the upstream is the embedded store (any key whose secret is the same works).
    pub embedded: bool,
    main: Running,
    /// The `--route` front ends.
    pub routes: Vec<Running>,
    tasks: Vec<JoinHandle<()>>,
    _store: Option<EmbeddedStore>,
}

impl Started {
    /// Stops accepting on every listener and waits up to `grace` for the connections in
    /// flight to finish; returns how many were still open.
    pub fn drain(&self, grace: Duration) -> usize {
        let deadline = std::time::Instant::now() + grace;
        let mut left = self.main.proxy.drain(grace);
        for route in &self.routes {
            left += route
                .proxy
                .drain(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        left
    }

    pub fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let Started {
            main,
            routes,
            telemetry,
            ..
        } = self;
        main.stop();
        for route in routes {
            route.stop();
        }
        if let Some(log) = telemetry.request_log() {
            log.close();
        }
    }
}

fn engine_options(args: &RunArgs) -> EngineOptions {
    EngineOptions {
        dry_run: args.dry_run,
        max_duration: args.max_duration,
        time_scale: args.time_scale,
        allow_header_faults: args.allow_header_faults,
    }
}

/// The private CA `--tls-self-signed` and forward mode need: loaded from --tls-ca-cert and
/// --tls-ca-key, or made at start-up and written to --tls-ca-out for clients to trust.
fn private_ca(args: &RunArgs) -> anyhow::Result<Option<Arc<PrivateCa>>> {
    if !args.tls_self_signed && args.mode != Mode::Forward {
        if args.tls_ca_cert.is_some() {
            anyhow::bail!("--tls-ca-cert signs for --tls-self-signed or --mode forward; give one of them");
        }
        return Ok(None);
    }
    let ca = match (&args.tls_ca_cert, &args.tls_ca_key) {
        (Some(cert), Some(key)) => PrivateCa::from_pem_files(cert, key)?,
        _ => {
            let ca = PrivateCa::generate()?;
            ca.write(&args.tls_ca_out)?;
            ca
        }
    };
    tracing::info!(
        "certificates signed by a private CA; boto3 and the AWS CLI trust it with AWS_CA_BUNDLE={0}, Node with NODE_EXTRA_CA_CERTS={0} (s3chaos exec exports what every client reads)",
        ca_bundle(args).display()
    );
    Ok(Some(Arc::new(ca)))
}

/// The CA certificate file clients should trust (`AWS_CA_BUNDLE`), as an absolute path.
pub fn ca_bundle(args: &RunArgs) -> PathBuf {
    let path = args.tls_ca_cert.as_ref().unwrap_or(&args.tls_ca_out);
    std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())
}

/// The TLS configuration `--tls-cert`/`--tls-key` or `--tls-self-signed` asks for, made
/// once for every listener.
fn tls_config(args: &RunArgs, ca: Option<&PrivateCa>) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        return Ok(Some(s3chaos::proxy::tls::from_pem_files(cert, key)?));
    }
    let (true, Some(ca)) = (args.tls_self_signed, ca) else {
        return Ok(None);
    };
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !args.listen.ip().is_unspecified() {
        names.push(args.listen.ip().to_string());
    }
    for domain in &args.domains {
        names.push(domain.clone());
        names.push(format!("*.{domain}"));
    }
    names.extend(args.tls_names.iter().cloned());
    names.sort();
    names.dedup();
    let config = ca.server_config(&names)?;
    tracing::info!(names = %names.join(","), "TLS listener with a certificate from the private CA");
    Ok(Some(config))
}

/// Forward mode's settings: the hosts to intercept and the CA that mints their certificates.
fn forward_config(
    args: &RunArgs,
    ca: Option<Arc<PrivateCa>>,
    connect_to: ConnectToTable,
    targets: Arc<TargetPolicy>,
) -> anyhow::Result<Option<Arc<Forward>>> {
    let (Mode::Forward, Some(ca)) = (args.mode, ca) else {
        return Ok(None);
    };
    let mut intercept = args.intercept.clone();
    if intercept.is_empty() {
        intercept.extend(s3chaos::proxy::forward::DEFAULT_INTERCEPT.iter().map(|s| s.to_string()));
        if let Some(host) = args
            .upstream
            .as_deref()
            .and_then(|u| u.parse::<http::Uri>().ok())
            .and_then(|u| u.host().map(str::to_owned))
        {
            intercept.push(host);
        }
    }
    let forward = Forward::new(ca, &intercept, connect_to, targets, !args.no_http2)?;
    tracing::info!(intercept = %intercept.join(","), "forward-proxy mode: these hosts are decrypted and faulted, the rest tunnelled untouched");
    if args.connect_to.is_empty() {
        tracing::warn!(
            "forward-proxy mode: intercepted requests go on to the real hosts they name, with faults injected; point the apps at staging buckets"
        );
    }
    Ok(Some(Arc::new(forward)))
}

/// Where forward mode may connect: `--allow-target`s and the upstream (both named by the
/// operator); the admin API's address is s3chaos's own from the start.
fn forward_targets(args: &RunArgs, upstream: &str, admin: Option<SocketAddr>) -> anyhow::Result<Arc<TargetPolicy>> {
    let mut allow = args.allow_target.clone();
    let uri: http::Uri = upstream.parse().with_context(|| format!("the upstream `{upstream}`"))?;
    if let Some(host) = uri.host() {
        let port = uri
            .port_u16()
            .unwrap_or(if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
                443
            } else {
                80
            });
        allow.push(format!("{host}:{port}").parse().map_err(anyhow::Error::msg)?);
    }
    let targets = TargetPolicy::new(allow);
    if let Some(admin) = admin {
        targets.add_own(admin);
    }
    Ok(Arc::new(targets))
}

fn serve_options(
    args: &RunArgs,
    tls: Option<Arc<rustls::ServerConfig>>,
    forward: Option<Arc<Forward>>,
) -> ServeOptions {
    ServeOptions {
        tls,
        forward,
        header_read_timeout: (!args.header_read_timeout.is_zero()).then_some(args.header_read_timeout),
        body_read_timeout: (!args.body_read_timeout.is_zero()).then_some(args.body_read_timeout),
        max_connections: args.max_connections,
        http2: !args.no_http2,
    }
}

/// Refuses an upstream on AWS unless `--i-know-this-is-production` says it is meant.
fn check_not_production(url: &str, allowed: bool) -> anyhow::Result<()> {
    let host = url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_ascii_lowercase))
        .unwrap_or_default();
    if !allowed && (host == "amazonaws.com" || host.ends_with(".amazonaws.com")) {
        anyhow::bail!(
            "the upstream {url} is AWS itself; s3chaos injects faults into every request it forwards. Add --i-know-this-is-production if that is what you mean"
        );
    }
    Ok(())
}

pub async fn start(args: &RunArgs) -> anyhow::Result<Started> {
    let ca = private_ca(args)?;
    let tls = tls_config(args, ca.as_deref())?;
    let connect_to = ConnectToTable::new(args.connect_to.clone());
    let scheme = if tls.is_some() { "https" } else { "http" };
    let source = scenario_source(args.scenario.as_deref())?;
    let admin_addr: Option<SocketAddr> = match args.admin.as_str() {
        "off" => None,
        addr => Some(
            addr.parse()
                .with_context(|| format!("--admin: `{addr}` is not an address (or `off`)"))?,
        ),
    };
    let request_log = match &args.events {
        Some(path) => Some(
            RequestLog::open(path, 65_536).with_context(|| format!("cannot open the event log {}", path.display()))?,
        ),
        None => None,
    };
    let telemetry = Arc::new(Telemetry::new(request_log));

    let (upstream_url, store) = match &args.upstream {
        Some(url) => {
            check_not_production(url, args.i_know_this_is_production)?;
            (url.clone(), None)
        }
        None => {
            let credentials = match (&args.access_key, &args.secret_key) {
                (Some(a), Some(s)) => Credentials::Fixed {
                    access_key: a.clone(),
                    secret_key: s.clone(),
                },
                _ => Credentials::Any,
            };
            let options = StoreOptions {
                credentials,
                domains: args.domains.clone(),
                durability: durability(args.fsync),
            };
            let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            let store = EmbeddedStore::start_with(loopback, &args.data_dir, options)
                .await
                .context("starting the embedded S3 store")?;
            (store.url(), Some(store))
        }
    };
    let options = UpstreamOptions {
        ca_file: args.upstream_ca.clone(),
        connect_timeout: args.connect_timeout,
        response_timeout: args.upstream_timeout,
        connect_to: connect_to.clone(),
        http2: !args.no_http2,
        targets: None,
    };
    let targets = forward_targets(args, &upstream_url, admin_addr)?;
    let forward = forward_config(args, ca, connect_to, targets.clone())?;
    let upstream = Upstream::new(
        &upstream_url,
        &UpstreamOptions {
            targets: forward.as_ref().map(|_| targets),
            ..options.clone()
        },
    )?;
    let upstream_idle = upstream.idle_connections();

    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let watched = source.path().map(|p| p.to_owned());
    let main = Frontend::builder(args.listen, upstream, source)
        .engine_options(engine_options(args))
        .classifier(Classifier::new(&args.domains))
        .telemetry(telemetry.clone())
        .workers(workers)
        .serve_options(serve_options(args, tls.clone(), forward.clone()))
        .reload_poll(Some(args.reload_poll))
        .start()?;
    let (addr, engine, control) = (main.addr, main.engine.clone(), main.control.clone());
    let scenario = engine.scenario();
    let rules = scenario.rules().len();
    let (name, seed, seed_given) = (scenario.name().to_owned(), scenario.seed(), scenario.seed_given());
    let mut tasks = Vec::new();
    let mut admin_bound = None;
    if let Some(addr) = admin_addr {
        let admin = Admin::bind(
            addr,
            AdminState {
                control: control.clone(),
                telemetry: telemetry.clone(),
                blackholed: main.proxy.blackholed_counter(),
                upstream_idle,
                token: args.admin_token.clone().filter(|t| !t.is_empty()),
            },
        )
        .await?
        .with_limits(AdminLimits {
            header_read_timeout: (!args.header_read_timeout.is_zero()).then_some(args.header_read_timeout),
            body_read_timeout: (!args.body_read_timeout.is_zero()).then_some(args.body_read_timeout),
            ..AdminLimits::default()
        });
        admin_bound = Some(admin.local_addr());
        if let Some(forward) = &forward {
            forward.targets().add_own(admin.local_addr());
        }
        tracing::info!(
            "admin API on http://{}  —  try: s3chaos ctl --admin {} status",
            admin.local_addr(),
            admin.local_addr()
        );
        tasks.push(admin.spawn());
    }

    match &store {
        Some(store) => tracing::info!(
            data_dir = %store.data_dir.display(),
            "upstream: embedded S3 store; any credentials work{}",
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
    if forward.is_some() {
        tracing::info!(
            workers,
            "s3chaos listening on {scheme}://{addr} as a forward proxy  —  try: HTTPS_PROXY={scheme}://{addr} AWS_CA_BUNDLE={} aws s3 ls",
            ca_bundle(args).display()
        );
    } else {
        tracing::info!(
            workers,
            "s3chaos listening on {scheme}://{addr}  —  try: AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 aws --endpoint-url {scheme}://{addr} s3 ls"
        );
    }
    if args.dry_run {
        tracing::warn!("dry run: rules are evaluated and logged as `dry run: would inject`; nothing is injected");
    }
    if let Some(max) = args.max_duration {
        tracing::info!("every fault stops by itself after {}", humantime::format_duration(max));
    }
    if let Some(scale) = args.time_scale {
        tracing::info!(
            "time scale {scale}: the drill's timeline runs {}x as fast as real time",
            1.0 / scale
        );
    }
    if let Some(path) = watched {
        tracing::info!(file = %path.display(), "watching the scenario file; a valid change applies live (SIGHUP reloads now)");
    }
    let mut routes = Vec::new();
    for route in &args.routes {
        routes.push(start_route(args, route, &upstream_url, &options, tls.clone())?);
    }
    if let Some(path) = &args.ready_file {
        let ready = serde_json::json!({
            "endpoint": format!("{scheme}://{addr}"),
            "admin": admin_bound.map(|a| format!("http://{a}")),
        });
        let aside = path.with_extension("tmp");
        std::fs::write(&aside, ready.to_string())
            .and_then(|()| std::fs::rename(&aside, path))
            .with_context(|| format!("cannot write --ready-file {}", path.display()))?;
    }
    Ok(Started {
        addr,
        admin: admin_bound,
        engine,
        telemetry,
        embedded: store.is_some(),
        main,
        routes,
        tasks,
        _store: store,
    })
}

/// Starts one `--route`: its own engine (same options), upstream, counters, drill supervisor
/// and, for a file, live reload. The admin API drives the main listener only.
fn start_route(
    args: &RunArgs,
    route: &Route,
    main_upstream: &str,
    options: &UpstreamOptions,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> anyhow::Result<Running> {
    let source = scenario_source(route.scenario.as_deref())?;
    let upstream_url = route.upstream.as_deref().unwrap_or(main_upstream);
    check_not_production(upstream_url, args.i_know_this_is_production)?;
    let upstream = Upstream::new(upstream_url, options)?;
    let running = Frontend::builder(route.listen, upstream, source)
        .engine_options(engine_options(args))
        .classifier(Classifier::new(&args.domains))
        .workers(args.workers.unwrap_or(1))
        .serve_options(serve_options(args, tls, None))
        .reload_poll(Some(args.reload_poll))
        .start()
        .context("starting a route")?;
    let scheme = if args.tls_cert.is_some() || args.tls_self_signed {
        "https"
    } else {
        "http"
    };
    let name = running.engine.scenario().name().to_owned();
    tracing::info!(upstream = %upstream_url, scenario = %name, "route listening on {scheme}://{}", running.addr);
    Ok(running)
}

/// The scenario a `--scenario` argument names (`builtin:NAME` or a file); passthrough
/// without one.
fn scenario_source(spec: Option<&str>) -> anyhow::Result<Source> {
    match spec {
        None => Ok(Source::None),
        Some(spec) => s3chaos::library::source(spec).map_err(anyhow::Error::msg),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = start(&args).await?;
    serve_signals(&started.engine, started.main.reload_now.clone()).await?;
    let grace = args.shutdown_grace;
    tracing::info!(
        "no longer accepting; letting requests in flight finish (up to {})",
        humantime::format_duration(grace)
    );
    let left = tokio::task::block_in_place(|| started.drain(grace));
    if left == 0 {
        tracing::info!("drained: every request in flight finished");
    } else {
        tracing::warn!(
            open = left,
            "the shutdown grace ran out; closing the connections still open"
        );
    }
    started.stop();
    Ok(())
}

/// Waits for a signal to stop, meanwhile handling the others: SIGHUP reloads the scenario,
/// SIGUSR1 halts every fault (the big red button), SIGUSR2 resumes.
pub async fn serve_signals(engine: &Engine, reload_now: Option<Arc<tokio::sync::Notify>>) -> anyhow::Result<()> {
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

/// Durations on the command line: the scenario's syntax and its one-year limit (a longer
/// `--shutdown-grace` or `--max-duration` would overflow deadline arithmetic).
pub fn duration_arg(s: &str) -> Result<Duration, String> {
    s.parse::<s3chaos::values::DurationValue>().map(|d| d.0)
}

/// The store's durability for `--fsync`.
pub fn durability(fsync: bool) -> Durability {
    if fsync {
        Durability::PowerLoss
    } else {
        Durability::ProcessCrash
    }
}
