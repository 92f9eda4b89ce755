//! `reset`: aborts the TCP connection with an RST, either before any response byte (the
//! client sees "connection reset by peer") or after `after_bytes` bytes of the response body
//! (a download that dies mid-stream).
//!
//! On HTTP/2 the request's stream is reset (`RST_STREAM`) and the connection's other streams
//! carry on, unless the fault says `connection: true`: then the TCP connection gets the RST.

use serde::Deserialize;

use super::cut::{Cut, CutAfter};
use super::{BodyCtx, Fault, FaultCtx, Ending, RequestAction, When, filter};
use crate::body::ProxyBody;
use crate::values::ByteSize;

/// Read through `ResetFile`, which checks that at most one cut point is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ResetFile")]
pub struct Reset {
    /// Response body bytes to let through before the RST; none means before the response.
    after_bytes: Option<ByteSize>,
    /// Or: uploaded (request body) bytes to let through to the upstream before the RST.
    after_request_bytes: Option<ByteSize>,
    /// Or: `after_upstream`, the RST comes once the upstream has done the request.
    when: When,
    /// On HTTP/2, reset the whole TCP connection rather than the request's stream.
    connection: bool,
}

/// The file form, checked: one cut point at most.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetFile {
    #[serde(default)]
    after_bytes: Option<ByteSize>,
    #[serde(default)]
    after_request_bytes: Option<ByteSize>,
    #[serde(default)]
    when: When,
    #[serde(default)]
    connection: bool,
}

impl TryFrom<ResetFile> for Reset {
    type Error = &'static str;
    fn try_from(f: ResetFile) -> Result<Self, Self::Error> {
        let points = usize::from(f.after_bytes.is_some())
            + usize::from(f.after_request_bytes.is_some())
            + usize::from(f.when == When::AfterUpstream);
        if points > 1 {
            return Err(
                "reset takes one of `after_bytes` (response), `after_request_bytes` (upload) or `when: after_upstream`",
            );
        }
        Ok(Reset {
            after_bytes: f.after_bytes,
            after_request_bytes: f.after_request_bytes,
            when: f.when,
            connection: f.connection,
        })
    }
}

impl Reset {
    fn cut(&self) -> Cut {
        Cut::Reset {
            connection: self.connection,
        }
    }
}

impl Fault for Reset {
    const KIND: &'static str = "reset";

    const TERMINAL: bool = true;

    fn bare() -> Option<Self> {
        Some(Reset::default())
    }

    fn on_request(&self, _ctx: &FaultCtx<'_>) -> RequestAction {
        match (self.after_bytes, self.after_request_bytes, self.when) {
            (None, None, When::BeforeUpstream) => RequestAction::End(Ending::Reset {
                connection: self.connection,
            }),
            (None, None, When::AfterUpstream) => RequestAction::End(Ending::AfterUpstream {
                answer: None,
                connection: self.connection,
            }),
            _ => RequestAction::Continue,
        }
    }

    fn on_request_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        match self.after_request_bytes {
            None => body,
            Some(ByteSize(n)) => filter::filtered(body, CutAfter::new(n, self.cut(), ctx.conn.clone())),
        }
    }

    fn on_response_body(&self, body: ProxyBody, ctx: &BodyCtx<'_>) -> ProxyBody {
        match self.after_bytes {
            None => body,
            Some(ByteSize(n)) => filter::filtered(body, CutAfter::new(n, self.cut(), ctx.conn.clone())),
        }
    }

    fn describe(&self) -> String {
        let described = match (self.after_bytes, self.after_request_bytes) {
            (Some(ByteSize(n)), _) => format!("reset after {n} response bytes"),
            (None, Some(ByteSize(n))) => format!("reset after {n} request bytes"),
            (None, None) if self.when == When::AfterUpstream => "reset after upstream".into(),
            (None, None) => "reset".into(),
        };
        if self.connection {
            format!("{described} (connection)")
        } else {
            described
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(yaml: &str) -> Reset {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn before_the_response_after_the_upstream_or_in_the_body() {
        let phase = |r: &Reset| super::super::request_phase(r, "GET", "/b/k");
        assert!(matches!(
            phase(&reset("{}")),
            RequestAction::End(Ending::Reset { connection: false })
        ));
        assert!(matches!(
            phase(&reset("{connection: true}")),
            RequestAction::End(Ending::Reset { connection: true })
        ));
        assert!(matches!(
            phase(&reset("{when: after_upstream}")),
            RequestAction::End(Ending::AfterUpstream { answer: None, .. })
        ));
        // A cut in the body lets the request go on; the body phase does the cut.
        assert!(matches!(phase(&reset("{after_bytes: 10}")), RequestAction::Continue));
        assert!(matches!(phase(&reset("{after_request_bytes: 10}")), RequestAction::Continue));
        assert!(serde_yaml_ng::from_str::<Reset>("{after_bytes: 1, when: after_upstream}").is_err());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_cut_in_the_body_resets_after_n_bytes() {
        let conn = std::sync::Arc::new(super::super::fate::ConnControl::new(Default::default()));
        let (sent, cut) = filter::run(CutAfter::new(3, reset("{after_bytes: 3}").cut(), conn.clone()), &[b"abcdef"]).await;
        assert_eq!(sent.concat_bytes(), b"abc");
        assert!(cut);
        assert_eq!(conn.fate(), super::super::fate::Fate::Reset, "an RST, not a FIN");
    }

    trait Concat {
        fn concat_bytes(&self) -> Vec<u8>;
    }

    impl Concat for Vec<(std::time::Duration, Vec<u8>)> {
        fn concat_bytes(&self) -> Vec<u8> {
            self.iter().flat_map(|(_, p)| p.clone()).collect()
        }
    }
}
