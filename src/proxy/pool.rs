//! A worker's pool of kept-alive upstream connections.
//!
//! hyper-util's general-purpose pool spawns a task per request to return a connection and
//! shares its state behind a lock across threads; a proxy worker needs neither. Here each
//! worker owns its pool: a request takes an idle connection (or opens one), and the
//! connection goes back when the response body has been read to its end. A response whose
//! body is dropped early leaves its connection to close, as HTTP/1.1 requires.
//!
//! An upstream that agrees to h2 (ALPN) gets one shared HTTP/2 connection per worker instead,
//! its requests multiplexed as streams; the HTTP/1.1 idle list then stays empty.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::Connection;
use tower_service::Service;

use super::connect_to::Redirecting;

use crate::body::{BoxError, ProxyBody};

/// Idle connections kept per worker; more are closed when they come back.
const MAX_IDLE: usize = 512;
/// Attempts to send on a pooled connection the upstream closed meanwhile (the request was
/// never written, so sending it again is safe).
const ATTEMPTS: usize = 3;

pub struct ConnPool {
    connector: HttpsConnector<Redirecting>,
    /// `scheme://authority` of the upstream, for the connector.
    target: Uri,
    idle: Mutex<Vec<SendRequest<ProxyBody>>>,
    /// The HTTP/2 connection, once the upstream has agreed to h2.
    h2: Mutex<Option<http2::SendRequest<ProxyBody>>>,
    /// Idle connections across every pool of the upstream (each is a descriptor held).
    idle_total: Arc<AtomicUsize>,
}

/// A connection ready to take one request.
enum Sender {
    Http1(SendRequest<ProxyBody>),
    Http2(http2::SendRequest<ProxyBody>),
}

impl ConnPool {
    pub fn new(connector: HttpsConnector<Redirecting>, target: Uri, idle_total: Arc<AtomicUsize>) -> Arc<ConnPool> {
        Arc::new(ConnPool {
            connector,
            target,
            idle: Mutex::new(Vec::new()),
            h2: Mutex::new(None),
            idle_total,
        })
    }

    /// Sends `req` on a pooled connection and returns the response with a body that gives
    /// the connection back when it ends.
    pub async fn send(self: &Arc<Self>, mut req: Request<ProxyBody>) -> Result<Response<ProxyBody>, BoxError> {
        for _ in 0..ATTEMPTS {
            let mut sender = match self.checkout().await? {
                Sender::Http1(sender) => sender,
                Sender::Http2(mut sender) => {
                    as_http2(&mut req, &self.target);
                    match sender.try_send_request(req).await {
                        Ok(response) => return Ok(response.map(|body| ProxyBody::new(body.map_err(BoxError::from)))),
                        Err(mut e) => match e.take_message() {
                            Some(unsent) => {
                                self.h2.lock().unwrap_or_else(|e| e.into_inner()).take();
                                req = unsent;
                                continue;
                            }
                            None => return Err(e.into_error().into()),
                        },
                    }
                }
            };
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let pool = self.clone();
                    return Ok(response.map(|body| {
                        ProxyBody::new(PooledBody {
                            inner: body,
                            sender: Some(sender),
                            pool,
                        })
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(e.into_error().into()),
                },
            }
        }
        Err("upstream connections kept closing before the request could be sent".into())
    }

    async fn checkout(&self) -> Result<Sender, BoxError> {
        let shared = self.h2.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(mut sender) = shared {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok(Sender::Http2(sender));
            }
            self.h2.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        loop {
            let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            if idle.is_some() {
                self.idle_total.fetch_sub(1, Ordering::Relaxed);
            }
            match idle {
                Some(mut sender) if !sender.is_closed() => {
                    if sender.ready().await.is_ok() {
                        return Ok(Sender::Http1(sender));
                    }
                }
                Some(_) => {}
                None => return self.connect().await,
            }
        }
    }

    async fn connect(&self) -> Result<Sender, BoxError> {
        let io = self.connector.clone().call(self.target.clone()).await?;
        if io.connected().is_negotiated_h2() {
            let (sender, connection) = http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(io)
                .await?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "upstream h2 connection ended with an error");
                }
            });
            *self.h2.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender.clone());
            return Ok(Sender::Http2(sender));
        }
        let (sender, connection) = http1::Builder::new()
            .max_headers(super::protocol::MAX_HEADERS)
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(Sender::Http1(sender))
    }

    fn give_back(&self, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(sender);
            self.idle_total.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for ConnPool {
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map_or(0, |idle| idle.len());
        self.idle_total.fetch_sub(idle, Ordering::Relaxed);
    }
}

/// HTTP/2 names the target in the request (`:scheme`, `:authority`): the upstream's scheme
/// and the `Host` the client signed, which the upstream checks the signature against.
fn as_http2(req: &mut Request<ProxyBody>, target: &Uri) {
    let authority = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<http::uri::Authority>().ok())
        .or_else(|| target.authority().cloned());
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = target.scheme().cloned();
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = http::Version::HTTP_2;
}

/// The upstream's response body; returns its connection to the pool at the end.
struct PooledBody {
    inner: Incoming,
    sender: Option<SendRequest<ProxyBody>>,
    pool: Arc<ConnPool>,
}

impl PooledBody {
    fn release(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.pool.give_back(sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let frame = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match frame {
            None => {
                self.release();
                Poll::Ready(None)
            }
            Some(Ok(frame)) => Poll::Ready(Some(Ok(frame))),
            Some(Err(e)) => {
                self.sender = None; // A broken exchange: the connection is not reused.
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body never polled because it was empty (HEAD, 204, 304) still ended cleanly.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}
