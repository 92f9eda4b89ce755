//! `reset`: aborts the TCP connection with an RST, either before any response byte (the
//! client sees "connection reset by peer") or after `after_bytes` bytes of the response body
//! (a download that dies mid-stream).

use std::sync::Arc;

use serde::Deserialize;

use super::cut::{Cut, CutAfter};
use super::{Fault, FaultCtx, RequestAction};
use crate::engine::Draw;
use crate::proxy::body::ProxyBody;
use crate::proxy::conn::ConnControl;
use crate::scenario::values::ByteSize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reset {
    /// Response body bytes to let through before the RST; none means before the response.
    #[serde(default)]
    after_bytes: Option<ByteSize>,
}

impl Reset {
    pub fn after_bytes(n: u64) -> Reset {
        Reset {
            after_bytes: Some(ByteSize(n)),
        }
    }
}

impl Fault for Reset {
    fn kind(&self) -> &'static str {
        "reset"
    }

    fn is_terminal(&self) -> bool {
        true
    }

    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        match self.after_bytes {
            None => RequestAction::Reset,
            Some(_) => RequestAction::Continue,
        }
    }

    fn on_response_body(&self, body: ProxyBody, conn: &Arc<ConnControl>, _draw: Draw) -> ProxyBody {
        match self.after_bytes {
            None => body,
            Some(ByteSize(n)) => ProxyBody::new(CutAfter::new(body, n, Cut::Reset, conn.clone())),
        }
    }

    fn describe(&self) -> String {
        match self.after_bytes {
            None => "reset".into(),
            Some(ByteSize(n)) => format!("reset after {n} response bytes"),
        }
    }
}
