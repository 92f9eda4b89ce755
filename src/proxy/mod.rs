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

pub mod body;
pub mod conn;
mod handler;
pub mod headers;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::s3::Classifier;
use conn::{ClientStream, ConnControl};
pub use upstream::{Upstream, UpstreamOptions};

/// Everything a request handler needs, shared read-only by all connections.
pub struct Shared {
    pub engine: Arc<Engine>,
    pub upstream: Arc<Upstream>,
    pub classifier: Classifier,
}

/// A bound, not yet serving, proxy listener.
pub struct Proxy {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Proxy {
    pub async fn bind(addr: SocketAddr, shared: Shared) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Proxy {
            listener,
            shared: Arc::new(shared),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until the task is dropped or aborted.
    pub async fn serve(self) {
        let mut http = http1::Builder::new();
        http.keep_alive(true);
        loop {
            let (socket, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // EMFILE and friends: log, back off a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let control = Arc::new(ConnControl::default());
            let io = TokioIo::new(ClientStream::new(socket, control.clone()));
            let shared = self.shared.clone();
            let service =
                service_fn(move |req| handler::handle(shared.clone(), control.clone(), req));
            let conn = http.serve_connection(io, service);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "client connection ended with an error");
                }
            });
        }
    }

    /// Starts serving on a new task and returns the address it listens on.
    pub fn spawn(self) -> (SocketAddr, JoinHandle<()>) {
        let addr = self.local_addr();
        (addr, tokio::spawn(self.serve()))
    }
}
