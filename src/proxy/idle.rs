//! When an HTTP/2 connection has had no stream open for too long.
//!
//! hyper closes an idle HTTP/1.1 keep-alive connection after its header read timeout, but its
//! h2 server has no idle timeout at all: a client could open connections, send nothing, and
//! keep them (and their descriptors) for ever. [`Tracked`] counts the streams of one h2
//! connection, from the request to the end of its response body; [`Idle::expired`] says when
//! none has been open for the timeout, and the connection is then sent GOAWAY and closed.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// One connection's open streams, and since when it has had none.
pub struct Idle {
    open: AtomicUsize,
    since: Mutex<Instant>,
}

impl Idle {
    pub fn new() -> Arc<Idle> {
        Arc::new(Idle {
            open: AtomicUsize::new(0),
            since: Mutex::new(Instant::now()),
        })
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.open.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Ends once no stream has been open for `timeout`.
    pub async fn expired(&self, timeout: Duration) {
        loop {
            let wait = if self.open.load(Ordering::SeqCst) == 0 {
                let idle_for = self.since.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                match timeout.checked_sub(idle_for) {
                    Some(left) if !left.is_zero() => left,
                    _ => return,
                }
            } else {
                timeout
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// One open stream; the connection is idle again from when the last one is dropped.
struct Busy(Arc<Idle>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The time is set before the count drops, so a watcher that sees 0 sees a fresh time.
        *self.0.since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A service whose every request counts as an open stream until its response body ends.
pub struct Tracked<S> {
    inner: S,
    idle: Arc<Idle>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, idle: Arc<Idle>) -> Tracked<S> {
        Tracked { inner, idle }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> hyper::service::Service<Request<ReqBody>> for Tracked<S>
where
    S: hyper::service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<BusyBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn call(&self, req: Request<ReqBody>) -> Self::Future {
        let busy = self.idle.busy();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| BusyBody { inner, _busy: busy }))
        })
    }
}

/// A response body that keeps its stream counted as open.
pub struct BusyBody<B> {
    inner: B,
    _busy: Busy,
}

impl<B: Body + Unpin> Body for BusyBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Idle;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_the_last_stream_has_been_closed_for_the_timeout() {
        let idle = Idle::new();
        let busy = idle.busy();
        let started = tokio::time::Instant::now();
        let watcher = {
            let idle = idle.clone();
            tokio::spawn(async move { idle.expired(Duration::from_secs(10)).await })
        };
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!watcher.is_finished(), "a stream is open");
        drop(busy);
        watcher.await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(35) && took <= Duration::from_secs(36),
            "{took:?}"
        );
    }
}
