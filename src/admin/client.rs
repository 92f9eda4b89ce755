//! A small client for the admin API, used by `s3chaos ctl`.

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("`{0}` is not an admin API address (e.g. http://127.0.0.1:9081)")]
    BadAddress(String),
    #[error("cannot reach the admin API at {base}: {source}")]
    Unreachable {
        base: String,
        source: hyper_util::client::legacy::Error,
    },
    #[error("reading the admin API's answer: {0}")]
    Read(#[from] hyper::Error),
    /// The API answered with an error: its status and message.
    #[error("{message}")]
    Api {
        status: StatusCode,
        message: String,
        body: Value,
    },
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// `base` is `http://HOST:PORT` or just `HOST:PORT`.
    pub fn new(base: &str, token: Option<String>) -> Result<AdminClient, ClientError> {
        let base = if base.contains("://") {
            base.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", base.trim_end_matches('/'))
        };
        base.parse::<http::Uri>()
            .map_err(|_| ClientError::BadAddress(base.clone()))?;
        Ok(AdminClient {
            base,
            token,
            http: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// One call; a 2xx answer's body (JSON, or text as a JSON string), or the API's error.
    pub async fn call(&self, method: Method, path: &str, body: Option<String>) -> Result<Value, ClientError> {
        let mut req = Request::builder().method(method).uri(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| ClientError::BadAddress(self.base.clone()))?;
        let resp = self
            .http
            .request(req)
            .await
            .map_err(|source| ClientError::Unreachable {
                base: self.base.clone(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| format!("the admin API answered {status}"), str::to_owned);
        Err(ClientError::Api {
            status,
            message,
            body: value,
        })
    }
}
