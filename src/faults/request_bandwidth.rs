//! `request_bandwidth`: reads the client's upload at a limited rate. The proxy does not
//! buffer it: it simply reads slower, so TCP back-pressure slows the client down for real,
//! as a congested uplink would.

use serde::de::{Deserialize, Deserializer};

use super::bandwidth::throttled;
use super::{BodyCtx, Fault};
use crate::body::ProxyBody;
use crate::values::Rate;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBandwidth(pub Rate);

impl<'de> Deserialize<'de> for RequestBandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Rate::deserialize(d).map(RequestBandwidth)
    }
}

impl Fault for RequestBandwidth {
    const KIND: &'static str = "request_bandwidth";

    const TERMINAL: bool = false;

    fn on_request_body(&self, body: ProxyBody, _ctx: &BodyCtx<'_>) -> ProxyBody {
        throttled(body, self.0.bytes_per_second)
    }

    fn describe(&self) -> String {
        format!(
            "request_bandwidth {}/s",
            bytesize::ByteSize(self.0.bytes_per_second).display().iec()
        )
    }
}
