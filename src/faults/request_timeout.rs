//! `request_timeout`: reads the client's request, then answers `400 RequestTimeout` ("Your
//! socket connection to the server was not read from or written to within the timeout
//! period."), as S3 does when an upload goes idle. The upstream never sees the request.

use super::{Fault, FaultCtx, RequestAction};
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
        RequestAction::ReadBodyThenRespond(super::error::answer(&error, ctx.request.method, ctx.request.path))
    }

    fn describe(&self) -> String {
        "request_timeout".into()
    }
}
