//! `slicer`: sends the response body in small pieces with a pause between them, as
//! Toxiproxy's `slicer` toxic does. The bytes and the length are unchanged; what changes is
//! how they arrive: many small reads, spread out in time. It finds clients that assume one
//! read returns a whole buffer, progress or checksum code that mishandles short reads, and
//! read timeouts set per read rather than per transfer.
//!
//! ```yaml
//! fault: {slicer: {average_size: 1KiB, size_variation: 512B, delay: 10ms}}
//! ```
//! Each piece is `average_size` ± up to `size_variation` bytes (at least 1), drawn from the
//! request's draw, so a seeded scenario slices the same way every run.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;

use super::filter::{self, ChunkFilter, Step};
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
use crate::draw::Draw;
use crate::values::{ByteSize, DurationValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SlicerFile")]
pub struct Slicer {
    average: u64,
    variation: u64,
    delay: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlicerFile {
    average_size: ByteSize,
    #[serde(default)]
    size_variation: Option<ByteSize>,
    #[serde(default)]
    delay: Option<DurationValue>,
}

impl TryFrom<SlicerFile> for Slicer {
    type Error = String;
    fn try_from(f: SlicerFile) -> Result<Self, String> {
        let (average, variation) = (f.average_size.0, f.size_variation.map_or(0, |v| v.0));
        if average == 0 {
            return Err("slicer: `average_size` must be at least 1 byte".into());
        }
        if variation >= average {
            return Err(format!(
                "slicer: `size_variation` ({variation}) must be smaller than `average_size` ({average})"
            ));
        }
        Ok(Slicer {
            average,
            variation,
            delay: f.delay.map_or(Duration::ZERO, |d| d.0),
        })
    }
}

impl Fault for Slicer {
    const KIND: &'static str = "slicer";
    const TERMINAL: bool = false;

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        filter::filtered(body, self.slices(ctx.draw.clone()))
    }

    fn describe(&self) -> String {
        format!(
            "slicer {}±{} bytes every {}",
            self.average,
            self.variation,
            humantime::format_duration(self.delay)
        )
    }
}

impl Slicer {
    fn slices(&self, draw: Draw) -> Slices {
        Slices {
            slicer: *self,
            draw,
            first: true,
            waited: false,
        }
    }
}

/// Cuts each chunk into pieces, waiting `delay` before every piece but the first.
struct Slices {
    slicer: Slicer,
    draw: Draw,
    first: bool,
    waited: bool,
}

impl ChunkFilter for Slices {
    fn on_chunk(&mut self, _chunk: &mut Bytes) -> Step {
        if !self.first && !self.waited && !self.slicer.delay.is_zero() {
            self.waited = true;
            return Step::Delay(self.slicer.delay);
        }
        self.first = false;
        self.waited = false;
        let Slicer { average, variation, .. } = self.slicer;
        let size = if variation == 0 {
            average
        } else {
            average - variation + self.draw.next_u64() % (2 * variation + 1)
        };
        Step::Split(size.max(1) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slicer(yaml: &str) -> Result<Slicer, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn pieces_of_the_size_with_the_delay_between() {
        let s = slicer("{average_size: 4, delay: 10ms}").unwrap();
        let (sent, cut) = filter::run(s.slices(Draw::new(1, 0, 0)), &[b"0123456789"]).await;
        assert!(!cut);
        let got: Vec<(u128, &[u8])> = sent.iter().map(|(t, p)| (t.as_millis(), p.as_slice())).collect();
        assert_eq!(got, [(0, &b"0123"[..]), (10, b"4567"), (20, b"89")]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn sizes_vary_within_bounds_and_replay_with_the_seed() {
        let s = slicer("{average_size: 8, size_variation: 4}").unwrap();
        let body: &'static [u8] = &[7u8; 1000];
        let (a, _) = filter::run(s.slices(Draw::new(9, 0, 0)), &[body]).await;
        let (b, _) = filter::run(s.slices(Draw::new(9, 0, 0)), &[body]).await;
        let sizes = |v: &[(Duration, Vec<u8>)]| v.iter().map(|(_, p)| p.len()).collect::<Vec<_>>();
        assert_eq!(sizes(&a), sizes(&b), "same draw, same slices");
        let all = sizes(&a);
        assert_eq!(all.iter().sum::<usize>(), 1000, "no byte lost or added");
        assert!(all[..all.len() - 1].iter().all(|n| (4..=12).contains(n)), "{all:?}");
        assert!(all.iter().any(|&n| n != 8), "sizes vary: {all:?}");
    }

    #[test]
    fn refuses_nonsense() {
        assert!(slicer("{average_size: 0}").unwrap_err().contains("at least 1 byte"));
        assert!(slicer("{average_size: 4, size_variation: 4}").unwrap_err().contains("smaller"));
        assert!(slicer("{size_variation: 4}").is_err());
        assert!(slicer("{average_size: 4, dealy: 1ms}").unwrap_err().contains("unknown field"));
        assert_eq!(
            slicer("{average_size: 1KiB, size_variation: 512B, delay: 10ms}").unwrap().describe(),
            "slicer 1024±512 bytes every 10ms"
        );
    }
}
