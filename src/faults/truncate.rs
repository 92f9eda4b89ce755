//! `truncate`: sends `after_bytes` bytes of a response body whose `Content-Length` promised
//! more, then closes the connection normally (FIN), so only a client that checks the length
//! notices: the short read an SDK must detect and retry.

use std::sync::Arc;

use serde::Deserialize;

use super::Fault;
use super::cut::{Cut, CutAfter};
use crate::body::ProxyBody;
use crate::draw::Draw;
use crate::faults::fate::ConnControl;
use crate::values::ByteSize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truncate {
    /// Response body bytes sent before the close.
    after_bytes: ByteSize,
}

impl Fault for Truncate {
    fn kind(&self) -> &'static str {
        "truncate"
    }

    fn is_terminal(&self) -> bool {
        true
    }

    fn on_response_body(&self, body: ProxyBody, conn: &Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        ProxyBody::new(CutAfter::new(body, self.after_bytes.0, Cut::Close, conn.clone()))
    }

    fn describe(&self) -> String {
        format!("truncate after {} response bytes", self.after_bytes.0)
    }
}
