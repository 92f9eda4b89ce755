//! `bandwidth`: throttles the response body to a rate, as a congested network path or a
//! brownout does. Paced against the clock from the first byte (a token bucket with no
//! burst), so the average over a transfer is the rate, whatever the frame sizes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::de::{Deserialize, Deserializer};

use super::Fault;
use crate::body::{BoxError, ProxyBody};
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::values::{Ramp, Rate};

/// A rate, or a ramp `{from: 10MiB/s, to: 64KiB/s}` read when the body starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth(pub Ramp<Rate>);

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ramp::<Rate>::deserialize(d).map(Bandwidth)
    }
}

impl Fault for Bandwidth {
    fn kind(&self) -> &'static str {
        "bandwidth"
    }

    fn is_terminal(&self) -> bool {
        false
    }

    fn ramps(&self) -> bool {
        self.0.is_ramp()
    }

    fn on_response_body(&self, body: ProxyBody, _conn: &Arc<ConnControl>, draw: Draw) -> ProxyBody {
        ProxyBody::new(Throttled::new(body, self.0.at(draw.progress()).bytes_per_second))
    }

    fn describe(&self) -> String {
        let show = |r: Rate| format!("{}/s", bytesize::ByteSize(r.bytes_per_second).display().iec());
        match self.0 {
            Ramp::Fixed(r) => format!("bandwidth {}", show(r)),
            Ramp::Linear { from, to } => format!("bandwidth {} -> {}", show(from), show(to)),
        }
    }
}

/// A body paced to `rate` bytes per second, in pieces of about 1/20 s so the pace is smooth.
pub struct Throttled {
    inner: ProxyBody,
    rate: u64,
    piece: usize,
    /// Set at the first byte.
    start: Option<Instant>,
    sent: u64,
    /// The rest of a frame larger than one piece.
    pending: Bytes,
    wait: Option<crate::timer::Sleep>,
}

impl Throttled {
    pub fn new(inner: ProxyBody, rate: u64) -> Throttled {
        let piece = (rate / 20).clamp(1, 64 * 1024) as usize;
        Throttled {
            inner,
            rate,
            piece,
            start: None,
            sent: 0,
            pending: Bytes::new(),
            wait: None,
        }
    }

    /// When the byte after `sent` bytes may go.
    fn due(&self, start: Instant) -> Instant {
        start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64)
    }
}

impl Body for Throttled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.pending.is_empty() {
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => this.pending = data,
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                other => return Poll::Ready(other),
            }
            if this.pending.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(Bytes::new()))));
            }
        }
        let start = *this.start.get_or_insert_with(Instant::now);
        let due = this.due(start);
        if Instant::now() < due {
            let wait = this.wait.get_or_insert_with(|| crate::timer::sleep_until(due));
            ready!(Pin::new(wait).poll(cx));
        }
        this.wait = None;
        let n = this.piece.min(this.pending.len());
        let piece = this.pending.split_to(n);
        this.sent += n as u64;
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        crate::body::hint_plus(self.inner.size_hint(), self.pending.len() as u64)
    }
}
