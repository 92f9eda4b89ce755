//! `request_timeout`: reads the client's request, then answers `400 RequestTimeout` ("Your
//! socket connection to the server was not read from or written to within the timeout
//! period."), as S3 does when an upload goes idle. The upstream never sees the request.

use super::{Fault, FaultCtx, RequestAction};
use crate::s3::S3ErrorResponse;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTimeout;

impl Fault for RequestTimeout {
    fn kind(&self) -> &'static str {
        "request_timeout"
    }

    fn is_terminal(&self) -> bool {
        true
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let error = S3ErrorResponse::standard("RequestTimeout");
        RequestAction::ReadBodyThenRespond(super::error::answer(&error, ctx.request.method, ctx.request.path))
    }

    fn describe(&self) -> String {
        "request_timeout".into()
    }
}
