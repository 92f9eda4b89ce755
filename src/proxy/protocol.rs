//! Which HTTP version a client connection speaks, decided before hyper serves it.
//!
//! Over TLS, ALPN says (`h2`, or HTTP/1.1 for anything else). Over plain TCP a client speaking
//! h2 with prior knowledge starts with the connection preface `PRI * HTTP/2.0`; s3chaos peeks
//! at the first bytes, bounded by the header read timeout. hyper-util's automatic detection
//! would read them itself, but with no time limit: a client that connects and sends nothing
//! would be held forever, where HTTP/1.1's header read timeout cuts it off.

use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;

use super::conn::ClientStream;

/// The server side of both versions, each set up once per worker.
pub struct Protocols {
    http1: auto::Builder<TokioExecutor>,
    /// `None` with `--no-http2`.
    http2: Option<auto::Builder<TokioExecutor>>,
}

impl Protocols {
    pub fn new(header_read_timeout: Option<Duration>, http2: bool) -> Protocols {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .keep_alive(true)
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(header_read_timeout);
        builder.http2().timer(hyper_util::rt::TokioTimer::new());
        Protocols {
            http1: builder.clone().http1_only(),
            http2: http2.then(|| builder.http2_only()),
        }
    }

    /// The server for a TLS connection whose ALPN came out as `alpn`.
    pub fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match (&self.http2, alpn) {
            (Some(h2), Some(b"h2")) => h2,
            _ => &self.http1,
        }
    }

    /// The server for a plain TCP connection, from its first bytes; `None` when the client
    /// closed or sent nothing in `limit`.
    pub async fn for_plain(
        &self,
        client: &ClientStream,
        limit: Option<Duration>,
    ) -> Option<&auto::Builder<TokioExecutor>> {
        let Some(h2) = &self.http2 else {
            // HTTP/1.1 only: hyper's own header read timeout covers a silent client.
            return Some(&self.http1);
        };
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
                    return Some(&first[..n] == b"PRI");
                }
                // Fewer bytes than that so far, all alike: wait for more.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        let speaks_h2 = tokio::time::timeout(limit.unwrap_or(Duration::MAX), sniff)
            .await
            .ok()
            .flatten()?;
        Some(if speaks_h2 { h2 } else { &self.http1 })
    }
}
