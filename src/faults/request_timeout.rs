//! `request_timeout`: reads the client's request, then answers `400 RequestTimeout` ("Your
//! socket connection to the server was not read from or written to within the timeout
//! period."), as S3 does when an upload goes idle. The upstream never sees the request.

use super::{Fault, FaultCtx, Ending, RequestAction};
use crate::s3::{Code, S3ErrorResponse};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimeout;

/// Takes no settings: any value (`{request_timeout: {}}`, `{request_timeout: ~}`) is accepted.
impl<'de> serde::Deserialize<'de> for RequestTimeout {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| RequestTimeout)
    }
}

impl Fault for RequestTimeout {
    const KIND: &'static str = "request_timeout";

    const TERMINAL: bool = true;

    fn bare() -> Option<Self> {
        Some(RequestTimeout)
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let error = S3ErrorResponse::standard(Code::RequestTimeout);
        RequestAction::End(Ending::ReadBodyThenRespond(super::error::answer(
            &error,
            ctx.request.method,
            ctx.request.path,
        )))
    }

    fn describe(&self) -> String {
        "request_timeout".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upload_then_answers_400_request_timeout() {
        let RequestAction::End(Ending::ReadBodyThenRespond(response)) =
            super::super::request_phase(&RequestTimeout, "PUT", "/b/k")
        else {
            panic!("request_timeout reads the body, then answers");
        };
        assert_eq!(response.status(), 400);
        assert!(serde_yaml_ng::from_str::<RequestTimeout>("{}").is_ok(), "takes any value");
    }
}
