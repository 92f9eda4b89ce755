//! `first_byte_latency`: the response headers arrive on time, the body waits. This is time
//! to first byte, distinct from `latency`, which delays the whole response; it exercises
//! read timeouts that start after the headers (and stalled-stream protection).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::de::{Deserialize, Deserializer};

use super::Fault;
use crate::body::{BoxError, ProxyBody};
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::values::DurationValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstByteLatency(pub Duration);

impl<'de> Deserialize<'de> for FirstByteLatency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DurationValue::deserialize(d).map(|d| FirstByteLatency(d.0))
    }
}

impl Fault for FirstByteLatency {
    fn kind(&self) -> &'static str {
        "first_byte_latency"
    }

    fn is_terminal(&self) -> bool {
        false
    }

    fn on_response_body(&self, body: ProxyBody, _conn: &Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        ProxyBody::new(DelayedBody {
            inner: body,
            wait: Some(crate::timer::sleep(self.0)),
        })
    }

    fn describe(&self) -> String {
        format!("first_byte_latency {}", humantime::format_duration(self.0))
    }
}

/// Holds back the first body frame until the wait is over; after that, a plain pass-through.
struct DelayedBody {
    inner: ProxyBody,
    wait: Option<crate::timer::Sleep>,
}

impl Body for DelayedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(wait) = self.wait.as_mut() {
            ready!(Pin::new(wait).poll(cx));
            self.wait = None;
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        // An empty body (HEAD) has no first byte to delay.
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
