//! `corrupt`: flips one bit in each of `bytes` randomly chosen body bytes (or in the byte at
//! `at_byte`) of the response, keeping its length and headers, so only checksum validation
//! (Content-MD5, ETag, CRC32C, `x-amz-checksum-*`) can catch it, as in the 2008 S3 incident
//! where a load balancer corrupted single bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use serde::Deserialize;

use super::Fault;
use crate::body::{BoxError, ProxyBody};
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::values::ByteSize;

/// When the body's length is unknown (chunked), random positions fall in its first 64 KiB.
const UNKNOWN_LENGTH_SPAN: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "CorruptFile")]
pub struct Corrupt {
    target: Target,
    side: Side,
}

/// Which body to corrupt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The download (GET), on its way to the client.
    #[default]
    Response,
    /// The upload, on its way to the upstream, which must then refuse it (BadDigest).
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// This many distinct random positions.
    Random(u32),
    /// Exactly this offset.
    At(u64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CorruptFile {
    bytes: Option<u32>,
    at_byte: Option<ByteSize>,
    #[serde(default)]
    side: Side,
}

impl TryFrom<CorruptFile> for Corrupt {
    type Error = String;
    fn try_from(f: CorruptFile) -> Result<Self, String> {
        let target = match (f.bytes, f.at_byte) {
            (Some(0), None) => return Err("corrupt: `bytes` must be at least 1".into()),
            (Some(n), None) => Target::Random(n),
            (None, Some(at)) => Target::At(at.0),
            (None, None) => return Err("corrupt needs `bytes: N` (random positions) or `at_byte: N`".into()),
            (Some(_), Some(_)) => return Err("corrupt takes `bytes` or `at_byte`, not both".into()),
        };
        Ok(Corrupt { target, side: f.side })
    }
}

impl Fault for Corrupt {
    fn kind(&self) -> &'static str {
        "corrupt"
    }

    fn is_terminal(&self) -> bool {
        false
    }

    fn on_request_body(&self, body: ProxyBody, _conn: &Arc<ConnControl>, draw: Draw) -> ProxyBody {
        match self.side {
            Side::Request => self.wrap(body, draw),
            Side::Response => body,
        }
    }

    fn on_response_body(&self, body: ProxyBody, _conn: &Arc<ConnControl>, draw: Draw) -> ProxyBody {
        match self.side {
            Side::Response => self.wrap(body, draw),
            Side::Request => body,
        }
    }

    fn describe(&self) -> String {
        let side = match self.side {
            Side::Response => "",
            Side::Request => " of the upload",
        };
        match self.target {
            Target::Random(n) => format!("corrupt {n} random byte(s){side}"),
            Target::At(at) => format!("corrupt byte {at}{side}"),
        }
    }
}

impl Corrupt {
    fn wrap(&self, body: ProxyBody, mut draw: Draw) -> ProxyBody {
        let len = body.size_hint().exact();
        let positions = match self.target {
            Target::At(at) => vec![at],
            Target::Random(n) => {
                let span = len.unwrap_or(UNKNOWN_LENGTH_SPAN).max(1);
                // The request's own draw: a seeded scenario corrupts the same bytes every run.
                let mut picked: Vec<u64> = (0..u64::from(n).min(span)).map(|_| draw.next_u64() % span).collect();
                picked.sort_unstable();
                picked.dedup();
                picked
            }
        };
        ProxyBody::new(CorruptBody {
            inner: body,
            positions,
            next: 0,
            offset: 0,
        })
    }
}

/// Flips the lowest bit of the bytes at `positions` (ascending). Only a frame that holds one
/// of them is copied; every other frame passes as is.
struct CorruptBody {
    inner: ProxyBody,
    positions: Vec<u64>,
    next: usize,
    offset: u64,
}

impl Body for CorruptBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => frame,
            other => return Poll::Ready(other),
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
        };
        let start = this.offset;
        let end = start + data.len() as u64;
        this.offset = end;
        if this.positions.get(this.next).is_none_or(|&p| p >= end) {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        let mut copy = BytesMut::from(&data[..]);
        while let Some(&p) = this.positions.get(this.next).filter(|&&p| p < end) {
            copy[(p - start) as usize] ^= 0x01;
            this.next += 1;
        }
        Poll::Ready(Some(Ok(Frame::data(copy.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
