//! `bandwidth`: throttles the response body to a rate, as a congested network path or a
//! brownout does. Paced against the clock from the first byte (a token bucket with no
//! burst), so the average over a transfer is the rate, whatever the frame sizes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer};

use super::filter::{self, ChunkFilter, Step};
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
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
    const KIND: &'static str = "bandwidth";

    const TERMINAL: bool = false;

    fn ramps(&self) -> bool {
        self.0.is_ramp()
    }

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        throttled(body, self.0.at(ctx.draw.progress()).bytes_per_second)
    }

    fn describe(&self) -> String {
        let show = |r: Rate| format!("{}/s", bytesize::ByteSize(r.bytes_per_second).display().iec());
        match self.0 {
            Ramp::Fixed(r) => format!("bandwidth {}", show(r)),
            Ramp::Linear { from, to } => format!("bandwidth {} -> {}", show(from), show(to)),
        }
    }
}

/// `body` paced to `rate` bytes per second.
pub fn throttled(body: ProxyBody, rate: u64) -> ProxyBody {
    filter::filtered(body, Throttle::new(rate))
}

/// Paces a body to `rate` bytes per second, in pieces of about 1/20 s so the pace is smooth.
pub struct Throttle {
    rate: u64,
    piece: usize,
    /// Set at the first byte.
    start: Option<Instant>,
    sent: u64,
}

impl Throttle {
    pub fn new(rate: u64) -> Throttle {
        Throttle {
            rate: rate.max(1),
            piece: (rate / 20).clamp(1, 64 * 1024) as usize,
            start: None,
            sent: 0,
        }
    }
}

impl ChunkFilter for Throttle {
    fn on_chunk(&mut self, chunk: &mut Bytes) -> Step {
        let now = crate::timer::now();
        let start = *self.start.get_or_insert(now);
        // When the byte after `sent` bytes may go.
        let due = start + Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        if now < due {
            return Step::Delay(due - now);
        }
        let n = self.piece.min(chunk.len());
        self.sent += n as u64;
        Step::Split(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn paces_pieces_to_the_rate() {
        // 100 B/s: 5-byte pieces, one every 50 ms.
        let (sent, cut) = filter::run(Throttle::new(100), &[b"0123456789", b"abcdefghij"]).await;
        assert!(!cut);
        assert_eq!(sent.len(), 4);
        assert!(sent.iter().all(|(_, p)| p.len() == 5));
        let times: Vec<u128> = sent.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, [0, 50, 100, 150], "20 bytes at 100 B/s: the last piece leaves at 150 ms");
    }
}
