//! `stall`: sends `after_bytes` of the response body, then nothing for a while (or forever),
//! then the rest: the download that hangs halfway, which read timeouts and stalled-stream
//! protection exist for.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::filter::{self, ChunkFilter, Step};
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
use crate::values::{ByteSize, DurationValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    after_bytes: u64,
    /// `None`: forever (until the client gives up).
    pause: Option<Duration>,
}

impl Fault for Stall {
    const KIND: &'static str = "stall";

    const TERMINAL: bool = false;

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        filter::silent(
            body,
            Stalled {
                before: Some(self.after_bytes),
                pause: self.pause,
                waited: false,
            },
            ctx.conn,
        )
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

/// Passes `before` bytes, then waits once (or forever), then passes the rest.
struct Stalled {
    /// Bytes still to pass before the stall; `None` once it is over.
    before: Option<u64>,
    pause: Option<Duration>,
    waited: bool,
}

impl ChunkFilter for Stalled {
    fn on_chunk(&mut self, chunk: &mut Bytes) -> Step {
        let Some(before) = self.before else {
            return Step::Pass;
        };
        let len = chunk.len() as u64;
        if before > 0 {
            if len <= before {
                self.before = Some(before - len);
                return Step::Pass;
            }
            self.before = Some(0);
            return Step::Split(before as usize);
        }
        match self.pause {
            None => Step::Hold,
            Some(pause) if !self.waited => {
                self.waited = true;
                Step::Delay(pause)
            }
            Some(_) => {
                self.before = None; // The stall happens once.
                Step::Pass
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn pauses_once_at_the_byte() {
        let stall = Stalled {
            before: Some(3),
            pause: Some(Duration::from_secs(30)),
            waited: false,
        };
        let (sent, cut) = filter::run(stall, &[b"ab", b"cdef", b"gh"]).await;
        assert!(!cut);
        let got: Vec<(u128, &[u8])> = sent.iter().map(|(t, p)| (t.as_secs() as u128, p.as_slice())).collect();
        assert_eq!(got, [(0, &b"ab"[..]), (0, b"c"), (30, b"def"), (30, b"gh")]);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn forever_sends_nothing_more() {
        let stall = Stalled {
            before: Some(1),
            pause: None,
            waited: false,
        };
        let run = filter::run(stall, &[b"abc"]);
        let outcome = tokio::time::timeout(Duration::from_secs(24 * 3600), run).await;
        assert!(outcome.is_err(), "a day later, still stalled");
    }
}
