//! The composition root: one builder that wires a listening s3chaos front end together
//! (scenario source → engine → proxy workers, the control door, the drill supervisor and,
//! for a file, live reload). `s3chaos run`, each `--route`, `s3chaos exec` and the test
//! harnesses all start through it, so there is one start-up to change.
//!
//! ```no_run
//! # async fn example(upstream: std::sync::Arc<s3chaos::proxy::Upstream>) -> anyhow::Result<()> {
//! use s3chaos::frontend::Frontend;
//! let source = s3chaos::library::source("builtin:slowdown-storm").map_err(anyhow::Error::msg)?;
//! let running = Frontend::builder("127.0.0.1:0".parse()?, upstream, source)
//!     .workers(2)
//!     .start()?;
//! println!("s3chaos on http://{}", running.addr);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::control::Control;
use crate::drill::Supervisor;
use crate::engine::{Engine, EngineOptions, Scenario};
use crate::proxy::{Proxy, ProxyHandle, ServeOptions, Shared, Upstream};
use crate::reload::Reloader;
use crate::s3::Classifier;
use crate::scenario::{ScenarioError, Source};
use crate::telemetry::Telemetry;

/// Why a front end did not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("starting the proxy workers: {0}")]
    Workers(std::io::Error),
}

/// A front end to start: see [`Frontend::builder`].
pub struct Frontend {
    listen: SocketAddr,
    upstream: Arc<Upstream>,
    source: Source,
    engine: EngineOptions,
    classifier: Classifier,
    telemetry: Arc<Telemetry>,
    workers: usize,
    serve: ServeOptions,
    reload_poll: Option<Duration>,
}

/// A running front end. Dropping it stops the workers and the background tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub engine: Arc<Engine>,
    /// The one door to the running scenario (reloads, the admin API).
    pub control: Arc<Control>,
    pub telemetry: Arc<Telemetry>,
    pub proxy: ProxyHandle,
    /// Notified to reload the scenario file now (SIGHUP); `None` without a file.
    pub reload_now: Option<Arc<tokio::sync::Notify>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Frontend {
    /// A front end on `listen` (port 0: any free one) forwarding to `upstream` under the
    /// scenario `source`; one worker, default options, until told otherwise.
    pub fn builder(listen: SocketAddr, upstream: Arc<Upstream>, source: Source) -> Frontend {
        Frontend {
            listen,
            upstream,
            source,
            engine: EngineOptions::default(),
            classifier: Classifier::default(),
            telemetry: Arc::default(),
            workers: 1,
            serve: ServeOptions::default(),
            reload_poll: Some(Duration::from_secs(1)),
        }
    }

    pub fn engine_options(mut self, options: EngineOptions) -> Frontend {
        self.engine = options;
        self
    }

    /// How requests are classified (`--domain` base domains for virtual-hosted style).
    pub fn classifier(mut self, classifier: Classifier) -> Frontend {
        self.classifier = classifier;
        self
    }

    /// Where counters and the event log go (shared with the admin API).
    pub fn telemetry(mut self, telemetry: Arc<Telemetry>) -> Frontend {
        self.telemetry = telemetry;
        self
    }

    /// Worker threads, each with its own runtime and upstream pool (at least one).
    pub fn workers(mut self, workers: usize) -> Frontend {
        self.workers = workers.max(1);
        self
    }

    pub fn serve_options(mut self, options: ServeOptions) -> Frontend {
        self.serve = options;
        self
    }

    /// How often a scenario file is checked for changes; `None` turns live reload off.
    pub fn reload_poll(mut self, poll: Option<Duration>) -> Frontend {
        self.reload_poll = poll;
        self
    }

    /// Reads and compiles the scenario (an error names file, line and column), binds the
    /// listener, starts the workers, the drill supervisor and live reload. Call it inside a
    /// tokio runtime: the supervisor and the reloader are tasks of the caller's runtime.
    pub fn start(self) -> Result<Running, FrontendError> {
        let loaded = self.source.read()?;
        let scenario = match &loaded {
            Some((text, origin)) => Scenario::parse(text, origin)?,
            None => Scenario::empty(),
        };
        let engine = Arc::new(Engine::with_options(scenario, self.engine));
        let shared = Shared::new(engine.clone(), self.upstream, self.classifier, self.telemetry.clone());
        let proxy = Proxy::bind(self.listen, shared).map_err(|source| FrontendError::Listen {
            addr: self.listen,
            source,
        })?;
        let addr = proxy.local_addr();
        let proxy = proxy
            .start_with(self.workers, self.serve)
            .map_err(FrontendError::Workers)?;
        let control = Arc::new(match loaded {
            Some((text, origin)) => Control::new(engine.clone(), text, origin),
            None => Control::passthrough(engine.clone()),
        });
        let mut tasks = vec![
            Supervisor::new(control.clone())
                .logging_to(self.telemetry.clone())
                .spawn(),
        ];
        let mut reload_now = None;
        if let (Some(path), Some(poll)) = (self.source.path(), self.reload_poll) {
            let (now, task) = Reloader::new(path, control.clone()).spawn(poll);
            reload_now = Some(now);
            tasks.push(task);
        }
        Ok(Running {
            addr,
            engine,
            control,
            telemetry: self.telemetry,
            proxy,
            reload_now,
            tasks,
        })
    }
}

impl Running {
    /// Stops the background tasks and the workers.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
