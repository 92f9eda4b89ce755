//! `error`: answers the request with an S3 error response (status, XML body, request ids)
//! instead of forwarding it, exactly as S3 itself would answer.

use std::fmt;

use http::StatusCode;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{Fault, FaultCtx, Ending, RequestAction, When};
use http::{Method, Response};

use crate::body::{ProxyBody, full};
use crate::s3::error::RequestIds;
use crate::s3::{ErrorCode, S3ErrorResponse};
use crate::values::DurationValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorFault {
    pub response: S3ErrorResponse,
    /// `after_upstream`: the upstream does the request, the client still gets the error.
    pub when: When,
}

impl Fault for ErrorFault {
    const KIND: &'static str = "error";

    const TERMINAL: bool = true;

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let response = answer(&self.response, ctx.request.method, ctx.request.path);
        match self.when {
            When::BeforeUpstream => RequestAction::End(Ending::Respond(response)),
            When::AfterUpstream => RequestAction::End(Ending::AfterUpstream {
                answer: Some(response),
                connection: false,
            }),
        }
    }

    fn describe(&self) -> String {
        let after = if self.when == When::AfterUpstream {
            " after upstream"
        } else {
            ""
        };
        format!(
            "error {} ({}){after}",
            self.response.code,
            self.response.status.as_u16()
        )
    }
}

/// S3's answer with `error` to a request with `method` on `resource`, with fresh request ids:
/// what every fault that answers in S3's place sends.
pub fn answer(error: &S3ErrorResponse, method: &Method, resource: &str) -> Response<ProxyBody> {
    error.render(method, resource, &RequestIds::generate()).map(full)
}

const ERROR_FIELDS: &[&str] = &["code", "status", "message", "retry_after", "when"];

impl<'de> Deserialize<'de> for ErrorFault {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ErrorFault;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "an S3 error code such as SlowDown, or {code: ..., status: ..., message: ..., retry_after: ...}",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ErrorFault, E> {
                let known = ErrorCode::lookup(v).ok_or_else(|| E::custom(unknown_code(v)))?;
                Ok(ErrorFault {
                    response: S3ErrorResponse::from_code(known),
                    when: When::BeforeUpstream,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ErrorFault, A::Error> {
                let (mut code, mut status, mut message, mut retry_after) =
                    (None::<String>, None::<u16>, None::<String>, None);
                let mut when = When::BeforeUpstream;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "code" => code = Some(map.next_value()?),
                        "status" => status = Some(map.next_value()?),
                        "message" => message = Some(map.next_value()?),
                        "retry_after" => retry_after = Some(map.next_value::<DurationValue>()?.0),
                        "when" => when = map.next_value()?,
                        other => return Err(de::Error::unknown_field(other, ERROR_FIELDS)),
                    }
                }
                let code = code.ok_or_else(|| de::Error::missing_field("code"))?;
                let known = ErrorCode::lookup(&code);
                let status = match (status, known) {
                    (Some(s), _) if !(400..=599).contains(&s) => {
                        return Err(de::Error::custom(format!(
                            "status {s} is not an error status (400-599)"
                        )));
                    }
                    (Some(s), _) => StatusCode::from_u16(s).map_err(de::Error::custom)?,
                    (None, Some(k)) => StatusCode::from_u16(k.status).map_err(de::Error::custom)?,
                    (None, None) => return Err(de::Error::custom(unknown_code(&code))),
                };
                let message = message
                    .or_else(|| known.map(|k| k.message.to_owned()))
                    .unwrap_or_default();
                Ok(ErrorFault {
                    response: S3ErrorResponse {
                        status,
                        code,
                        message,
                        retry_after,
                    },
                    when,
                })
            }
        }
        d.deserialize_any(V)
    }
}

fn unknown_code(code: &str) -> String {
    let known: Vec<&str> = crate::s3::error::ERROR_CODES.iter().map(|e| e.code).collect();
    format!(
        "unknown S3 error code `{code}`; give `status:` as well to use a code of your own, or use one of: {}",
        known.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_resolves_status_and_message() {
        let f: ErrorFault = serde_yaml_ng::from_str("SlowDown").unwrap();
        assert_eq!(f.response.status, 503);
        assert_eq!(f.response.message, "Please reduce your request rate.");
        let f: ErrorFault =
            serde_yaml_ng::from_str("{status: 500, code: InternalError, message: boom, retry_after: 1s}").unwrap();
        assert_eq!(f.response.message, "boom");
        assert_eq!(f.response.retry_after, Some(std::time::Duration::from_secs(1)));
        let custom: ErrorFault = serde_yaml_ng::from_str("{code: QuotaExceeded, status: 429}").unwrap();
        assert_eq!(custom.response.status, 429);
    }

    #[test]
    fn unknown_code_needs_status() {
        let err = serde_yaml_ng::from_str::<ErrorFault>("Slowdown")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown S3 error code `Slowdown`"), "{err}");
        assert!(serde_yaml_ng::from_str::<ErrorFault>("{code: Nope}").is_err());
        assert!(serde_yaml_ng::from_str::<ErrorFault>("{code: SlowDown, status: 200}").is_err());
    }
}
