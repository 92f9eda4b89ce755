//! What s3chaos knows about S3 itself: which operation a request is, and what S3's own
//! error responses look like. Nothing here depends on scenarios or faults.

pub mod auth;
pub mod classify;
pub mod error;
pub mod operation;

pub use classify::{Classifier, RequestInfo};
pub use error::{ErrorCode, S3ErrorResponse};
pub use operation::Operation;
