//! `blackhole`: accepts the request and never answers, never contacting the upstream. The
//! connection is held, costing one small task and no thread, until the client gives up and
//! closes it, which is what an app meets when S3's endpoint stops responding.
//!
//! On HTTP/2 only the request's stream goes silent (the connection's other streams carry on),
//! unless the fault says `connection: true`: then the whole connection is held, unanswered.

use serde::Deserialize;

use super::{Fault, FaultCtx, Ending, RequestAction};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blackhole {
    /// On HTTP/2, hold the whole connection rather than one stream. (An HTTP/1.1 connection
    /// carries one request at a time, so there it is always the connection.)
    #[serde(default)]
    connection: bool,
}

impl Fault for Blackhole {
    const KIND: &'static str = "blackhole";

    const TERMINAL: bool = true;

    fn bare() -> Option<Self> {
        Some(Blackhole::default())
    }

    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        RequestAction::End(Ending::Blackhole {
            connection: self.connection,
        })
    }

    fn describe(&self) -> String {
        if self.connection {
            "blackhole (connection)".into()
        } else {
            "blackhole".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_stream_or_the_connection() {
        let parse = |y: &str| serde_yaml_ng::from_str::<Blackhole>(y).unwrap();
        for (yaml, whole) in [("{}", false), ("{connection: true}", true)] {
            let RequestAction::End(Ending::Blackhole { connection }) = super::super::request_phase(&parse(yaml), "GET", "/b/k")
            else {
                panic!("a blackhole ends the request unanswered");
            };
            assert_eq!(connection, whole, "{yaml}");
        }
        assert!(serde_yaml_ng::from_str::<Blackhole>("{forever: true}").is_err());
        assert_eq!(parse("{connection: true}").describe(), "blackhole (connection)");
    }
}
