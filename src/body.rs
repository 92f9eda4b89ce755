//! The body type every response and forwarded request uses, and helpers around it.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed body of any origin: the client's upload, the upstream's download (both
/// possibly wrapped by body faults), or a small body s3chaos makes itself.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The error a body fault raises to abort a stream on purpose, so logs can tell an injected
/// cut from a real one.
#[derive(Debug, thiserror::Error)]
#[error("injected fault: {0}")]
pub struct InjectedFault(pub &'static str);

/// `hint` grown by `extra` bytes a body wrapper holds back (a frame split across a pause).
pub fn hint_plus(mut hint: http_body::SizeHint, extra: u64) -> http_body::SizeHint {
    hint.set_lower(hint.lower() + extra);
    if let Some(upper) = hint.upper() {
        hint.set_upper(upper + extra);
    }
    hint
}

pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Wraps a hyper body (the client's upload or the upstream's response) without copying it.
pub fn stream(body: hyper::body::Incoming) -> ProxyBody {
    body.map_err(BoxError::from).boxed()
}
