//! Body faults as chunk filters: a fault says what to do with the chunk in front of it, and
//! one generic adapter ([`Filtered`]) owns the `Body` plumbing: pinning, the waits, trailers,
//! the end of the stream and `size_hint`. A body fault is then a few lines of plain code
//! that can be unit-tested without hyper (`run` drives a filter over chunks).
//!
//! The adapter holds at most the one chunk the inner body gave it; it never reads ahead, so
//! back-pressure reaches the sender and memory does not grow with the body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::departure::{Departure, Silence};
use super::fate::ConnControl;
use crate::body::{BoxError, InjectedFault, ProxyBody};

/// What to do with the chunk in front of the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Send the chunk as it is now (the filter may have changed its bytes).
    Pass,
    /// Send its first `n` bytes now; the rest comes back to the filter as the next chunk.
    Split(usize),
    /// Wait this long, then show the filter the same chunk again.
    Delay(Duration),
    /// Send nothing more, ever: the client gives up (the body is dropped then).
    Hold,
    /// End the body here, short of its promised length: the chunk is dropped, the body fails
    /// with an injected-fault error (after a short grace so what was sent reaches the wire),
    /// and [`ChunkFilter::on_cut`] acts on the connection.
    Cut,
}

/// One body fault's decision per chunk. See the module docs.
pub trait ChunkFilter: Send + Sync + Unpin + 'static {
    /// Called with each chunk of data (never an empty one), as often as the filter asks
    /// (again after a `Delay`, with the rest after a `Split`).
    fn on_chunk(&mut self, chunk: &mut Bytes) -> Step;

    /// Called when no data is left in front of the filter: the inner body has ended. The
    /// default lets it end (a filter that cuts at a position the body never reached does not
    /// cut).
    fn on_end(&mut self) -> Step {
        Step::Pass
    }

    /// What the cut does (a reset asks the connection for an RST here); returns the fault's
    /// kind for the error. The default is a plain close.
    fn on_cut(&mut self) -> &'static str {
        "cut"
    }
}

/// How long the bytes before a cut get to reach the wire: failing the body at once may drop
/// what hyper has not flushed yet, and an RST discards whatever the kernel has not sent.
pub const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// `inner` streamed through `filter`.
pub fn filtered<F: ChunkFilter>(inner: ProxyBody, filter: F) -> ProxyBody {
    ProxyBody::new(Filtered::new(inner, filter, None))
}

/// [`filtered`], for a filter whose waits are silences the client may give up in (a stall,
/// first-byte latency, not a throttle's pacing): while one lasts, the client's FIN on `conn`
/// is its departure (see [`super::departure`]).
pub fn silent<F: ChunkFilter>(inner: ProxyBody, filter: F, conn: &ConnControl) -> ProxyBody {
    ProxyBody::new(Filtered::new(inner, filter, Some(conn.departure().clone())))
}

enum State {
    Streaming,
    Holding,
    Cutting(Pin<Box<tokio::time::Sleep>>),
    Done,
}

/// The adapter: a body streamed through a [`ChunkFilter`].
pub struct Filtered<F> {
    inner: ProxyBody,
    filter: F,
    /// The chunk in front of the filter, not yet sent.
    chunk: Option<Bytes>,
    wait: Option<crate::timer::Sleep>,
    state: State,
    /// For a [`silent`] filter: the connection's departure, and the silence being kept.
    silent: Option<(Arc<Departure>, Option<Silence>)>,
}

impl<F: ChunkFilter> Filtered<F> {
    fn new(inner: ProxyBody, filter: F, departure: Option<Arc<Departure>>) -> Filtered<F> {
        Filtered {
            inner,
            filter,
            chunk: None,
            wait: None,
            state: State::Streaming,
            silent: departure.map(|d| (d, None)),
        }
    }

    /// Marks (or unmarks) the wait or hold that begins (or ended) as a silence.
    fn set_silent(&mut self, on: bool) {
        if let Some((departure, silence)) = &mut self.silent {
            *silence = on.then(|| Silence::new(departure.clone()));
        }
    }

    fn cut(&mut self) {
        self.chunk = None;
        self.state = State::Cutting(Box::pin(tokio::time::sleep(FLUSH_GRACE)));
    }
}

impl<F: ChunkFilter> Body for Filtered<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Streaming => {}
                State::Holding => return Poll::Pending,
                State::Done => return Poll::Ready(None),
                State::Cutting(grace) => {
                    ready!(grace.as_mut().poll(cx));
                    this.state = State::Done;
                    let kind = this.filter.on_cut();
                    // Failing the body makes hyper drop the connection (or the h2 stream)
                    // mid-message.
                    return Poll::Ready(Some(Err(Box::new(InjectedFault(kind)))));
                }
            }
            if let Some(wait) = this.wait.as_mut() {
                ready!(Pin::new(wait).poll(cx));
                this.wait = None;
                this.set_silent(false);
            }
            let step = match this.chunk.as_mut() {
                Some(chunk) => this.filter.on_chunk(chunk),
                None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => {
                            this.chunk = Some(data);
                            continue;
                        }
                        Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                    },
                    Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                    None => match this.filter.on_end() {
                        Step::Cut => {
                            this.cut();
                            continue;
                        }
                        Step::Hold => {
                            this.state = State::Holding;
                            this.set_silent(true);
                            continue;
                        }
                        _ => {
                            this.state = State::Done;
                            return Poll::Ready(None);
                        }
                    },
                },
            };
            match step {
                Step::Pass => {
                    let data = this.chunk.take().unwrap_or_default();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Split(n) => {
                    let chunk = this.chunk.as_mut().expect("a chunk is in front of the filter");
                    let head = chunk.split_to(n.min(chunk.len()));
                    if chunk.is_empty() {
                        this.chunk = None;
                    }
                    if head.is_empty() {
                        continue;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                Step::Delay(d) => {
                    this.wait = Some(crate::timer::sleep(d));
                    this.set_silent(true);
                }
                Step::Hold => {
                    this.state = State::Holding;
                    this.set_silent(true);
                }
                Step::Cut => this.cut(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self.state {
            State::Done => true,
            State::Streaming => self.chunk.is_none() && self.wait.is_none() && self.inner.is_end_stream(),
            State::Holding | State::Cutting(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The framing headers still promise what the inner body promised: a cut body is
        // short of its `Content-Length`, which is the point.
        crate::body::hint_plus(
            self.inner.size_hint(),
            self.chunk.as_ref().map_or(0, |c| c.len() as u64),
        )
    }
}

/// Test support: drives `filter` over `chunks` as the adapter would, on tokio's clock (call
/// it under `tokio::time::pause()`), and returns the pieces sent with the fault time at which
/// each went out, and whether the body was cut.
#[cfg(test)]
pub async fn run<F: ChunkFilter>(filter: F, chunks: &[&'static [u8]]) -> (Vec<(Duration, Vec<u8>)>, bool) {
    use http_body_util::BodyExt;
    let _clock = crate::timer::use_tokio_clock();
    let frames: Vec<Result<Frame<Bytes>, BoxError>> =
        chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
    let inner = ProxyBody::new(http_body_util::StreamBody::new(futures_util::stream::iter(frames)));
    let mut body = filtered(inner, filter);
    let start = crate::timer::now();
    let mut sent = Vec::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    sent.push((crate::timer::now() - start, data.to_vec()));
                }
            }
            Err(e) => {
                assert!(e.downcast_ref::<InjectedFault>().is_some(), "only injected cuts: {e}");
                return (sent, true);
            }
        }
    }
    (sent, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passes two bytes at a time, 10 ms apart, and cuts at byte 5.
    struct Pairs {
        sent: usize,
        waited: bool,
    }

    impl ChunkFilter for Pairs {
        fn on_chunk(&mut self, chunk: &mut Bytes) -> Step {
            if self.sent >= 5 {
                return Step::Cut;
            }
            if !self.waited {
                self.waited = true;
                return Step::Delay(Duration::from_millis(10));
            }
            self.waited = false;
            let n = 2.min(chunk.len()).min(5 - self.sent);
            self.sent += n;
            Step::Split(n)
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn split_delay_and_cut_in_order() {
        let (sent, cut) = run(Pairs { sent: 0, waited: false }, &[b"abc", b"defgh"]).await;
        let pieces: Vec<&[u8]> = sent.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(
            pieces,
            [&b"ab"[..], b"c", b"de"],
            "split across the frames, never past byte 5"
        );
        let times: Vec<u128> = sent.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, [10, 20, 30], "one 10 ms wait before each piece");
        assert!(cut, "the body ends with an injected cut, not a clean end");
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_body_shorter_than_the_cut_ends_cleanly() {
        let (sent, cut) = run(Pairs { sent: 0, waited: false }, &[b"ab"]).await;
        assert_eq!(sent.len(), 1);
        assert!(!cut);
    }
}
