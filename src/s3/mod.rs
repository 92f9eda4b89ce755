//! What s3chaos knows about S3 itself: which operation a request is, and what S3's own
//! error responses look like. Nothing here depends on scenarios or faults.

pub mod auth;
pub mod classify;
pub mod error;
pub mod operation;
pub mod xml;

pub use classify::{Classifier, RequestInfo};
pub use error::{Code, ErrorCode, S3ErrorResponse};
pub use operation::Operation;

/// Headers a test sends to s3chaos itself inside its S3 requests: its isolation scope, and
/// (with `--allow-header-faults`) the fault it asks for. The proxy removes them before
/// forwarding unless the client signed them.
pub const SCOPE_HEADER: http::HeaderName = http::HeaderName::from_static("x-s3chaos-scope");
pub const FAULT_HEADER: http::HeaderName = http::HeaderName::from_static("x-s3chaos-fault");
