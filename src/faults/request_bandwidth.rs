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

#[cfg(test)]
mod tests {
    use super::super::bandwidth::Throttle;
    use super::super::filter;

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn an_upload_is_read_at_the_rate() {
        // 40 B/s: 2-byte pieces every 50 ms; 8 bytes take 150 ms.
        let (sent, _) = filter::run(Throttle::new(40), &[b"abcdefgh"]).await;
        assert_eq!(sent.len(), 4);
        assert_eq!(sent.last().unwrap().0.as_millis(), 150);
        let fault: super::RequestBandwidth = serde_yaml_ng::from_str("1KiB/s").unwrap();
        assert_eq!(super::Fault::describe(&fault), "request_bandwidth 1.0 KiB/s");
    }
}
