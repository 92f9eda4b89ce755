//! A response body cut after N bytes: the shared mechanism of `reset: {after_bytes}` (the
//! connection ends with an RST) and `truncate` (it ends with a FIN, a clean-looking close).
//! Either way the framing headers promised more, so the client sees a short body.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::{BoxError, InjectedFault, ProxyBody};
use crate::faults::fate::ConnControl;

/// How the connection ends after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// TCP RST (`SO_LINGER 0`); on HTTP/2 the stream's `RST_STREAM`, unless `connection`.
    Reset { connection: bool },
    /// An ordinary close (FIN) in the middle of the body. HTTP/2 has no clean close of one
    /// stream short of its length, so there the stream is reset.
    Close,
}

/// How long the bytes before the cut get to reach the wire: closing at once may drop what
/// hyper has not flushed yet, and an RST discards whatever the kernel has not sent.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// Passes `remaining` body bytes, then ends the connection as `how` says. A body shorter
/// than that ends normally.
pub struct CutAfter {
    inner: ProxyBody,
    remaining: u64,
    how: Cut,
    conn: Arc<ConnControl>,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CutAfter {
    pub fn new(inner: ProxyBody, remaining: u64, how: Cut, conn: Arc<ConnControl>) -> Self {
        CutAfter {
            inner,
            remaining,
            how,
            conn,
            grace: None,
        }
    }
}

impl Body for CutAfter {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            let grace = this
                .grace
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_GRACE)));
            ready!(grace.as_mut().poll(cx));
            let what = match this.how {
                Cut::Reset { connection } => {
                    this.conn.reset(connection);
                    "reset"
                }
                Cut::Close => "truncate",
            };
            // Failing the body makes hyper drop the connection mid-message.
            return Poll::Ready(Some(Err(Box::new(InjectedFault(what)))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 >= this.remaining {
                        data.truncate(this.remaining as usize);
                        this.remaining = 0;
                    } else {
                        this.remaining -= data.len() as u64;
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(trailers) => Poll::Ready(Some(Ok(trailers))),
            },
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The framing headers still promise the full length: that is the point.
        self.inner.size_hint()
    }
}
