//! `reset`: aborts the TCP connection with an RST, either before any response byte (the
//! client sees "connection reset by peer") or after `after_bytes` bytes of the response body
//! (a download that dies mid-stream).

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;

use super::{Fault, FaultCtx, RequestAction};
use crate::proxy::body::{BoxError, InjectedFault, ProxyBody};
use crate::proxy::conn::ConnControl;
use crate::scenario::values::ByteSize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    /// Response body bytes to let through before the RST; none means before the response.
    #[serde(default)]
    after_bytes: Option<ByteSize>,
}

impl Reset {
    pub fn after_bytes(n: u64) -> Reset {
        Reset {
            after_bytes: Some(ByteSize(n)),
        }
    }
}

impl Fault for Reset {
    fn kind(&self) -> &'static str {
        "reset"
    }

    fn is_terminal(&self) -> bool {
        true
    }

    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        match self.after_bytes {
            None => RequestAction::Reset,
            Some(_) => RequestAction::Continue,
        }
    }

    fn on_response_body(&self, body: ProxyBody, conn: &Arc<ConnControl>) -> ProxyBody {
        match self.after_bytes {
            None => body,
            Some(ByteSize(n)) => ProxyBody::new(ResetAfter::new(body, n, conn.clone())),
        }
    }

    fn describe(&self) -> String {
        match self.after_bytes {
            None => "reset".into(),
            Some(ByteSize(n)) => format!("reset after {n} response bytes"),
        }
    }
}

/// How long the bytes before the cut get to reach the wire: an RST discards whatever the
/// kernel has not sent yet, so cutting at once would make `after_bytes` a lie.
const FLUSH_GRACE: Duration = Duration::from_millis(20);

/// A response body that passes `remaining` bytes, then resets the connection.
struct ResetAfter {
    inner: ProxyBody,
    remaining: u64,
    conn: Arc<ConnControl>,
    grace: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ResetAfter {
    fn new(inner: ProxyBody, remaining: u64, conn: Arc<ConnControl>) -> Self {
        ResetAfter {
            inner,
            remaining,
            conn,
            grace: None,
        }
    }
}

impl Body for ResetAfter {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.remaining == 0 {
            let grace = this
                .grace
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(FLUSH_GRACE)));
            ready!(grace.as_mut().poll(cx));
            this.conn.reset();
            return Poll::Ready(Some(Err(Box::new(InjectedFault("reset")))));
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
