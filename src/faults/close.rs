//! `close: before_response`: the request is read (its body too), then the connection is
//! closed with a FIN and no answer. It is what a client meets when it sends a request on a
//! kept-alive connection just as S3 closes it for being idle (rust-s3 #405, vector #9703,
//! s3cmd #1114, aws-sdk-java #1101): the connection ends with no response. The request never
//! reached the store, so an SDK should retry it on a new connection. With `match: {idle_for:
//! 10s}` the race is hit on purpose: only requests arriving on a connection that was idle
//! that long.
//!
//! On HTTP/2 a stream has no FIN short of an answer: the stream is reset instead.

use serde::Deserialize;

use super::{Ending, Fault, FaultCtx, RequestAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Close {
    /// After reading the request, before any response byte.
    BeforeResponse,
}

impl Fault for Close {
    const KIND: &'static str = "close";
    const TERMINAL: bool = true;

    /// `fault: close` is `close: before_response`, its only form so far.
    fn bare() -> Option<Self> {
        Some(Close::BeforeResponse)
    }

    fn on_request(&self, _: &FaultCtx<'_>) -> RequestAction {
        RequestAction::End(Ending::Close)
    }

    fn describe(&self) -> String {
        "close before the response (FIN, no answer)".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_before_response_is_a_close() {
        let c: Close = serde_yaml_ng::from_str("before_response").unwrap();
        assert_eq!(c, Close::BeforeResponse);
        assert!(serde_yaml_ng::from_str::<Close>("after_response").is_err());
    }
}
