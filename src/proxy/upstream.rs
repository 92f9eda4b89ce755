//! The upstream S3 endpoint and the pooled, kept-alive client that talks to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::connect_to::{ConnectToTable, Redirecting};
use super::pool::ConnPool;
use super::targets::TargetPolicy;
use crate::body::{BoxError, ProxyBody};

/// Why an upstream could not be set up (a start-up error, reported before serving).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamConfigError {
    #[error("invalid upstream URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot read the upstream CA file {path}: {source}")]
    CaFile { path: PathBuf, source: std::io::Error },
    #[error("the upstream CA file {0} holds no PEM certificate")]
    CaEmpty(PathBuf),
    #[error("the upstream CA file {path} holds a certificate rustls refuses: {source}")]
    CaInvalid { path: PathBuf, source: rustls::Error },
    #[error("TLS set-up failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Why one forwarded request got no response from the upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    #[error("upstream request failed: {0}")]
    Failed(BoxError),
}

#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Extra CA certificates (PEM) trusted for an `https://` upstream.
    pub ca_file: Option<PathBuf>,
    pub connect_timeout: Duration,
    /// Time allowed from the end of the request body to the response head.
    pub response_timeout: Duration,
    /// `--connect-to` rules: reach a host at another address, keeping its name for TLS.
    pub connect_to: ConnectToTable,
    /// Offer h2 to an `https://` upstream (ALPN); HTTP/1.1 is spoken if it declines.
    pub http2: bool,
    /// Forward mode: where the proxy may connect for its clients (checked on every new
    /// connection that no `--connect-to` rule redirects). `None`: anywhere.
    pub targets: Option<Arc<TargetPolicy>>,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        UpstreamOptions {
            ca_file: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(300),
            connect_to: ConnectToTable::default(),
            http2: true,
            targets: None,
        }
    }
}

pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    connector: HttpsConnector<Redirecting>,
    pool: Arc<ConnPool>,
    response_timeout: Duration,
    /// Idle pooled connections across this upstream's pools (shared by every worker's).
    idle: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn new(url: &str, options: &UpstreamOptions) -> Result<Arc<Upstream>, UpstreamConfigError> {
        let bad = |reason: &str| UpstreamConfigError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("it needs a scheme, http:// or https://"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("only http:// and https:// are supported"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("it needs a host"))?;
        if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
            // The path is part of the SigV4 signature: a prefix added by the proxy would
            // break every signed request.
            return Err(bad("it must not have a path or query; give only scheme, host and port"));
        }

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(options.connect_timeout));
        let tls = tls_config(options.ca_file.as_deref())?;
        let http = Redirecting::new(http, options.connect_to.clone(), options.targets.clone());
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if options.http2 {
            builder.enable_all_versions().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        let idle = Arc::<std::sync::atomic::AtomicUsize>::default();
        Ok(Arc::new(Upstream {
            pool: ConnPool::new(connector.clone(), origin_uri(&scheme, &authority), idle.clone()),
            scheme,
            authority,
            connector,
            response_timeout: options.response_timeout,
            idle,
        }))
    }

    /// The same upstream with a connection pool of its own. Each proxy worker thread uses
    /// one, so a request never waits on, or wakes, another thread's pool.
    pub fn with_own_pool(&self) -> Upstream {
        self.for_origin(self.scheme.clone(), self.authority.clone())
    }

    /// The same client (TLS trust, `--connect-to`, timeouts) for another origin, with a pool
    /// of its own: a forward proxy's upstream is whichever host the client asked for.
    pub fn for_origin(&self, scheme: Scheme, authority: Authority) -> Upstream {
        Upstream {
            pool: ConnPool::new(
                self.connector.clone(),
                origin_uri(&scheme, &authority),
                self.idle.clone(),
            ),
            scheme,
            authority,
            connector: self.connector.clone(),
            response_timeout: self.response_timeout,
            idle: self.idle.clone(),
        }
    }

    /// Idle kept-alive connections held across every pool of this upstream: each is an open
    /// descriptor, and what a leak check must allow for once clients have gone.
    pub fn idle_connections(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.idle.clone()
    }

    /// `scheme://host:port` of the upstream, for logs.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Sends `req` upstream. Its URI's path and query are kept byte for byte and its headers
    /// as given (including `Host`, which the client signed).
    pub async fn send(&self, mut req: Request<ProxyBody>) -> Result<Response<ProxyBody>, UpstreamError> {
        // Origin-form on the wire (`/bucket/key?query`), byte for byte as the client sent it.
        if req.uri().scheme().is_some() || req.uri().authority().is_some() {
            let path_and_query = req
                .uri()
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/"));
            *req.uri_mut() = Uri::from(path_and_query);
        }
        if !req.headers().contains_key(http::header::HOST) {
            // Only an HTTP/1.0 client omits it; SigV4 clients always sign one.
            let host = http::HeaderValue::from_str(self.authority.as_str()).expect("an authority is a valid header");
            req.headers_mut().insert(http::header::HOST, host);
        }
        // The timeout counts from the end of the request body: a 5 GiB upload over a slow
        // link is not a stuck upstream. A request without a body starts it at once.
        if http_body::Body::is_end_stream(req.body()) {
            return match tokio::time::timeout(self.response_timeout, self.pool.send(req)).await {
                Ok(result) => result.map_err(UpstreamError::Failed),
                Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            };
        }
        let sent = Arc::new(tokio::sync::Notify::new());
        let req = req.map(|body| ProxyBody::new(SignalEnd::new(body, sent.clone())));
        let deadline = async {
            sent.notified().await;
            tokio::time::sleep(self.response_timeout).await;
        };
        tokio::select! {
            result = self.pool.send(req) => result.map_err(UpstreamError::Failed),
            () = deadline => Err(UpstreamError::Timeout(self.response_timeout)),
        }
    }
}

/// A request body that says when it has been sent to its end (or dropped unsent).
struct SignalEnd {
    inner: ProxyBody,
    sent: Option<Arc<tokio::sync::Notify>>,
}

impl SignalEnd {
    fn new(inner: ProxyBody, sent: Arc<tokio::sync::Notify>) -> SignalEnd {
        SignalEnd {
            inner,
            sent: Some(sent),
        }
    }

    fn signal(&mut self) {
        if let Some(sent) = self.sent.take() {
            // Stores a permit if nobody waits yet.
            sent.notify_one();
        }
    }
}

impl http_body::Body for SignalEnd {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() || self.inner.is_end_stream() {
            self.signal();
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for SignalEnd {
    fn drop(&mut self) {
        self.signal();
    }
}

fn origin_uri(scheme: &Scheme, authority: &Authority) -> Uri {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query("/")
        .build()
        .expect("scheme and authority were each valid")
}

/// rustls with the `ring` provider (builds anywhere with a C compiler, no CMake), trusting
/// the system's roots, webpki's bundled roots and any private CA the user gives.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, UpstreamConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|source| UpstreamConfigError::CaFile {
            path: path.into(),
            source,
        })?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
        if certs.is_empty() {
            return Err(UpstreamConfigError::CaEmpty(path.into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|source| UpstreamConfigError::CaInvalid {
                path: path.into(),
                source,
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
