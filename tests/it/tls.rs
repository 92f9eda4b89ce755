//! An `https://` upstream: a real S3 server behind rustls with a private CA, reached through
//! s3chaos with `--upstream-ca` (here `UpstreamOptions::ca_file`).

use std::net::SocketAddr;

use aws_sdk_s3::error::ProvideErrorMetadata;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use crate::harness::{ACCESS_KEY, SECRET_KEY, client_for, round_trip, start_proxy};

struct TlsStore {
    addr: SocketAddr,
    ca_pem: String,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// s3s-fs behind TLS, with a certificate for 127.0.0.1 issued by a fresh private CA.
async fn start_tls_store() -> TlsStore {
    // A CA of its own, which s3chaos does not know (the library's generator, used here as
    // any private CA would be). The store speaks HTTP/1.1 only.
    let ca = s3chaos::proxy::tls::PrivateCa::generate().unwrap();
    let config = s3chaos::proxy::tls::http1_only(&ca.server_config(&["127.0.0.1".to_owned()]).unwrap());
    let acceptor = tokio_rustls::TlsAcceptor::from(config);

    let dir = tempfile::tempdir().unwrap();
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(dir.path()).unwrap());
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, service) = (acceptor.clone(), service.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(socket).await {
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
                }
            });
        }
    });
    TlsStore {
        addr,
        ca_pem: ca.pem(),
        task,
        _dir: dir,
    }
}

#[tokio::test]
async fn https_upstream_trusted_through_upstream_ca() {
    let store = start_tls_store().await;
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &store.ca_pem).unwrap();
    let url = format!("https://{}", store.addr);

    let options = s3chaos::proxy::UpstreamOptions {
        ca_file: Some(ca_file.path().to_owned()),
        ..Default::default()
    };
    let upstream = s3chaos::proxy::Upstream::new(&url, &options).unwrap();
    let (addr, _engine, task) = start_proxy(upstream, "name: none\n").await;
    let c = client_for(addr, |b| b);
    round_trip(&c, "tls-bkt", 1024 * 1024 + 5, 5).await;
    drop(task);

    // Without the CA the upstream's certificate is not trusted: an S3-style 503, no crash.
    let upstream = s3chaos::proxy::Upstream::new(&url, &Default::default()).unwrap();
    let (addr, _engine, task) = start_proxy(upstream, "name: none\n").await;
    let c = client_for(addr, |b| crate::harness::single_attempt(b, None));
    let err = c.list_buckets().send().await.unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"));
    drop(task);
    store.task.abort();
}

#[test]
fn upstream_ca_file_errors_are_clear() {
    let missing = s3chaos::proxy::UpstreamOptions {
        ca_file: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let err = s3chaos::proxy::Upstream::new("https://127.0.0.1:1", &missing)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("cannot read the upstream CA file /nonexistent/ca.pem"),
        "{err}"
    );
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "hello").unwrap();
    let opts = s3chaos::proxy::UpstreamOptions {
        ca_file: Some(not_pem.path().to_owned()),
        ..Default::default()
    };
    let err = s3chaos::proxy::Upstream::new("https://127.0.0.1:1", &opts)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");
    let err = s3chaos::proxy::Upstream::new("http://127.0.0.1:1/prefix", &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("must not have a path"), "{err}");
}

/// An SDK client for `https://{addr}` that trusts `ca_pem` (and nothing else).
fn https_client(addr: SocketAddr, ca_pem: &[u8]) -> aws_sdk_s3::Client {
    https_client_with_keys(addr, ca_pem, ACCESS_KEY, SECRET_KEY)
}

/// [`https_client`] with other credentials.
pub fn https_client_with_keys(addr: SocketAddr, ca_pem: &[u8], key: &str, secret: &str) -> aws_sdk_s3::Client {
    use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(TrustStore::empty().with_pem_certificate(ca_pem.to_vec()))
                .build()
                .unwrap(),
        )
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(key, secret, None, None, "t"))
        .endpoint_url(format!("https://{addr}"))
        .force_path_style(true)
        .http_client(http)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The TLS listener (`--tls-self-signed`): an SDK that trusts the generated CA talks to
/// s3chaos over https, byte-exact, and meets the scenario's faults as over plain HTTP (an
/// S3 error, and a TCP reset under TLS); a client that does not trust the CA fails at the
/// handshake, and the others go on unaffected.
#[tokio::test]
async fn the_tls_listener_serves_clients_that_trust_its_generated_ca() {
    use s3chaos::proxy::{ServeOptions, Upstream, UpstreamOptions};
    let dir = tempfile::tempdir().unwrap();
    let store = crate::harness::start_store(&dir.path().join("data")).await;
    let ca_path = dir.path().join("ca.pem");
    let tls = s3chaos::proxy::tls::self_signed(&["127.0.0.1".to_owned(), "localhost".to_owned()], &ca_path).unwrap();
    let upstream = Upstream::new(&store.url(), &UpstreamOptions::default()).unwrap();
    let scenario = s3chaos::scenario::Source::text(
        "name: tls\nrules:\n  - {name: throttle, match: {key: throttled}, fault: {error: SlowDown}}\n  - {name: cut, match: {key: reset}, fault: reset}\n",
        "tls.yaml",
    );
    let handle = s3chaos::frontend::Frontend::builder("127.0.0.1:0".parse().unwrap(), upstream, scenario)
        .workers(2)
        .serve_options(ServeOptions {
            tls: Some(tls),
            ..ServeOptions::default()
        })
        .start()
        .unwrap();
    let addr = handle.addr;
    let ca = std::fs::read(&ca_path).unwrap();
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));

    let c = https_client(addr, &ca);
    round_trip(&c, "tls", 3 * 1024 * 1024 + 5, 21).await;

    let err = c.get_object().bucket("tls").key("throttled").send().await.unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"));
    let err = c.get_object().bucket("tls").key("reset").send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_s3::error::SdkError::DispatchFailure(_)),
        "a reset is a dispatch failure: {err:?}"
    );

    // A client with another trust store: refused at the handshake, cleanly.
    let stranger = start_tls_store().await;
    let untrusting = https_client(addr, stranger.ca_pem.as_bytes());
    let err = untrusting.list_buckets().send().await.unwrap_err();
    assert!(
        matches!(err, aws_sdk_s3::error::SdkError::DispatchFailure(_)),
        "not trusted: {err:?}"
    );
    assert!(c.list_buckets().send().await.is_ok(), "the trusting client goes on");
    stranger.task.abort();
    drop(handle);
    store.task.abort();
}
