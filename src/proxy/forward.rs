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
    /// `intercept`: host globs (case-insensitive) whose `CONNECT`s are decrypted and faulted.
    pub fn new(
        ca: Arc<PrivateCa>,
        intercept: &[String],
        connect_to: ConnectToTable,
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
            http2,
            minted: Mutex::new(HashMap::new()),
        })
    }

    /// The `--intercept` globs, as given.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
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

    fn origin(&self, scheme: Scheme, authority: Authority) -> Arc<Upstream> {
        let mut origins = self.origins.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(upstream) = origins.get(&(scheme.clone(), authority.clone())) {
            return upstream.clone();
        }
        if origins.len() >= MAX_ORIGINS {
            origins.clear();
        }
        let upstream = Arc::new(self.shared.upstream.for_origin(scheme.clone(), authority.clone()));
        origins.insert((scheme, authority), upstream.clone());
        upstream
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
    // `Proxy-Connection` and `Proxy-Authorization` go with the other hop-by-hop headers.
    let destination = Destination {
        inject: worker.forward.intercepts(authority.host()),
        upstream: worker.origin(scheme, authority),
    };
    handler::handle_for(worker.shared.clone(), conn, destination, req).await
}

/// `CONNECT host:port`: intercept, tunnel, or refuse.
async fn connect(worker: Arc<ForwardWorker>, conn: Arc<ConnControl>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return plain(StatusCode::BAD_REQUEST, "s3chaos: CONNECT needs host:port");
    };
    let port = authority.port_u16().unwrap_or(443);
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
    let address = worker.forward.connect_to.address(authority.host(), port);
    match tokio::time::timeout(TUNNEL_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&address)).await {
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
    let upstream = worker.origin(Scheme::HTTPS, authority);
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

/// A small answer from the proxy itself (not an S3 error: the client is talking to a proxy).
fn plain(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(body::full(bytes::Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
