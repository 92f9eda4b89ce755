//! The embedded S3 store: s3s-fs serving a local directory, so `s3chaos run` works with
//! nothing else installed. It listens on a private loopback port and the proxy forwards to it
//! exactly as it would to any other upstream, so faults and passthrough behave the same.
//!
//! Credentials: s3s verifies every SigV4 signature and has no way to skip that (skipping it
//! would also skip decoding `aws-chunked` uploads), so "any credentials" is not possible. By
//! default the store accepts **any access key whose secret key is the same string**
//! (`test`/`test`, `minioadmin`/`minioadmin`, `s3chaos`/`s3chaos` all work); with
//! `--access-key`/`--secret-key` it accepts that one pair only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use s3s::auth::{S3Auth, SecretKey, SimpleAuth};
use s3s::host::MultiDomain;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Credentials the embedded store checks.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Any access key id, with a secret key equal to it.
    SecretEqualsKey,
    Fixed {
        access_key: String,
        secret_key: String,
    },
    /// No authentication: unsigned requests only (s3s refuses signed ones without an auth
    /// provider). For benchmarks that load the store with plain HTTP tools.
    Anonymous,
}

struct SecretEqualsKey;

#[async_trait::async_trait]
impl S3Auth for SecretEqualsKey {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        Ok(SecretKey::from(access_key))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot use data directory {path}: {reason}")]
    DataDir { path: PathBuf, reason: String },
    #[error("invalid virtual-host domain: {0}")]
    Domain(String),
    #[error("cannot listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// A running embedded store.
pub struct EmbeddedStore {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub task: JoinHandle<()>,
}

impl EmbeddedStore {
    /// Starts s3s-fs on a private loopback port over `data_dir` (created if missing).
    /// `domains` are the base domains for virtual-hosted-style requests (forwarded with their
    /// `Host` intact).
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
        let dir_error = |reason: String| EmbeddedError::DataDir {
            path: data_dir.to_owned(),
            reason,
        };
        std::fs::create_dir_all(data_dir).map_err(|e| dir_error(e.to_string()))?;
        let data_dir = data_dir.canonicalize().map_err(|e| dir_error(e.to_string()))?;
        let fs = s3s_fs::FileSystem::new(&data_dir).map_err(|e| dir_error(format!("{e:?}")))?;

        let mut builder = S3ServiceBuilder::new(fs);
        match credentials {
            Credentials::SecretEqualsKey => builder.set_auth(SecretEqualsKey),
            Credentials::Fixed { access_key, secret_key } => {
                builder.set_auth(SimpleAuth::from_single(access_key, secret_key))
            }
            Credentials::Anonymous => {}
        }
        let mut all_domains: Vec<String> = domains.to_vec();
        if !all_domains.iter().any(|d| d == "localhost") {
            all_domains.push("localhost".into());
        }
        builder.set_host(MultiDomain::new(&all_domains).map_err(|e| EmbeddedError::Domain(format!("{e:?}")))?);
        let service = builder.build();

        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let conn = http1::Builder::new().serve_connection(TokioIo::new(socket), service.clone());
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
