//! Forward-proxy mode (`--mode forward`): for apps that cannot be given an endpoint URL but
//! honour `HTTPS_PROXY` / `HTTP_PROXY`.
//!
//! - `CONNECT host:443` for a host `--intercept` names (default `*.amazonaws.com` and the
//!   upstream's host): s3chaos answers `200`, terminates TLS with a certificate for that host
//!   minted from its own CA (the client trusts it through `AWS_CA_BUNDLE`), and serves the
//!   requests inside like any other: classified, faulted, and sent on over TLS to the real
//!   host (h2 where both sides agree).
//! - `CONNECT` to any other host: a plain TCP tunnel, bytes untouched, nothing decrypted.
//! - `GET http://host/key` (absolute form, `HTTP_PROXY`): forwarded to that host, faulted if
//!   intercepted.
//! - An ordinary request (origin form): served as in reverse mode, against `--upstream`.
//!
//! The tunnel rides on the client's TCP connection, so a reset or blackhole still reaches the
//! socket (see [`super::conn`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::conn::ConnControl;
use super::connect_to::ConnectToTable;
use super::context::ReplyBody;
use super::handler::{self, Destination};
use super::targets::{Refused, TargetPolicy};
use super::tls::{PrivateCa, TlsSetupError};
use super::{Shared, Upstream};
use crate::body::{self, BoxError, ProxyBody};

/// The hosts intercepted by default: S3's endpoints on every partition's AWS domain.
pub const DEFAULT_INTERCEPT: &[&str] = &["*.amazonaws.com"];

/// Certificates minted and kept per host; beyond this many the cache starts again.
const MAX_MINTED: usize = 1024;

/// How long a tunnel to a host that is not intercepted may take to connect.
const TUNNEL_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why forward-proxy mode could not be set up (a start-up error).
#[derive(Debug, thiserror::Error)]
pub enum ForwardSetupError {
    #[error("--intercept `{pattern}`: {source}")]
    Glob { pattern: String, source: globset::Error },
}

/// Forward-proxy mode's settings, shared by every worker.
pub struct Forward {
    ca: Arc<PrivateCa>,
    intercept: globset::GlobSet,
    patterns: Vec<String>,
    connect_to: ConnectToTable,
    targets: Arc<TargetPolicy>,
    http2: bool,
    minted: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
}

impl std::fmt::Debug for Forward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forward")
            .field("intercept", &self.patterns)
            .finish_non_exhaustive()
    }
}

impl Forward {
    /// `intercept`: host globs (case-insensitive) whose `CONNECT`s are decrypted and faulted;
    /// `targets`: where the proxy may connect for its clients (give the upstream's
    /// [`UpstreamOptions::targets`](super::upstream::UpstreamOptions::targets) the same).
    pub fn new(
        ca: Arc<PrivateCa>,
        intercept: &[String],
        connect_to: ConnectToTable,
        targets: Arc<TargetPolicy>,
        http2: bool,
    ) -> Result<Forward, ForwardSetupError> {
        let mut set = globset::GlobSetBuilder::new();
        for pattern in intercept {
            let glob = globset::GlobBuilder::new(&pattern.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map_err(|source| ForwardSetupError::Glob {
                    pattern: pattern.clone(),
                    source,
                })?;
            set.add(glob);
        }
        let patterns = intercept.to_vec();
        let intercept = set.build().map_err(|source| ForwardSetupError::Glob {
            pattern: patterns.join(","),
            source,
        })?;
        Ok(Forward {
            ca,
            intercept,
            patterns,
            connect_to,
            targets,
            http2,
            minted: Mutex::new(HashMap::new()),
        })
    }

    /// The `--intercept` globs, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Where the proxy may connect for its clients; s3chaos's own sockets are added to it.
    pub fn targets(&self) -> &Arc<TargetPolicy> {
        &self.targets
    }

    /// Resolves and checks `host:port` unless a `--connect-to` rule redirects it (the
    /// operator named that target); the addresses to connect to.
    async fn reach(&self, host: &str, port: u16) -> Result<Vec<String>, Refused> {
        if let Some(target) = self.connect_to.target(host, port) {
            return Ok(vec![target.to_owned()]);
        }
        let addresses = self.targets.resolve(host, port).await?;
        Ok(addresses.iter().map(|a| a.to_string()).collect())
    }

    /// Whether requests to `host` are decrypted and meet the scenario.
    pub fn intercepts(&self, host: &str) -> bool {
        self.intercept.is_match(host.to_ascii_lowercase())
    }

    /// A TLS server configuration whose certificate names `host`, minted on first use.
    fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        if let Some(config) = self.minted.lock().unwrap_or_else(|e| e.into_inner()).get(&host) {
            return Ok(config.clone());
        }
        let config = self.ca.server_config(std::slice::from_ref(&host))?;
        let config = if self.http2 {
            config
        } else {
            super::tls::http1_only(&config)
        };
        let mut minted = self.minted.lock().unwrap_or_else(|e| e.into_inner());
        if minted.len() >= MAX_MINTED {
            minted.clear();
        }
        minted.insert(host, config.clone());
        Ok(config)
    }
}

/// A worker's side of forward-proxy mode: its connections' services and its upstreams, one
/// per origin asked for (each with its own connection pool).
pub(super) struct ForwardWorker {
    pub forward: Arc<Forward>,
    pub shared: Arc<Shared>,
    /// Serves the requests inside an intercepted tunnel.
    pub protocols: Arc<super::protocol::Protocols>,
    pub handshake_timeout: Option<Duration>,
    /// An intercepted tunnel is a client connection like another: closed by a phase that
    /// closes connections, drained by a graceful stop, counted while open.
    pub watch: super::Watch,
    pub open: Arc<AtomicUsize>,
    pub origins: Mutex<HashMap<(Scheme, Authority), Arc<Upstream>>>,
    /// The listener's address: a request naming it is for s3chaos itself, not to forward.
    pub listen: std::net::SocketAddr,
}

/// Origins kept per worker; beyond this many the map starts again (their pools with it).
const MAX_ORIGINS: usize = 1024;

impl ForwardWorker {
    /// Whether `authority` names this listener (forwarding there would loop).
    fn is_self(&self, authority: &Authority) -> bool {
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let local = self.listen.ip().is_loopback() || self.listen.ip().is_unspecified();
        port == self.listen.port()
            && match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip == self.listen.ip() || (self.listen.ip().is_unspecified() && ip.is_loopback()),
                Err(_) => local && host.eq_ignore_ascii_case("localhost"),
            }
    }

    /// The upstream for an origin a client named, checked against the [`TargetPolicy`] the
    /// first time (the pool's connector checks every connection it opens too).
    async fn origin(&self, scheme: Scheme, authority: Authority) -> Result<Arc<Upstream>, Refused> {
        let key = (scheme.clone(), authority.clone());
        if let Some(upstream) = self.origins.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(upstream.clone());
        }
        let default_port = if scheme == Scheme::HTTPS { 443 } else { 80 };
        self.forward
            .reach(authority.host(), authority.port_u16().unwrap_or(default_port))
            .await?;
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        if origins.len() >= MAX_ORIGINS {
            origins.clear();
        }
        let upstream = Arc::new(self.shared.upstream.for_origin(scheme.clone(), authority.clone()));
        origins.insert((scheme, authority), upstream.clone());
        Ok(upstream)
    }
}

/// One request on a client's connection to the forward proxy.
pub(super) async fn handle(
    worker: Arc<ForwardWorker>,
    conn: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Response<ReplyBody>, BoxError> {
    if req.method() == Method::CONNECT {
        return Ok(connect(worker, conn, req).await.map(ReplyBody::plain));
    }
    // Origin form: the client was given s3chaos as its endpoint. (An h2 request always names
    // its authority, and an h2 client reaches a proxy through CONNECT; a request naming this
    // listener is for it too.)
    let (Some(scheme), Some(authority)) = (req.uri().scheme().cloned(), req.uri().authority().cloned()) else {
        return handler::handle(worker.shared.clone(), conn, req).await;
    };
    if req.version() == http::Version::HTTP_2 || worker.is_self(&authority) {
        return handler::handle(worker.shared.clone(), conn, req).await;
    }
    if scheme != Scheme::HTTP {
        return Ok(plain(
            StatusCode::BAD_REQUEST,
            "s3chaos: send https:// requests through CONNECT",
        )
        .map(ReplyBody::plain));
    }
    let inject = worker.forward.intercepts(authority.host());
    let upstream = match worker.origin(scheme, authority).await {
        Ok(upstream) => upstream,
        Err(refused) => return Ok(refuse(refused).map(ReplyBody::plain)),
    };
    // `Proxy-Connection` and `Proxy-Authorization` go with the other hop-by-hop headers.
    let destination = Destination { inject, upstream };
    handler::handle_for(worker.shared.clone(), conn, destination, req).await
}

/// `CONNECT host:port`: intercept, tunnel, or refuse.
async fn connect(worker: Arc<ForwardWorker>, conn: Arc<ConnControl>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return plain(StatusCode::BAD_REQUEST, "s3chaos: CONNECT needs host:port");
    };
    let port = authority.port_u16().unwrap_or(443);
    let addresses = match worker.forward.reach(authority.host(), port).await {
        Ok(addresses) => addresses,
        Err(refused) => return refuse(refused),
    };
    if worker.forward.intercepts(authority.host()) {
        let config = match worker.forward.server_config(authority.host()) {
            Ok(config) => config,
            Err(e) => {
                tracing::warn!(host = authority.host(), error = %e, "cannot mint a certificate");
                return plain(StatusCode::BAD_GATEWAY, "s3chaos: cannot mint a certificate");
            }
        };
        let upgrade = hyper::upgrade::on(req);
        tokio::spawn(intercept(worker, conn, upgrade, config, authority));
        return plain(StatusCode::OK, "");
    }
    let address = addresses.join(",");
    let connecting = async {
        let mut last = None;
        for address in &addresses {
            match tokio::net::TcpStream::connect(address.as_str()).await {
                Ok(server) => return Ok(server),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address")))
    };
    match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(server)) => {
            let _ = server.set_nodelay(true);
            let upgrade = hyper::upgrade::on(req);
            tokio::spawn(async move {
                if let Ok(client) = upgrade.await {
                    let mut client = TokioIo::new(client);
                    let mut server = server;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
            plain(StatusCode::OK, "")
        }
        Ok(Err(e)) => {
            tracing::debug!(%address, error = %e, "tunnel: cannot connect");
            plain(StatusCode::BAD_GATEWAY, "s3chaos: cannot reach the host")
        }
        Err(_) => plain(StatusCode::GATEWAY_TIMEOUT, "s3chaos: the host did not answer"),
    }
}

/// Serves an intercepted tunnel: TLS with the minted certificate, then the S3 requests inside,
/// sent on to `https://authority`.
async fn intercept(
    worker: Arc<ForwardWorker>,
    conn: Arc<ConnControl>,
    upgrade: hyper::upgrade::OnUpgrade,
    config: Arc<rustls::ServerConfig>,
    authority: Authority,
) {
    let Ok(upgraded) = upgrade.await else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let limit = worker.handshake_timeout.unwrap_or(Duration::MAX);
    let tls = match tokio::time::timeout(limit, acceptor.accept(TokioIo::new(upgraded))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            // A client that does not trust s3chaos's CA ends here.
            tracing::info!(host = authority.host(), error = %e, "intercepted TLS handshake failed (does the client trust the s3chaos CA?)");
            return;
        }
        Err(_) => return,
    };
    let upstream = match worker.origin(Scheme::HTTPS, authority.clone()).await {
        Ok(upstream) => upstream,
        Err(refused) => {
            tracing::warn!(error = %refused, "intercepted tunnel: target refused");
            return;
        }
    };
    let shared = worker.shared.clone();
    let control = conn.clone();
    let service = service_fn(move |req| {
        let destination = Destination {
            upstream: upstream.clone(),
            inject: true,
        };
        handler::handle_for(shared.clone(), control.clone(), destination, req)
    });
    worker.open.fetch_add(1, Ordering::SeqCst);
    let version = worker.protocols.for_alpn(tls.get_ref().1.alpn_protocol());
    let watch = worker.watch.fresh();
    if let Some(Err(e)) = worker
        .protocols
        .serve(version, TokioIo::new(tls), service, watch, &conn)
        .await
    {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
    worker.open.fetch_sub(1, Ordering::SeqCst);
}

/// `403 Forbidden`: a target the [`TargetPolicy`] refuses, in words that say how to allow it.
fn refuse(refused: Refused) -> Response<ProxyBody> {
    tracing::warn!(error = %refused, "forward proxy: target refused");
    let mut response = Response::new(body::full(bytes::Bytes::from(format!("{refused}\n"))));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response
}

/// A small answer from the proxy itself (not an S3 error: the client is talking to a proxy).
fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(bytes::Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
