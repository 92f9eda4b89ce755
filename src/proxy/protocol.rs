//! Which HTTP version a client connection speaks, decided before hyper serves it, and the
//! server for each.
//!
//! Over TLS, ALPN says (`h2`, or HTTP/1.1 for anything else). Over plain TCP a client speaking
//! h2 with prior knowledge starts with the connection preface `PRI * HTTP/2.0`; s3chaos peeks
//! at the first bytes, bounded by the header read timeout. hyper-util's automatic server
//! would read them itself with no time limit (a client that connects and sends nothing would
//! be held forever) and would put a rewinding buffer under every HTTP/1.1 read; deciding first
//! keeps the HTTP/1.1 path exactly hyper's own.

use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::rt::{Read, Write};
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::conn::ClientStream;
use super::idle::{Idle, Tracked};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The HTTP version a connection was found to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http1,
    Http2,
}

/// The most header fields an HTTP/1.1 message may have, requests and the upstream's answers
/// alike. hyper's default, 100, refused a PutObject with 100 `x-amz-meta-*` headers (S3
/// allows 2 KB of user metadata, which is more fields than that, plus the SDK's own) with
/// 431, and a GET of such an object would fail the same way on the way back. The byte limit
/// on a head stays hyper's. (Above 100, hyper keeps the parse buffer on the heap: one small
/// allocation per request.)
pub const MAX_HEADERS: usize = 256;

/// The server side of both versions, set up once per worker.
pub struct Protocols {
    http1: http1::Builder,
    /// `None` with `--no-http2`.
    http2: Option<http2::Builder<TokioExecutor>>,
    /// An h2 connection with no stream open this long is closed (HTTP/1.1's header read
    /// timeout does the same for an idle keep-alive connection); see [`super::idle`].
    h2_idle: Option<Duration>,
}

impl Protocols {
    pub fn new(header_read_timeout: Option<Duration>, http2: bool) -> Protocols {
        let mut http1 = http1::Builder::new();
        http1
            .keep_alive(true)
            // A client that half-closes after its request gets the answer; a FIN is a
            // departure only during a fault's silence (see `faults::departure`).
            .half_close(true)
            .max_headers(MAX_HEADERS)
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        let http2 = http2.then(|| {
            let mut builder = http2::Builder::new(TokioExecutor::new());
            builder.timer(TokioTimer::new());
            builder
        });
        Protocols {
            http1,
            http2,
            h2_idle: header_read_timeout,
        }
    }

    /// The version of a TLS connection whose ALPN came out as `alpn`.
    pub fn for_alpn(&self, alpn: Option<&[u8]>) -> Version {
        match (&self.http2, alpn) {
            (Some(_), Some(b"h2")) => Version::Http2,
            _ => Version::Http1,
        }
    }

    /// The version of a plain TCP connection, from its first bytes; `None` when the client
    /// closed or sent nothing in `limit`.
    pub async fn for_plain(&self, client: &ClientStream, limit: Option<Duration>) -> Option<Version> {
        if self.http2.is_none() {
            // HTTP/1.1 only: hyper's own header read timeout covers a silent client.
            return Some(Version::Http1);
        }
        let sniff = async {
            let mut first = [0u8; 3];
            loop {
                let n = client.peek(&mut first).await.ok()?;
                if n == 0 {
                    return None;
                }
                // Every HTTP/1.1 method differs from the preface by its third byte at the
                // latest (`PUT`, `POST`, `PATCH`, `PROPFIND`).
                if n == first.len() || !b"PRI".starts_with(&first[..n]) {
                    return Some(if &first[..n] == b"PRI" {
                        Version::Http2
                    } else {
                        Version::Http1
                    });
                }
                // Fewer bytes than that so far, all alike: wait for more.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(limit.unwrap_or(Duration::MAX), sniff)
            .await
            .ok()
            .flatten()
    }

    /// Serves `io` as `version` until it ends or `watch` stops it (see [`super::Watch`]).
    /// HTTP/1.1 connections take upgrades: a forward proxy's `CONNECT` becomes a tunnel.
    pub async fn serve<I, S, B>(
        &self,
        version: Version,
        io: I,
        service: S,
        watch: super::Watch,
        fate: &super::conn::ConnControl,
    ) -> Option<hyper::Result<()>>
    where
        I: Read + Write + Unpin + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>>,
        S::Error: Into<BoxError> + 'static,
        S::Future: Send + 'static,
        B: Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        match (version, &self.http2) {
            (Version::Http2, Some(http2)) => {
                let idle = Idle::new();
                let service = Tracked::new(service, idle.clone());
                let idle = self.h2_idle.map(|timeout| (idle, timeout));
                watch
                    .serve_until_idle(http2.serve_connection(io, service), fate, idle)
                    .await
            }
            _ => {
                watch
                    .serve(self.http1.serve_connection(io, service).with_upgrades(), fate)
                    .await
            }
        }
    }
}

/// A connection being served that can be asked to finish gracefully: close when idle, let
/// the request in flight end.
pub trait Graceful: std::future::Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    I: Read + Write + Unpin + Send + 'static,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    I: Read + Write + Unpin,
    S: HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}
