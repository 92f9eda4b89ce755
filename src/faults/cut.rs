//! A body cut after N bytes: the shared mechanism of `reset: {after_bytes}` (the connection
//! ends with an RST) and `truncate` (it ends with a FIN, a clean-looking close). Either way
//! the framing headers promised more, so the client sees a short body.

use std::sync::Arc;

use bytes::Bytes;

use super::fate::ConnControl;
use super::filter::{ChunkFilter, Step};

/// How the connection ends after the cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// TCP RST (`SO_LINGER 0`); on HTTP/2 the stream's `RST_STREAM`, unless `connection`.
    Reset { connection: bool },
    /// An ordinary close (FIN) in the middle of the body. HTTP/2 has no clean close of one
    /// stream short of its length, so there the stream is reset.
    Close,
}

/// Passes `remaining` body bytes, then ends the connection as `how` says. A body no longer
/// than that ends normally.
pub struct CutAfter {
    remaining: u64,
    how: Cut,
    conn: Arc<ConnControl>,
}

impl CutAfter {
    pub fn new(remaining: u64, how: Cut, conn: Arc<ConnControl>) -> Self {
        CutAfter { remaining, how, conn }
    }
}

impl ChunkFilter for CutAfter {
    fn on_chunk(&mut self, chunk: &mut Bytes) -> Step {
        let len = chunk.len() as u64;
        if self.remaining == 0 {
            Step::Cut
        } else if len > self.remaining {
            let n = self.remaining as usize;
            self.remaining = 0;
            Step::Split(n)
        } else {
            self.remaining -= len;
            Step::Pass
        }
    }

    fn on_cut(&mut self) -> &'static str {
        match self.how {
            Cut::Reset { connection } => {
                self.conn.reset(connection);
                "reset"
            }
            Cut::Close => "truncate",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::run;
    use super::*;

    fn conn() -> Arc<ConnControl> {
        Arc::new(ConnControl::new(Default::default()))
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn passes_exactly_n_bytes_then_cuts() {
        let (sent, cut) = run(CutAfter::new(5, Cut::Close, conn()), &[b"abc", b"defgh", b"ij"]).await;
        let bytes: Vec<u8> = sent.into_iter().flat_map(|(_, p)| p).collect();
        assert_eq!(bytes, b"abcde");
        assert!(cut);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_reset_cut_sets_the_connections_fate() {
        let conn = conn();
        let (_, cut) = run(
            CutAfter::new(1, Cut::Reset { connection: false }, conn.clone()),
            &[b"ab"],
        )
        .await;
        assert!(cut);
        assert_eq!(conn.fate(), super::super::fate::Fate::Reset);
        let closed = self::conn();
        run(CutAfter::new(1, Cut::Close, closed.clone()), &[b"ab"]).await;
        assert_eq!(
            closed.fate(),
            super::super::fate::Fate::Normal,
            "truncate closes with a FIN"
        );
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_shorter_body_is_not_cut() {
        let (sent, cut) = run(CutAfter::new(10, Cut::Close, conn()), &[b"abc"]).await;
        assert_eq!(sent.len(), 1);
        assert!(!cut);
    }
}
