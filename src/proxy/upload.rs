//! The client's upload on its way upstream, watched so that a client's failure is never taken
//! for the upstream's.
//!
//! When a forwarded request fails, the cause is on one of two sides. The upstream may be down,
//! or the client may have stopped sending (it left, it trickles, it framed its chunks wrongly).
//! Telling the two apart decides what the client is told (S3's `503` for the upstream, a
//! `400` for the client) and what `stop_if` counts: a drill must not be halted because clients
//! abandoned their own uploads while the upstream was healthy.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};
use crate::s3::{Code, S3ErrorResponse};

/// How the client's side of an upload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFailure {
    /// No byte of the body came for the body read timeout: S3 answers `400 RequestTimeout`.
    Idle(Duration),
    /// The body's framing was broken (a chunk size that is not a number or overflows).
    Malformed,
    /// The client closed or reset its connection before its body was whole.
    Left,
}

impl ClientFailure {
    /// The `400` S3 gives for it (a client that left hears nothing, but its connection may
    /// still be half open).
    pub fn answer(self) -> S3ErrorResponse {
        match self {
            ClientFailure::Idle(_) => S3ErrorResponse::standard(Code::RequestTimeout),
            ClientFailure::Malformed => {
                let mut error = S3ErrorResponse::standard(Code::InvalidRequest);
                error.message = "The request body's chunked framing is malformed.".to_owned();
                error
            }
            ClientFailure::Left => S3ErrorResponse::standard(Code::IncompleteBody),
        }
    }

    /// From the body's error (hyper's, around the I/O error of its decoder or socket).
    fn of(error: &(dyn std::error::Error + 'static)) -> ClientFailure {
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                return match io.kind() {
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => ClientFailure::Malformed,
                    _ => ClientFailure::Left,
                };
            }
            cause = e.source();
        }
        ClientFailure::Left
    }
}

/// What the handler keeps to learn, once the upstream has answered or failed, whether the
/// client's body failed first.
#[derive(Clone, Default)]
pub struct UploadWatch(Arc<OnceLock<ClientFailure>>);

impl UploadWatch {
    pub fn failure(&self) -> Option<ClientFailure> {
        self.0.get().copied()
    }
}

/// The least an upload must average while the proxy waits for it: 500 bytes a second, over
/// each window of the body read timeout (Apache's default `RequestReadTimeout
/// body=20,MinRate=500`). A plain idle timeout would never cut a client that sends one byte a
/// second; this does, and no real uploader is that slow.
pub const MIN_RATE: u64 = 500;

/// The client's body, with a read timeout that counts only the time the proxy spends waiting
/// for the client (not the time the upstream is slow to take what was read: then nobody
/// polls). In every window of that much waiting, the client must send at least
/// [`MIN_RATE`] bytes a second of it.
pub struct Upload<B> {
    inner: B,
    limit: Option<Window>,
    watch: UploadWatch,
}

/// The current window of waiting for the client.
struct Window {
    length: Duration,
    /// Waiting in this window so far, not counting the wait under way.
    waited: Duration,
    /// Bytes the client sent in this window.
    bytes: u64,
    /// The wait under way: since when, and the timer for the window's end.
    waiting: Option<(Instant, Pin<Box<tokio::time::Sleep>>)>,
}

impl Window {
    fn new(length: Duration) -> Window {
        Window {
            length,
            waited: Duration::ZERO,
            bytes: 0,
            waiting: None,
        }
    }

    fn needed(&self) -> u64 {
        (self.length.as_secs_f64() * MIN_RATE as f64).ceil() as u64
    }

    /// A frame of `len` bytes came: the wait under way (if any) ends.
    fn arrived(&mut self, len: usize) {
        if let Some((since, _)) = self.waiting.take() {
            self.waited += since.elapsed();
        }
        self.bytes += len as u64;
        if self.waited >= self.length && self.bytes >= self.needed() {
            self.waited = Duration::ZERO;
            self.bytes = 0;
        }
    }

    /// The client has nothing for us: `false` once a window has passed too slow.
    fn wait(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.waited >= self.length && self.bytes < self.needed() {
                return false;
            }
            let left = self.length.saturating_sub(self.waited);
            let (since, timer) = self
                .waiting
                .get_or_insert_with(|| (Instant::now(), Box::pin(tokio::time::sleep(left))));
            if timer.as_mut().poll(cx).is_pending() {
                return true;
            }
            // The window is over: too slow, or a new one starts.
            self.waited += since.elapsed().max(left);
            self.waiting = None;
            if self.bytes >= self.needed() {
                self.waited = Duration::ZERO;
                self.bytes = 0;
            }
        }
    }
}

impl Upload<Incoming> {
    /// `body` as a [`ProxyBody`], and the watch that says how it failed, if it does.
    pub fn watch(body: Incoming, timeout: Option<Duration>) -> (ProxyBody, UploadWatch) {
        let (upload, watch) = Upload::new(body, timeout);
        (http_body_util::BodyExt::boxed(upload), watch)
    }
}

impl<B> Upload<B> {
    fn new(body: B, timeout: Option<Duration>) -> (Upload<B>, UploadWatch) {
        let watch = UploadWatch::default();
        let upload = Upload {
            inner: body,
            limit: timeout.map(Window::new),
            watch: watch.clone(),
        };
        (upload, watch)
    }

    fn failed(&self, failure: ClientFailure) {
        let _ = self.watch.0.set(failure);
    }
}

impl<B> Body for Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(window) = &mut self.limit {
                    window.arrived(frame.data_ref().map_or(0, Bytes::len));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e = e.into();
                self.failed(ClientFailure::of(&*e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(window) = &mut self.limit else {
                    return Poll::Pending;
                };
                if window.wait(cx) {
                    return Poll::Pending;
                }
                let length = window.length;
                self.failed(ClientFailure::Idle(length));
                Poll::Ready(Some(Err(format!(
                    "the client sent its body slower than {MIN_RATE} bytes a second for {length:?}"
                )
                .into())))
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    use super::{ClientFailure, Upload};

    type Chunk = Result<Frame<Bytes>, std::io::Error>;

    /// A body fed from a channel, as a client's bytes arrive.
    struct Channel(mpsc::Receiver<Chunk>);

    impl http_body::Body for Channel {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
            self.0.poll_recv(cx)
        }
    }

    fn upload(timeout: Duration) -> (mpsc::Sender<Chunk>, Upload<Channel>, super::UploadWatch) {
        let (tx, rx) = mpsc::channel(1);
        let (upload, watch) = Upload::new(Channel(rx), Some(timeout));
        (tx, upload, watch)
    }

    fn bytes(n: usize) -> Chunk {
        Ok(Frame::data(Bytes::from(vec![0u8; n])))
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_after_the_timeout() {
        let (_tx, mut upload, watch) = upload(Duration::from_secs(20));
        let started = tokio::time::Instant::now();
        assert!(upload.frame().await.unwrap().is_err());
        assert_eq!(started.elapsed(), Duration::from_secs(20));
        assert_eq!(watch.failure(), Some(ClientFailure::Idle(Duration::from_secs(20))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_of_one_byte_a_second_is_cut_after_one_window() {
        let (tx, mut upload, watch) = upload(Duration::from_secs(20));
        tokio::spawn(async move {
            while tx.send(bytes(1)).await.is_ok() {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = tokio::time::Instant::now();
        let mut got = 0;
        while let Some(Ok(_)) = upload.frame().await {
            got += 1;
        }
        assert!((20..=21).contains(&got), "{got}");
        assert!(started.elapsed() <= Duration::from_secs(21), "{:?}", started.elapsed());
        assert!(matches!(watch.failure(), Some(ClientFailure::Idle(_))));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_client_and_a_slow_upstream_are_not_cut() {
        let (tx, mut upload, watch) = upload(Duration::from_secs(20));
        // 1,000 bytes a second for two minutes: twice the floor.
        tokio::spawn(async move {
            for _ in 0..120 {
                if tx.send(bytes(1000)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let mut got = 0;
        while let Some(frame) = upload.frame().await {
            frame.expect("a steady client is never cut");
            got += 1;
            if got % 10 == 0 {
                // The upstream takes a minute to read on: that is not the client's time.
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
        assert_eq!(got, 120);
        assert_eq!(watch.failure(), None);
    }
}
