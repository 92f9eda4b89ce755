//! `error_in_body`: answers `200 OK` and puts an S3 `<Error>` in the body, after keep-alive
//! whitespace, as S3 does for CompleteMultipartUpload (which sends whitespace to keep the
//! connection alive while it assembles the parts), CopyObject and UploadPartCopy when they fail
//! after the status line has gone out. The upstream never sees the request, so nothing was
//! done. Clients that trust the status code think the upload or copy succeeded; SDKs that
//! check the body turn it into an error and retry.
//!
//! Only those three operations: S3 never answers anything else this way (a GET's 200 body is
//! the object, and an `<Error>` there would be taken for its content), so on any other
//! request the rule does not fire at all, whatever its `match:` says.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use serde::de::{Deserialize, Deserializer};

use super::error::ErrorFault;
use super::{Applies, Ending, Fault, FaultCtx, FaultState, RequestAction};
use crate::body::full;
use crate::s3::{Operation, RequestInfo, S3ErrorResponse};
use crate::s3::error::RequestIds;

/// The keep-alive whitespace S3 sends while it works: after the XML declaration, which goes
/// out at once, and before the root element (so the document stays valid XML).
const KEEPALIVE: &str = "\n\n\n\n\n\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInBody {
    error: S3ErrorResponse,
}

impl Fault for ErrorInBody {
    const KIND: &'static str = "error_in_body";

    const TERMINAL: bool = true;

    /// The operations S3 answers with a 200 whose body is an `<Error>`.
    fn applies(&self, request: &RequestInfo<'_>, _: Option<&FaultState>) -> Applies {
        match request.operation {
            Operation::CompleteMultipartUpload | Operation::CopyObject | Operation::UploadPartCopy => Applies::Fire,
            _ => Applies::Skip,
        }
    }

    fn on_request(&self, ctx: &FaultCtx<'_>) -> RequestAction {
        let ids = RequestIds::generate();
        let xml = self.error.xml(ctx.request.path, &ids);
        let body = match xml.split_once("?>") {
            Some((declaration, document)) => format!("{declaration}?>{KEEPALIVE}{}", document.trim_start()),
            None => format!("{KEEPALIVE}{xml}"),
        };
        let mut response = Response::new(full(Bytes::from(body)));
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        headers.insert("x-amz-request-id", HeaderValue::from_str(&ids.request_id).expect("hex"));
        headers.insert("x-amz-id-2", HeaderValue::from_str(&ids.host_id).expect("base64"));
        headers.insert(http::header::SERVER, HeaderValue::from_static("AmazonS3"));
        RequestAction::End(Ending::Respond(response))
    }

    fn describe(&self) -> String {
        format!("error_in_body {} (200 OK)", self.error.code)
    }
}

impl<'de> Deserialize<'de> for ErrorInBody {
    /// The same forms as `error` (a code, or `{code, message}`); the status is always 200.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ErrorFault { response, .. } = ErrorFault::deserialize(d)?;
        Ok(ErrorInBody { error: response })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::draw::Draw;
    use crate::s3::Classifier;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_200_whose_valid_xml_is_an_error_after_keepalive_whitespace() {
        let fault: ErrorInBody = serde_yaml_ng::from_str("InternalError").unwrap();
        let (method, uri) = (http::Method::POST, "/b/k?uploadId=1".parse::<http::Uri>().unwrap());
        let mut headers = http::HeaderMap::new();
        headers.insert("host", "127.0.0.1".parse().unwrap());
        let info = Classifier::default().classify(&method, &uri, &headers);
        let RequestAction::End(Ending::Respond(response)) = fault.on_request(&FaultCtx {
            request: &info,
            draw: Draw::new(1, 0, 0),
            state: None,
        }) else {
            panic!("answers in S3's place");
        };
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\n\n\n\n\n<Error><Code>InternalError</Code>"),
            "{body}"
        );
        assert!(
            serde_yaml_ng::from_str::<ErrorInBody>("{code: SlowDown, status: 503}").is_ok(),
            "the error forms are error's; the status is ignored"
        );
    }
}
