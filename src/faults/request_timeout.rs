//! `request_timeout`: reads the client's request, then answers `400 RequestTimeout` ("Your
//! socket connection to the server was not read from or written to within the timeout
//! period."), as S3 does when an upload goes idle. The upstream never sees the request.

use super::{Fault, FaultCtx, RequestAction};
use crate::proxy::body::full;
use crate::s3::error::RequestIds;
use crate::s3::{ErrorCode, S3ErrorResponse};

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
        let code = ErrorCode::lookup("RequestTimeout").expect("in the table");
        let response =
            S3ErrorResponse::from_code(code).render(ctx.request.method, ctx.request.path, &RequestIds::generate());
        RequestAction::ReadBodyThenRespond(response.map(full))
    }

    fn describe(&self) -> String {
        "request_timeout".into()
    }
}
