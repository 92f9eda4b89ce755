//! The admin API: a separate listener (`--admin`, default `127.0.0.1:9081`), JSON in and out,
//! to script a drill from outside, as Toxiproxy's users do with its HTTP API.
//!
//! | call | does |
//! |---|---|
//! | `GET /healthz` | `ok` (for probes) |
//! | `GET /status` | scenario, phase and time left, uptime, halted or not, counters |
//! | `GET /scenario`, `PUT /scenario` | the running scenario; replace it (YAML body, validated first) |
//! | `GET /rules`, `POST /rules`, `DELETE /rules/NAME` | rules with counts; add one (with `ttl`); remove one |
//! | `POST /halt`, `POST /resume` | the kill switch |
//! | `GET /events?since=ID` | the recent injected faults |
//! | `GET /metrics` | Prometheus text format |
//!
//! Bad input is a 4xx with a JSON `error` (and `line`/`column` for YAML), and changes nothing.
//! Bound to a non-loopback address, the API requires a bearer token ([`AdminState::token`]).

pub mod client;
mod dashboard;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::control::Control;
use crate::faults::fate::Counted;
use crate::telemetry::Telemetry;

/// Largest request body the API reads (a scenario file or a rule).
pub const MAX_BODY: usize = 1024 * 1024;

/// The environment variable that may hold the admin token.
pub const TOKEN_ENV: &str = "S3CHAOS_ADMIN_TOKEN";

/// What the admin API serves.
pub struct AdminState {
    pub control: Arc<Control>,
    pub telemetry: Arc<Telemetry>,
    /// The proxy's count of connections held by blackholes.
    pub blackholed: Arc<AtomicUsize>,
    /// Idle kept-alive upstream connections ([`crate::proxy::Upstream::idle_connections`]).
    pub upstream_idle: Arc<AtomicUsize>,
    pub token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "refusing to serve the admin API on {0}, which is not a loopback address, without a token: set --admin-token or {TOKEN_ENV}"
    )]
    NeedsToken(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// The most admin connections served at once. The API serves scripts, `s3chaos ctl`, a
/// dashboard and Prometheus: a few connections. More are closed at once, so that a flood of
/// them cannot take the descriptors the S3 traffic needs.
pub const MAX_CONNECTIONS: usize = 64;

/// How the admin listener protects itself (and the proxy's descriptors) from its clients:
/// the proxy's own header and body timeouts, and a connection cap.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// A connection that has not sent a whole request head in this time (or sat idle this
    /// long between requests) is closed.
    pub header_read_timeout: Option<Duration>,
    /// A request whose body has not all come in this time is answered `408`.
    pub body_read_timeout: Option<Duration>,
    pub max_connections: usize,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_read_timeout: Some(Duration::from_secs(60)),
            body_read_timeout: Some(Duration::from_secs(20)),
            max_connections: MAX_CONNECTIONS,
        }
    }
}

/// A bound admin listener.
pub struct Admin {
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
    limits: AdminLimits,
}

impl Admin {
    /// Binds `addr`. Anyone who can reach the API can inject faults into every client of the
    /// proxy, so a non-loopback address needs a token.
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<Admin, AdminError> {
        if !addr.ip().is_loopback() && state.token.as_deref().is_none_or(str::is_empty) {
            return Err(AdminError::NeedsToken(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(Admin {
            listener,
            state: Arc::new(state),
            limits: AdminLimits::default(),
        })
    }

    /// The same listener with `limits` instead of the defaults.
    pub fn with_limits(mut self, limits: AdminLimits) -> Admin {
        self.limits = limits;
        self
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves on the current runtime until the task is dropped.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        let limits = self.limits;
        let open = Arc::new(AtomicUsize::new(0));
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            // `curl`-style tools that half-close after the request still get the answer.
            .half_close(true);
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = self.listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if open.load(Ordering::SeqCst) >= limits.max_connections {
                    // Closed unanswered: reading a request to refuse it would hold it longer.
                    tracing::warn!(
                        max = limits.max_connections,
                        "admin API: too many connections; closing one"
                    );
                    drop(socket);
                    continue;
                }
                let open = Counted::new(open.clone());
                let state = self.state.clone();
                let connection = http.serve_connection(
                    TokioIo::new(socket),
                    service_fn(move |req| routes::handle(state.clone(), req, limits.body_read_timeout)),
                );
                tokio::spawn(async move {
                    let _ = connection.await;
                    drop(open);
                });
            }
        })
    }
}

/// Compares two secrets in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }
}
