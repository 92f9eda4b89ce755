//! The reverse proxy: listener, per-request phases, upstream client and body streaming.
//!
//! Each request goes through the same named phases:
//! 1. **classify** — S3 operation, bucket, key ([`crate::s3::Classifier`]); skipped when the
//!    scenario has no rules;
//! 2. **decide** — the engine picks the rules that fire ([`crate::engine::Engine::decide`]);
//! 3. **request faults** — delays add up, then an error, blackhole or reset may end the request;
//! 4. **upstream** — the request is forwarded unchanged (hop-by-hop headers aside) and its
//!    body streamed;
//! 5. **response body faults** — the upstream's body is streamed back through any body faults.
//!
//! Clients speak HTTP/1.1 or h2 (see [`conn`] for how a fault reaches one h2 stream); in
//! forward-proxy mode ([`forward`]) the requests arrive inside `CONNECT` tunnels or in
//! absolute form, and each names its own upstream.

pub mod conn;
pub mod connect_to;
pub mod context;
pub mod forward;
mod handler;
pub mod headers;
mod idle;
mod pool;
mod protocol;
pub use protocol::MAX_HEADERS;
pub mod targets;
pub mod tls;
mod upload;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use futures_util::future::Either;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, watch};

use crate::engine::Engine;
use crate::engine::timeline::Connections;
use crate::s3::Classifier;
use crate::telemetry::{Telemetry, WorkerMetrics};
use conn::{ClientIo, ClientStream, ConnControl};
pub use upstream::{Upstream, UpstreamOptions};

/// Everything a request handler needs, shared read-only by all connections.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub upstream: Arc<Upstream>,
    pub classifier: Classifier,
    pub telemetry: Arc<Telemetry>,
    /// This worker's own counters (each worker gets its own in [`Proxy::start`]).
    metrics: Arc<WorkerMetrics>,
    /// An upload that sends nothing for this long is answered `400 RequestTimeout`
    /// ([`ServeOptions::body_read_timeout`]).
    body_read_timeout: Option<std::time::Duration>,
}

impl Shared {
    pub fn new(
        engine: Arc<Engine>,
        upstream: Arc<Upstream>,
        classifier: Classifier,
        telemetry: Arc<Telemetry>,
    ) -> Shared {
        Shared {
            engine,
            upstream,
            classifier,
            telemetry,
            metrics: Arc::default(),
            body_read_timeout: None,
        }
    }
}

/// A bound, not yet serving, proxy listener.
pub struct Proxy {
    listener: std::net::TcpListener,
    shared: Shared,
}

/// A running proxy. Dropping it (or calling [`ProxyHandle::shutdown`]) stops every worker:
/// listeners close, connections and held blackholes are dropped.
pub struct ProxyHandle {
    addr: SocketAddr,
    held: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    /// Turned on by [`ProxyHandle::drain`]: stop accepting, finish what is in flight.
    draining: watch::Sender<bool>,
    /// Client connections being served (not counting held blackholes).
    open: Arc<AtomicUsize>,
    workers: Vec<JoinHandle<()>>,
    /// The workers' and the acceptor's runtimes, for counting their tasks.
    runtimes: Vec<tokio::runtime::Handle>,
}

impl ProxyHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections (or HTTP/2 streams) currently held unanswered by blackholes.
    pub fn blackholed_connections(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// The live count behind [`ProxyHandle::blackholed_connections`], for the admin API.
    pub fn blackholed_counter(&self) -> Arc<AtomicUsize> {
        self.held.clone()
    }

    /// Graceful stop, first half: the listener closes (new connections are refused), idle
    /// keep-alive connections are closed, requests in flight run to their end. Waits until no
    /// client connection is left or `grace` has passed; returns how many were still open.
    /// Blackholed connections are not waited for: [`ProxyHandle::shutdown`] releases them.
    pub fn drain(&self, grace: std::time::Duration) -> usize {
        let _ = self.draining.send(true);
        let deadline = std::time::Instant::now() + grace;
        loop {
            let open = self.open.load(Ordering::SeqCst);
            if open == 0 || std::time::Instant::now() >= deadline {
                return open;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Tasks alive in the proxy's runtimes: one per worker and the acceptor, one per open
    /// client connection and its upstream connections. What the leak checks count.
    pub fn alive_tasks(&self) -> usize {
        self.runtimes.iter().map(|r| r.metrics().num_alive_tasks()).sum()
    }

    /// Client connections being served (held blackholes not counted).
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Stops the workers and waits for their threads to end.
    pub fn shutdown(mut self) {
        self.stop_workers();
    }

    fn stop_workers(&mut self) {
        let _ = self.stop.send(true);
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }

    /// Blocks until the workers end (they end only on shutdown).
    pub fn join(mut self) {
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.stop_workers();
    }
}

impl Proxy {
    pub fn bind(addr: SocketAddr, shared: Shared) -> std::io::Result<Proxy> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Proxy { listener, shared })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Starts `workers` threads (at least one) and serves until the handle is dropped.
    ///
    /// Threading follows Envoy and nginx rather than a work-stealing pool: each worker is a
    /// single-threaded runtime that owns its client connections *and* its own upstream
    /// connection pool, so a request is served start to finish on one thread, with no
    /// cross-thread wake-ups or shared pool lock. A separate acceptor thread hands
    /// connections to the workers in turn.
    pub fn start(self, workers: usize) -> std::io::Result<ProxyHandle> {
        self.start_with(workers, ServeOptions::default())
    }

    /// [`Proxy::start`] with limits that protect the proxy from its clients.
    pub fn start_with(self, workers: usize, limits: ServeOptions) -> std::io::Result<ProxyHandle> {
        let addr = self.local_addr();
        if let Some(forward) = &limits.forward {
            forward.targets().add_own(addr);
        }
        let workers = workers.max(1);
        let (stop, stopped) = watch::channel(false);
        let held = Arc::new(AtomicUsize::new(0));
        let (close_tx, close_rx) = watch::channel(0u64);
        let (draining, draining_rx) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let mut senders = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let mut runtimes = Vec::with_capacity(workers + 1);
        for index in 0..workers {
            let (tx, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
            senders.push(tx);
            let shared = Arc::new(Shared {
                engine: self.shared.engine.clone(),
                upstream: Arc::new(self.shared.upstream.with_own_pool()),
                classifier: self.shared.classifier.clone(),
                telemetry: self.shared.telemetry.clone(),
                metrics: self.shared.telemetry.new_worker(),
                body_read_timeout: limits.body_read_timeout,
            });
            let (thread, runtime) = spawn_runtime_thread(
                format!("s3chaos-worker-{index}"),
                stopped.clone(),
                serve_worker(
                    shared,
                    rx,
                    Lifecycle {
                        held: held.clone(),
                        open: open.clone(),
                        close_all: close_rx.clone(),
                        draining: draining_rx.clone(),
                        header_read_timeout: limits.header_read_timeout,
                        tls: limits
                            .tls
                            .as_ref()
                            .map(|tls| {
                                if limits.http2 {
                                    tls.clone()
                                } else {
                                    tls::http1_only(tls)
                                }
                            })
                            .map(tokio_rustls::TlsAcceptor::from),
                        http2: limits.http2,
                        forward: limits.forward.clone(),
                        listen: addr,
                    },
                ),
            )?;
            threads.push(thread);
            runtimes.push(runtime);
        }
        // The acceptor runs on its own small thread so that no worker is favoured.
        let (acceptor, runtime) = spawn_runtime_thread(
            "s3chaos-acceptor".into(),
            stopped,
            accept_loop(
                self.listener,
                senders,
                self.shared.engine.clone(),
                close_tx,
                draining_rx,
                (limits.max_connections, open.clone()),
            ),
        )?;
        threads.push(acceptor);
        runtimes.push(runtime);
        Ok(ProxyHandle {
            addr,
            held,
            stop,
            draining,
            open,
            workers: threads,
            runtimes,
        })
    }
}

/// Runs `work` on a new thread with its own single-threaded runtime, until it ends or `stop`
/// turns true. Dropping the runtime then drops every task it still holds.
fn spawn_runtime_thread<F>(
    name: String,
    mut stop: watch::Receiver<bool>,
    work: F,
) -> std::io::Result<(JoinHandle<()>, tokio::runtime::Handle)>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let handle = runtime.handle().clone();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        runtime.block_on(async move {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => {}
                _ = work => {}
            }
        });
    })?;
    Ok((thread, handle))
}

/// How often the acceptor looks at the drill for `refuse_connections` / `close_connections`.
const CONNECTION_POLICY_TICK: std::time::Duration = std::time::Duration::from_millis(50);

/// Accepts connections and deals them to the workers round-robin. During a phase that
/// refuses connections the listening socket is closed (clients get "connection refused",
/// as from a host with nothing listening) and bound again when the phase ends; a phase that
/// closes connections also tells every worker to drop its open ones.
async fn accept_loop(
    listener: std::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    engine: Arc<Engine>,
    close_all: watch::Sender<u64>,
    mut draining: watch::Receiver<bool>,
    (max_connections, open_connections): (Option<usize>, Arc<AtomicUsize>),
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "the listener has no address");
            return;
        }
    };
    let mut listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "cannot register the listener");
            return;
        }
    };
    let mut policy = Connections::Accept;
    let mut tick = tokio::time::interval(CONNECTION_POLICY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0;
    loop {
        if *draining.borrow() {
            // Close the listener, but keep the workers' channels open: their connections are
            // finishing.
            drop(listener);
            std::future::pending::<()>().await;
            return;
        }
        let now = engine.connections();
        if now != policy {
            match now {
                Connections::Accept => match rebind(addr) {
                    Some(l) => {
                        listener = Some(l);
                        tracing::warn!(target: "s3chaos::fault", %addr, "accepting connections again");
                    }
                    None => {
                        tick.tick().await;
                        continue; // Try again at the next tick; the phase stays "refusing".
                    }
                },
                Connections::Refuse | Connections::Close => {
                    listener = None;
                    tracing::warn!(target: "s3chaos::fault", %addr, "refusing connections: nothing listens until the phase ends");
                    if now == Connections::Close {
                        close_all.send_modify(|generation| *generation += 1);
                        tracing::warn!(target: "s3chaos::fault", "dropping every open client connection");
                    }
                }
            }
            policy = now;
        }
        let Some(open) = &listener else {
            tokio::select! {
                _ = tick.tick() => {}
                _ = draining.changed() => {}
            }
            continue;
        };
        tokio::select! {
            _ = draining.changed() => {}
            accepted = open.accept() => match accepted {
                Ok((socket, _)) => {
                    if max_connections.is_some_and(|max| open_connections.load(Ordering::SeqCst) >= max) {
                        tokio::spawn(refuse_over_limit(socket));
                        continue;
                    }
                    let Ok(socket) = socket.into_std() else {
                        continue;
                    };
                    if workers[next].send(socket).is_err() {
                        return; // Workers are gone: shutting down.
                    }
                    next = (next + 1) % workers.len();
                }
                Err(e) => {
                    // EMFILE and friends: log, back off a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = tick.tick() => {}
        }
    }
}

/// Answers a connection over `--max-connections` with S3's `503 SlowDown` (which SDKs retry
/// with backoff) and closes it, so other clients are never stalled by the excess.
async fn refuse_over_limit(socket: tokio::net::TcpStream) {
    let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
        let error = crate::s3::S3ErrorResponse::standard(crate::s3::Code::SlowDown);
        let response = crate::faults::error::answer(&error, req.method(), req.uri().path());
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut http = http1::Builder::new();
    http.keep_alive(false);
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        http.serve_connection(TokioIo::new(socket), service),
    )
    .await;
}

/// Binds `addr` again after a phase that refused connections.
fn rebind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    let bound = std::net::TcpListener::bind(addr).and_then(|l| {
        l.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(l)
    });
    match bound {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen again; retrying");
            None
        }
    }
}

/// What ends a served client connection besides the client: a phase that closes every
/// connection, a graceful stop, or a fault that takes over a whole HTTP/2 connection.
#[derive(Clone)]
struct Watch {
    close_all: watch::Receiver<u64>,
    draining: watch::Receiver<bool>,
}

impl Watch {
    fn new(close_all: &watch::Receiver<u64>, draining: &watch::Receiver<bool>) -> Watch {
        let mut close_all = close_all.clone();
        close_all.mark_unchanged();
        Watch {
            close_all,
            draining: draining.clone(),
        }
    }

    /// A watch for a connection opened now: only a later `close_connections` closes it.
    fn fresh(&self) -> Watch {
        Watch::new(&self.close_all, &self.draining)
    }

    /// Serves `conn` to its end, or until one of the above; `None` when it was dropped.
    async fn serve<C: protocol::Graceful>(self, conn: C, fate: &ConnControl) -> Option<hyper::Result<()>> {
        self.serve_until_idle(conn, fate, None).await
    }

    /// [`Watch::serve`], and when `idle` says the connection has had no stream open for its
    /// timeout, a graceful close (an h2 connection's GOAWAY).
    async fn serve_until_idle<C: protocol::Graceful>(
        mut self,
        conn: C,
        fate: &ConnControl,
        idle: Option<(Arc<idle::Idle>, std::time::Duration)>,
    ) -> Option<hyper::Result<()>> {
        let mut conn = std::pin::pin!(conn);
        let expired = async {
            match &idle {
                Some((idle, timeout)) => idle.expired(*timeout).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = conn.as_mut() => Some(result),
            () = expired => {
                conn.as_mut().graceful_shutdown();
                Some(conn.as_mut().await)
            }
            // A phase with `close_connections`: dropping the connection closes the socket.
            _ = self.close_all.changed() => None,
            // A fault took over a whole HTTP/2 connection: dropping it carries out the fate.
            _ = fate.killed() => None,
            // The client left while a fault kept it waiting in silence: dropping the
            // connection ends the request as `client_gone` (see `faults::departure`).
            () = fate.departure().departed() => None,
            // A graceful stop: close when idle, finish the request in flight.
            _ = async { self.draining.wait_for(|d| *d).await.map(|_| ()) } => {
                conn.as_mut().graceful_shutdown();
                Some(conn.as_mut().await)
            }
        }
    }
}

/// What a worker's connections share with the proxy's lifecycle.
struct Lifecycle {
    /// The proxy's count of connections held by blackholes.
    held: Arc<AtomicUsize>,
    /// The proxy's count of client connections being served.
    open: Arc<AtomicUsize>,
    /// Bumped by a phase with `close_connections`.
    close_all: watch::Receiver<u64>,
    /// Turned on by a graceful stop.
    draining: watch::Receiver<bool>,
    header_read_timeout: Option<std::time::Duration>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    http2: bool,
    forward: Option<Arc<forward::Forward>>,
    /// The listener's own address (a forward proxy does not forward to itself).
    listen: SocketAddr,
}

/// How the listener serves its clients: TLS or not, and the limits that protect the proxy
/// (and every other client) from a client.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Terminate TLS with this configuration (`--tls-cert`/`--tls-key`, `--tls-self-signed`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client that has not sent a whole request head in this time is disconnected
    /// (slowloris), and a keep-alive connection idle this long is closed. `None` turns it off.
    pub header_read_timeout: Option<std::time::Duration>,
    /// An upload whose body sends nothing for this long is answered S3's `400 RequestTimeout`
    /// and its connection closed (S3 does the same to an idle upload). `None` turns it off.
    pub body_read_timeout: Option<std::time::Duration>,
    /// Connections beyond this many get `503 SlowDown` and are closed.
    pub max_connections: Option<usize>,
    /// Speak HTTP/2 to clients that ask for it (ALPN `h2` over TLS, prior knowledge over
    /// plain TCP) as well as HTTP/1.1. `--no-http2` turns it off.
    pub http2: bool,
    /// Forward-proxy mode (`--mode forward`): answer `CONNECT` and absolute-form requests.
    pub forward: Option<Arc<forward::Forward>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            header_read_timeout: Some(std::time::Duration::from_secs(60)),
            body_read_timeout: Some(std::time::Duration::from_secs(20)),
            max_connections: None,
            http2: true,
            forward: None,
        }
    }
}

/// One worker: serves every connection it is handed until the channel closes.
async fn serve_worker(
    shared: Arc<Shared>,
    mut connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    lifecycle: Lifecycle,
) {
    let Lifecycle {
        held,
        open,
        close_all,
        draining,
        header_read_timeout,
        tls,
        http2,
        forward,
        listen,
    } = lifecycle;
    let protocols = Arc::new(protocol::Protocols::new(header_read_timeout, http2));
    let forward = forward.map(|f| {
        Arc::new(forward::ForwardWorker {
            forward: f,
            shared: shared.clone(),
            protocols: protocols.clone(),
            handshake_timeout: header_read_timeout,
            watch: Watch::new(&close_all, &draining),
            open: open.clone(),
            origins: Default::default(),
            listen,
        })
    });
    while let Some(socket) = connections.recv().await {
        let Ok(socket) = tokio::net::TcpStream::from_std(socket) else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let peer = socket.peer_addr().ok();
        let control = Arc::new(ConnControl::new(held.clone()));
        let client = ClientStream::new(socket, control.clone());
        let shared = shared.clone();
        let metrics = shared.metrics.clone();
        let fate = control.clone();
        let forward = forward.clone();
        let service = service_fn(move |req| match &forward {
            None => Either::Left(handler::handle(shared.clone(), control.clone(), req)),
            Some(worker) => Either::Right(forward::handle(worker.clone(), control.clone(), req)),
        });
        metrics.connection_opened();
        let watch = Watch::new(&close_all, &draining);
        let open = open.clone();
        open.fetch_add(1, Ordering::SeqCst);
        let (protocols, tls) = (protocols.clone(), tls.clone());
        tokio::spawn(async move {
            let served = match tls {
                None => protocols
                    .for_plain(&client, header_read_timeout)
                    .await
                    .map(|version| (version, ClientIo::Plain(client))),
                // The handshake gets the header read timeout too: a client that never
                // finishes it is a slowloris.
                Some(acceptor) => {
                    let limit = header_read_timeout.unwrap_or(std::time::Duration::MAX);
                    match tokio::time::timeout(limit, acceptor.accept(client)).await {
                        Ok(Ok(stream)) => {
                            let version = protocols.for_alpn(stream.get_ref().1.alpn_protocol());
                            Some((version, ClientIo::Tls(Box::new(stream))))
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(?peer, error = %e, "TLS handshake failed");
                            None
                        }
                        Err(_) => None,
                    }
                }
            };
            let Some((version, io)) = served else {
                metrics.connection_closed();
                open.fetch_sub(1, Ordering::SeqCst);
                return;
            };
            let ended = protocols.serve(version, TokioIo::new(io), service, watch, &fate).await;
            if let Some(Err(e)) = ended {
                tracing::debug!(?peer, error = %e, "client connection ended with an error");
            }
            metrics.connection_closed();
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}
