//! `stall`: sends `after_bytes` of the response body, then nothing for a while (or forever),
//! then the rest: the download that hangs halfway, which read timeouts and stalled-stream
//! protection exist for.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::Fault;
use crate::body::{BoxError, ProxyBody};
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::values::{ByteSize, DurationValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    after_bytes: u64,
    /// `None`: forever (until the client gives up).
    pause: Option<Duration>,
}

impl Fault for Stall {
    fn kind(&self) -> &'static str {
        "stall"
    }

    fn is_terminal(&self) -> bool {
        false
    }

    fn on_response_body(&self, body: ProxyBody, _conn: &Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        ProxyBody::new(Stalled {
            inner: body,
            before: self.after_bytes,
            pause: self.pause,
            wait: None,
            rest: None,
        })
    }

    fn describe(&self) -> String {
        match self.pause {
            Some(d) => format!(
                "stall after {} bytes for {}",
                self.after_bytes,
                humantime::format_duration(d)
            ),
            None => format!("stall after {} bytes forever", self.after_bytes),
        }
    }
}

impl<'de> Deserialize<'de> for Stall {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stall;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("{after_bytes: 1MiB, for: 30s} (or `for: forever`)")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stall, A::Error> {
                let (mut after_bytes, mut pause) = (None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "after_bytes" => after_bytes = Some(map.next_value::<ByteSize>()?.0),
                        "for" => {
                            let text = map.next_value::<String>()?;
                            pause = Some(if text == "forever" {
                                None
                            } else {
                                Some(text.parse::<DurationValue>().map_err(de::Error::custom)?.0)
                            });
                        }
                        other => return Err(de::Error::unknown_field(other, &["after_bytes", "for"])),
                    }
                }
                Ok(Stall {
                    after_bytes: after_bytes.ok_or_else(|| de::Error::missing_field("after_bytes"))?,
                    pause: pause.ok_or_else(|| de::Error::missing_field("for"))?,
                })
            }
        }
        d.deserialize_map(V)
    }
}

enum Wait {
    For(crate::timer::Sleep),
    Forever,
}

/// Passes `before` bytes, then waits once, then passes the rest.
struct Stalled {
    inner: ProxyBody,
    before: u64,
    pause: Option<Duration>,
    wait: Option<Wait>,
    /// The part of the frame that crossed the stall point, sent after the pause.
    rest: Option<Bytes>,
}

impl Body for Stalled {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(wait) = this.wait.as_mut() {
            match wait {
                Wait::For(sleep) => ready!(Pin::new(sleep).poll(cx)),
                Wait::Forever => return Poll::Pending,
            }
            this.wait = None;
            this.before = u64::MAX; // The stall happens once.
            if let Some(rest) = this.rest.take() {
                return Poll::Ready(Some(Ok(Frame::data(rest))));
            }
        }
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let mut data = match frame.into_data() {
            Ok(data) => data,
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        if this.before != u64::MAX {
            if (data.len() as u64) < this.before {
                this.before -= data.len() as u64;
            } else {
                let head = data.split_to(this.before as usize);
                this.rest = (!data.is_empty()).then_some(data);
                this.before = 0;
                this.wait = Some(match this.pause {
                    Some(d) => Wait::For(crate::timer::sleep(d)),
                    None => Wait::Forever,
                });
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn size_hint(&self) -> SizeHint {
        crate::body::hint_plus(self.inner.size_hint(), self.rest.as_ref().map_or(0, |r| r.len() as u64))
    }
}
