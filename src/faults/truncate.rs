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
