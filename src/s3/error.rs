//! S3's own error responses: the codes that matter for resilience testing, their statuses and
//! messages as S3 sends them, and the XML body an SDK parses.
//!
//! An injected error must be indistinguishable from S3's: `application/xml` body with Code,
//! Message, Resource, RequestId and HostId; `x-amz-request-id` and `x-amz-id-2` headers;
//! `Server: AmazonS3`; and no body at all on HEAD, where SDKs see only the status.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use rand::Rng;
use serde::Serialize;

/// One S3 error code from the table below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: &'static str,
    pub status: u16,
    pub message: &'static str,
}

macro_rules! codes {
    ($($code:ident => $status:literal, $message:literal;)+) => {
        /// S3 error codes s3chaos knows by name; a scenario may use any other code if it also
        /// gives the status.
        pub const ERROR_CODES: &[ErrorCode] = &[$(ErrorCode { code: stringify!($code), status: $status, message: $message }),+];

        /// The codes of the table as a type, for the places s3chaos answers with a code of its
        /// own choosing (a typo is a compile error, not a panic on a request's path).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($code,)+
        }
    };
}

codes! {
    SlowDown => 503, "Please reduce your request rate.";
    ServiceUnavailable => 503, "Service is unable to handle request.";
    Busy => 503, "The service is unable to process your request. Please try again.";
    InternalError => 500, "We encountered an internal error. Please try again.";
    NotImplemented => 501, "A header you provided implies functionality that is not implemented.";
    RequestTimeout => 400, "Your socket connection to the server was not read from or written to within the timeout period.";
    ExpiredToken => 400, "The provided token has expired.";
    InvalidToken => 400, "The provided token is malformed or otherwise invalid.";
    TokenRefreshRequired => 400, "The provided token must be refreshed.";
    BadDigest => 400, "The Content-MD5 or checksum value that you specified did not match what the server received.";
    InvalidDigest => 400, "The Content-MD5 you specified is not valid.";
    IncompleteBody => 400, "You did not provide the number of bytes specified by the Content-Length HTTP header.";
    EntityTooSmall => 400, "Your proposed upload is smaller than the minimum allowed object size.";
    EntityTooLarge => 400, "Your proposed upload exceeds the maximum allowed object size.";
    InvalidPart => 400, "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag.";
    InvalidPartOrder => 400, "The list of parts was not in ascending order. Parts list must be specified in order by part number.";
    KeyTooLongError => 400, "Your key is too long.";
    InvalidArgument => 400, "Invalid Argument";
    InvalidRequest => 400, "Invalid Request";
    MalformedXML => 400, "The XML you provided was not well-formed or did not validate against our published schema.";
    AccessDenied => 403, "Access Denied";
    RequestTimeTooSkewed => 403, "The difference between the request time and the current time is too large.";
    InvalidAccessKeyId => 403, "The AWS Access Key Id you provided does not exist in our records.";
    SignatureDoesNotMatch => 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
    InvalidObjectState => 403, "The operation is not valid for the object's storage class.";
    NoSuchKey => 404, "The specified key does not exist.";
    NoSuchBucket => 404, "The specified bucket does not exist";
    NoSuchUpload => 404, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.";
    MethodNotAllowed => 405, "The specified method is not allowed against this resource.";
    OperationAborted => 409, "A conflicting conditional operation is currently in progress against this resource. Please try again.";
    ConditionalRequestConflict => 409, "A conflicting operation occurred. Please retry the request.";
    MissingContentLength => 411, "You must provide the Content-Length HTTP header.";
    PreconditionFailed => 412, "At least one of the preconditions you specified did not hold.";
    InvalidRange => 416, "The requested range is not satisfiable";
}

impl Code {
    /// The table's row for this code.
    pub fn info(self) -> ErrorCode {
        ERROR_CODES[self as usize]
    }
}

impl ErrorCode {
    pub fn lookup(code: &str) -> Option<ErrorCode> {
        ERROR_CODES.iter().copied().find(|e| e.code == code)
    }
}

/// A fully resolved S3 error, ready to be rendered for any request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3ErrorResponse {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Opt-in: S3 is not documented to send it, but newer SDKs honour `x-amz-retry-after`.
    pub retry_after: Option<Duration>,
}

/// The `<Error>` document, serialised by quick-xml (which also escapes keys in `Resource`).
#[derive(Serialize)]
#[serde(rename = "Error")]
struct ErrorBody<'a> {
    #[serde(rename = "Code")]
    code: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
    #[serde(rename = "RequestTime", skip_serializing_if = "Option::is_none")]
    request_time: Option<&'a str>,
    #[serde(rename = "ServerTime", skip_serializing_if = "Option::is_none")]
    server_time: Option<&'a str>,
    #[serde(rename = "MaxAllowedSkewMilliseconds", skip_serializing_if = "Option::is_none")]
    max_allowed_skew_ms: Option<u64>,
    #[serde(rename = "Resource", skip_serializing_if = "str::is_empty")]
    resource: &'a str,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
    #[serde(rename = "HostId")]
    host_id: &'a str,
}

/// What S3 adds to a `RequestTimeTooSkewed` error: the request's time as it sent it, S3's
/// own time, and the allowed skew.
#[derive(Debug, Clone)]
pub struct SkewFields<'a> {
    pub request_time: &'a str,
    pub server_time: String,
    pub max_allowed_skew_ms: u64,
}

/// The ids S3 puts on every response: a 16-hex-digit request id and a base64 host id.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub host_id: String,
}

impl RequestIds {
    pub fn generate() -> RequestIds {
        use base64::Engine as _;
        let mut rng = rand::rng();
        let request_id = format!("{:016X}", rng.random::<u64>());
        let mut raw = [0u8; 48];
        rng.fill(&mut raw[..]);
        let host_id = base64::engine::general_purpose::STANDARD.encode(raw);
        RequestIds { request_id, host_id }
    }
}

impl S3ErrorResponse {
    /// The error for a code from the table above, written as a literal by s3chaos itself.
    pub fn standard(code: Code) -> S3ErrorResponse {
        S3ErrorResponse::from_code(code.info())
    }

    pub fn from_code(code: ErrorCode) -> S3ErrorResponse {
        S3ErrorResponse {
            status: StatusCode::from_u16(code.status).expect("table holds valid statuses"),
            code: code.code.to_owned(),
            message: code.message.to_owned(),
            retry_after: None,
        }
    }

    /// The XML document S3 would send for this error on `resource`.
    pub fn xml(&self, resource: &str, ids: &RequestIds) -> String {
        self.xml_with(resource, ids, None)
    }

    fn xml_with(&self, resource: &str, ids: &RequestIds, skew: Option<&SkewFields<'_>>) -> String {
        let body = ErrorBody {
            code: &self.code,
            message: &self.message,
            request_time: skew.map(|s| s.request_time),
            server_time: skew.map(|s| s.server_time.as_str()),
            max_allowed_skew_ms: skew.map(|s| s.max_allowed_skew_ms),
            resource,
            request_id: &ids.request_id,
            host_id: &ids.host_id,
        };
        let doc = quick_xml::se::to_string(&body).expect("a struct of strings always serialises");
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{doc}")
    }

    /// Renders the response for a request with `method` on `resource` (the request path).
    /// HEAD responses carry the headers only, as S3's do.
    pub fn render(&self, method: &Method, resource: &str, ids: &RequestIds) -> Response<Bytes> {
        self.render_with(method, resource, ids, None)
    }

    /// A `RequestTimeTooSkewed` answer, with the times S3 puts in it (and no `Resource`, as
    /// S3's has none).
    pub fn render_skewed(&self, method: &Method, ids: &RequestIds, skew: &SkewFields<'_>) -> Response<Bytes> {
        self.render_with(method, "", ids, Some(skew))
    }

    fn render_with(
        &self,
        method: &Method,
        resource: &str,
        ids: &RequestIds,
        skew: Option<&SkewFields<'_>>,
    ) -> Response<Bytes> {
        let body = if *method == Method::HEAD {
            Bytes::new()
        } else {
            Bytes::from(self.xml_with(resource, ids, skew))
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if *method != Method::HEAD {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/xml"));
        }
        headers.insert("x-amz-request-id", header_value(&ids.request_id));
        headers.insert("x-amz-id-2", header_value(&ids.host_id));
        headers.insert(http::header::SERVER, HeaderValue::from_static("AmazonS3"));
        if let Some(after) = self.retry_after {
            headers.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(after.as_secs_f64().ceil() as u64),
            );
            headers.insert("x-amz-retry-after", HeaderValue::from(after.as_millis() as u64));
        }
        response
    }
}

fn header_value(s: &str) -> HeaderValue {
    // Ids are hex and base64: always valid header values.
    HeaderValue::from_str(s).expect("request ids are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, e) in ERROR_CODES.iter().enumerate() {
            assert!((400..600).contains(&e.status), "{} has status {}", e.code, e.status);
            assert!(!e.message.is_empty());
            assert!(
                ERROR_CODES[i + 1..].iter().all(|o| o.code != e.code),
                "{} twice",
                e.code
            );
        }
        assert_eq!(ErrorCode::lookup("SlowDown").unwrap().status, 503);
        assert_eq!(ErrorCode::lookup("NoSuchKey").unwrap().status, 404);
        assert!(ErrorCode::lookup("Slowdown").is_none());
    }

    #[test]
    fn xml_body_is_s3s_shape_and_escaped() {
        let err = S3ErrorResponse::from_code(ErrorCode::lookup("SlowDown").unwrap());
        let ids = RequestIds {
            request_id: "4442587FB7D0A2F9".into(),
            host_id: "aG9zdA==".into(),
        };
        let xml = err.xml("/bucket/a&b<c>", &ids);
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
             <Message>Please reduce your request rate.</Message><Resource>/bucket/a&amp;b&lt;c&gt;</Resource>\
             <RequestId>4442587FB7D0A2F9</RequestId><HostId>aG9zdA==</HostId></Error>"
        );
    }

    #[test]
    fn head_has_no_body() {
        let err = S3ErrorResponse::from_code(ErrorCode::lookup("InternalError").unwrap());
        let ids = RequestIds::generate();
        assert_eq!(ids.request_id.len(), 16);
        let head = err.render(&Method::HEAD, "/b/k", &ids);
        assert_eq!(head.status(), 500);
        assert!(head.body().is_empty());
        assert!(head.headers().get("content-type").is_none());
        assert_eq!(head.headers()["x-amz-request-id"], ids.request_id.as_str());
        let get = err.render(&Method::GET, "/b/k", &ids);
        assert_eq!(get.headers()["content-type"], "application/xml");
        assert!(
            std::str::from_utf8(get.body())
                .unwrap()
                .contains("<Code>InternalError</Code>")
        );
    }

    #[test]
    fn typed_codes_are_the_tables_rows() {
        assert_eq!(Code::SlowDown.info().code, "SlowDown");
        assert_eq!(Code::InvalidRange.info().status, 416);
        assert_eq!(S3ErrorResponse::standard(Code::NoSuchKey).status, 404);
    }
}
