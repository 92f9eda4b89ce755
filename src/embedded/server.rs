//! Serving the store: a loopback listener, the credentials front door, then s3s.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use s3s::host::MultiDomain;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::credentials::{self, Credentials, FixedAuth, REGION};
use super::db::Durability;
use super::store::{OpenError, Store};

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("invalid virtual-host domain: {0}")]
    Domain(String),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// How the store runs.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    pub credentials: Credentials,
    /// Base domains for virtual-hosted-style requests (`localhost` is always one).
    pub domains: Vec<String>,
    pub durability: Durability,
}

/// A running embedded store.
pub struct EmbeddedStore {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub task: JoinHandle<()>,
}

impl EmbeddedStore {
    /// Starts the store on a private loopback port over `data_dir` (created if missing).
    pub async fn start(
        data_dir: &Path,
        credentials: Credentials,
        domains: &[String],
    ) -> Result<EmbeddedStore, EmbeddedError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), data_dir, credentials, domains).await
    }

    /// Like [`EmbeddedStore::start`], on a given address.
    pub async fn start_on(
        listen: SocketAddr,
        data_dir: &Path,
        credentials: Credentials,
        domains: &[String],
    ) -> Result<EmbeddedStore, EmbeddedError> {
        let options = StoreOptions {
            credentials,
            domains: domains.to_vec(),
            durability: Durability::default(),
        };
        Self::start_with(listen, data_dir, options).await
    }

    pub async fn start_with(
        listen: SocketAddr,
        data_dir: &Path,
        options: StoreOptions,
    ) -> Result<EmbeddedStore, EmbeddedError> {
        let dir = data_dir.to_owned();
        let durability = options.durability;
        let (store, swept) = tokio::task::spawn_blocking(move || Store::open_dir(&dir, durability))
            .await
            .map_err(|e| EmbeddedError::Listen(std::io::Error::other(e)))??;
        if swept.partial_uploads + swept.orphans > 0 {
            tracing::info!(
                partial_uploads = swept.partial_uploads,
                orphan_files = swept.orphans,
                "embedded store: removed what an earlier run left unfinished"
            );
        }
        let data_dir = data_dir.canonicalize().unwrap_or_else(|_| data_dir.to_owned());

        let mut builder = S3ServiceBuilder::new(store);
        if let Credentials::Fixed { access_key, secret_key } = &options.credentials {
            builder.set_auth(FixedAuth {
                access_key: access_key.clone(),
                secret_key: secret_key.clone(),
            });
        }
        let mut all_domains = options.domains.clone();
        if !all_domains.iter().any(|d| d == "localhost") {
            all_domains.push("localhost".into());
        }
        builder.set_host(MultiDomain::new(&all_domains).map_err(|e| EmbeddedError::Domain(format!("{e:?}")))?);
        let front = Arc::new(FrontDoor {
            service: builder.build(),
            credentials: options.credentials,
        });

        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let front = Arc::clone(&front);
                let service = hyper::service::service_fn(move |req| {
                    let front = Arc::clone(&front);
                    async move { front.call(req).await }
                });
                let conn = http1::Builder::new()
                    .max_headers(crate::proxy::MAX_HEADERS)
                    // A client that half-closes after its request still gets the answer.
                    .half_close(true)
                    .serve_connection(TokioIo::new(socket), service);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        Ok(EmbeddedStore { addr, data_dir, task })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// What stands before s3s: the credentials mode's rewriting or region check.
struct FrontDoor {
    service: S3Service,
    credentials: Credentials,
}

impl FrontDoor {
    async fn call(&self, req: http::Request<hyper::body::Incoming>) -> Result<s3s::HttpResponse, s3s::HttpError> {
        let mut req = req.map(s3s::Body::from);
        let ids = crate::s3::error::RequestIds::generate();
        match &self.credentials {
            Credentials::Any => {
                if let Err(e) = credentials::accept_any(&mut req, std::time::SystemTime::now()) {
                    return Ok(render(&req, &e, &ids));
                }
            }
            Credentials::Fixed { .. } => {
                if let Some(region) = credentials::signed_region(req.headers())
                    && region != REGION
                {
                    return Ok(stamped(credentials::wrong_region_response(&region), &ids));
                }
            }
        }
        Ok(stamped(self.service.call(req).await?, &ids))
    }
}

/// Every answer carries S3's request ids (`x-amz-request-id`, `x-amz-id-2`), and an error's
/// XML has them as `<RequestId>` and `<HostId>`: SDKs put them in their errors and logs, and
/// a support ticket quotes them. (s3s leaves both out.) Error bodies are small and whole.
fn stamped(mut resp: s3s::HttpResponse, ids: &crate::s3::error::RequestIds) -> s3s::HttpResponse {
    let headers = resp.headers_mut();
    for (name, value) in [("x-amz-request-id", &ids.request_id), ("x-amz-id-2", &ids.host_id)] {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    if resp.status().as_u16() >= 300
        && let Some(xml) = resp.body().bytes()
        && let Some(with_ids) = with_request_ids(&xml, ids)
    {
        resp.headers_mut().remove(http::header::CONTENT_LENGTH);
        *resp.body_mut() = s3s::Body::from(with_ids);
    }
    resp
}

/// `…</Error>` with `<RequestId>` and `<HostId>` added, unless it has them or is no error.
fn with_request_ids(xml: &[u8], ids: &crate::s3::error::RequestIds) -> Option<bytes::Bytes> {
    let text = std::str::from_utf8(xml).ok()?;
    let end = text.rfind("</Error>")?;
    if text.contains("<RequestId>") {
        return None;
    }
    let (head, tail) = text.split_at(end);
    Some(bytes::Bytes::from(format!(
        "{head}<RequestId>{}</RequestId><HostId>{}</HostId>{tail}",
        ids.request_id, ids.host_id
    )))
}

/// An S3 error answered before s3s saw the request.
fn render(req: &http::Request<s3s::Body>, e: &s3s::S3Error, ids: &crate::s3::error::RequestIds) -> s3s::HttpResponse {
    let answer = crate::s3::S3ErrorResponse {
        status: e
            .status_code()
            .or_else(|| e.code().status_code())
            .unwrap_or(http::StatusCode::BAD_REQUEST),
        code: e.code().as_str().to_owned(),
        message: e.message().unwrap_or("").to_owned(),
        retry_after: None,
    };
    answer.render(req.method(), req.uri().path(), ids).map(s3s::Body::from)
}
