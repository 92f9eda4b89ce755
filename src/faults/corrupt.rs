//! `corrupt`: flips one bit in each of `bytes` randomly chosen body bytes (or in the byte at
//! `at_byte`) of the response, keeping its length and headers, so only checksum validation
//! (Content-MD5, ETag, CRC32C, `x-amz-checksum-*`) can catch it, as in the 2008 S3 incident
//! where a load balancer corrupted single bytes.

use bytes::{Bytes, BytesMut};
use http_body::Body;
use serde::Deserialize;

use super::filter::{self, ChunkFilter, Step};
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
use crate::draw::Draw;
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
    const KIND: &'static str = "corrupt";

    const TERMINAL: bool = false;

    fn on_request_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        let draw = ctx.draw.clone();
        match self.side {
            Side::Request => self.wrap(body, draw),
            Side::Response => body,
        }
    }

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        let draw = ctx.draw.clone();
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
        filter::filtered(
            body,
            Flip {
                positions,
                next: 0,
                offset: 0,
            },
        )
    }
}

/// Flips the lowest bit of the bytes at `positions` (ascending). Only a chunk that holds one
/// of them is copied; every other chunk passes as is.
struct Flip {
    positions: Vec<u64>,
    next: usize,
    offset: u64,
}

impl ChunkFilter for Flip {
    fn on_chunk(&mut self, chunk: &mut Bytes) -> Step {
        let start = self.offset;
        let end = start + chunk.len() as u64;
        self.offset = end;
        if self.positions.get(self.next).is_none_or(|&p| p >= end) {
            return Step::Pass;
        }
        let mut copy = BytesMut::from(&chunk[..]);
        while let Some(&p) = self.positions.get(self.next).filter(|&&p| p < end) {
            copy[(p - start) as usize] ^= 0x01;
            self.next += 1;
        }
        *chunk = copy.freeze();
        Step::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn flips_one_bit_at_each_position_across_chunks() {
        let flip = Flip {
            positions: vec![1, 4],
            next: 0,
            offset: 0,
        };
        let (sent, _) = filter::run(flip, &[b"aaa", b"aaa"]).await;
        let bytes: Vec<u8> = sent.into_iter().flat_map(|(_, p)| p).collect();
        assert_eq!(bytes, b"a`aa`a", "bytes 1 and 4 have their lowest bit flipped, the length kept");
    }
}
