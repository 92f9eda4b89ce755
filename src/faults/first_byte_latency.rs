//! `first_byte_latency`: the response headers arrive on time, the body waits. This is time
//! to first byte, distinct from `latency`, which delays the whole response; it exercises
//! read timeouts that start after the headers (and stalled-stream protection).

use std::time::Duration;

use bytes::Bytes;
use serde::de::{Deserialize, Deserializer};

use super::filter::{self, ChunkFilter, Step};
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
use crate::values::DurationValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstByteLatency(pub Duration);

impl<'de> Deserialize<'de> for FirstByteLatency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DurationValue::deserialize(d).map(|d| FirstByteLatency(d.0))
    }
}

impl Fault for FirstByteLatency {
    const KIND: &'static str = "first_byte_latency";

    const TERMINAL: bool = false;

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        filter::silent(body, FirstByte(Some(self.0)), ctx.conn)
    }

    fn describe(&self) -> String {
        format!("first_byte_latency {}", humantime::format_duration(self.0))
    }
}

/// Holds back the first chunk for the wait; after that, a pass-through. An empty body (HEAD)
/// has no first byte to delay.
struct FirstByte(Option<Duration>);

impl ChunkFilter for FirstByte {
    fn on_chunk(&mut self, _chunk: &mut Bytes) -> Step {
        match self.0.take() {
            Some(wait) => Step::Delay(wait),
            None => Step::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn only_the_first_byte_waits() {
        let (sent, _) = filter::run(FirstByte(Some(Duration::from_secs(2))), &[b"ab", b"cd"]).await;
        let times: Vec<u128> = sent.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, [2000, 2000]);
        let (sent, _) = filter::run(FirstByte(Some(Duration::from_secs(2))), &[]).await;
        assert!(sent.is_empty(), "an empty body ends at once");
    }
}
