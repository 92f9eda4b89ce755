//! `truncate`: sends `after_bytes` bytes of a response body whose `Content-Length` promised
//! more, then closes the connection normally (FIN), so only a client that checks the length
//! notices: the short read an SDK must detect and retry.

use serde::Deserialize;

use super::cut::{Cut, CutAfter};
use super::{BodyCtx, Fault, filter};
use crate::body::ProxyBody;
use crate::values::ByteSize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// Response body bytes sent before the close.
    after_bytes: ByteSize,
}

impl Fault for Truncate {
    const KIND: &'static str = "truncate";
    const TERMINAL: bool = true;

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        filter::filtered(body, CutAfter::new(self.after_bytes.0, Cut::Close, ctx.conn.clone()))
    }

    fn describe(&self) -> String {
        format!("truncate after {} response bytes", self.after_bytes.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn closes_cleanly_after_n_bytes() {
        let t: Truncate = serde_yaml_ng::from_str("{after_bytes: 4}").unwrap();
        let conn = std::sync::Arc::new(super::super::fate::ConnControl::new(Default::default()));
        let (sent, cut) = filter::run(CutAfter::new(t.after_bytes.0, Cut::Close, conn.clone()), &[b"ab", b"cdef"]).await;
        let bytes: Vec<u8> = sent.into_iter().flat_map(|(_, p)| p).collect();
        assert_eq!(bytes, b"abcd");
        assert!(cut, "the body ends short of its length");
        assert_eq!(conn.fate(), super::super::fate::Fate::Normal, "a FIN: no RST asked for");
        assert!(serde_yaml_ng::from_str::<Truncate>("{}").is_err(), "after_bytes is required");
    }
}
