//! Forward-proxy mode and HTTP/2.
//!
//! The app here is the real SDK, configured as an app that talks to AWS itself: no endpoint
//! URL, only a proxy (what `HTTPS_PROXY` gives it) and s3chaos's CA in its trust store. Its
//! requests for `s3.us-east-1.amazonaws.com` reach an in-process S3 server with a certificate
//! for that name (from a CA only s3chaos trusts), through `--connect-to`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use http::Version;
use hyper_util::rt::{TokioExecutor, TokioIo};
use s3chaos::frontend::{Frontend, Running};
use s3chaos::proxy::connect_to::ConnectToTable;
use s3chaos::proxy::forward::Forward;
use s3chaos::proxy::targets::TargetPolicy;
use s3chaos::proxy::tls::PrivateCa;
use s3chaos::proxy::{ServeOptions, Upstream, UpstreamOptions};
use s3chaos::scenario::Source;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

use crate::harness::{ACCESS_KEY, SECRET_KEY};

const AWS_HOST: &str = "s3.us-east-1.amazonaws.com";

/// An S3 server (s3s-fs) behind TLS with a certificate for [`AWS_HOST`] (and the global
/// `s3.amazonaws.com`, which boto3 uses for us-east-1) from its own CA,
/// speaking h2 if `http2` (ALPN) and HTTP/1.1; it records the HTTP version of each request.
pub(crate) struct AwsLikeStore {
    pub addr: SocketAddr,
    pub ca_pem: String,
    versions: Arc<Mutex<Vec<Version>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for AwsLikeStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn start_aws_like_store(http2: bool) -> AwsLikeStore {
    // A CA of its own, which only s3chaos is told to trust (`--upstream-ca`).
    let ca = PrivateCa::generate().unwrap();
    let names = [AWS_HOST, "s3.amazonaws.com", "localhost", "127.0.0.1"].map(str::to_owned);
    let config = ca.server_config(&names).unwrap();
    let config = if http2 {
        config
    } else {
        s3chaos::proxy::tls::http1_only(&config)
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let dir = tempfile::tempdir().unwrap();
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(dir.path()).unwrap());
    builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let versions = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = versions.clone();
    let task = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, service, seen) = (acceptor.clone(), service.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(socket).await else {
                    return;
                };
                let recording = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    seen.lock().unwrap().push(req.version());
                    hyper::service::Service::call(&service, req)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), recording)
                    .await;
            });
        }
    });
    AwsLikeStore {
        addr,
        ca_pem: ca.pem(),
        versions,
        task,
        _dir: dir,
    }
}

struct ForwardProxy {
    handle: Running,
    engine: Arc<s3chaos::engine::Engine>,
    ca_pem: String,
    _ca_file: tempfile::NamedTempFile,
}

/// s3chaos in forward mode (h2 on both sides or not), intercepting `*.amazonaws.com` and
/// `127.0.0.1`, reaching [`AWS_HOST`] at `store`.
fn start_forward_proxy(store: &AwsLikeStore, scenario: &str, http2: bool) -> ForwardProxy {
    let ca_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca_file.path(), &store.ca_pem).unwrap();
    let connect_to = ConnectToTable::new(vec![
        format!("*.amazonaws.com:443:127.0.0.1:{}", store.addr.port())
            .parse()
            .unwrap(),
    ]);
    let options = UpstreamOptions {
        ca_file: Some(ca_file.path().to_owned()),
        connect_to: connect_to.clone(),
        http2,
        ..Default::default()
    };
    let upstream = Upstream::new(&format!("https://{}", store.addr), &options).unwrap();
    let ca = Arc::new(PrivateCa::generate().unwrap());
    let ca_pem = ca.pem();
    let forward = Forward::new(
        ca,
        &["*.amazonaws.com".to_owned(), "127.0.0.1".to_owned()],
        connect_to,
        // The test's servers are all on loopback.
        Arc::new(TargetPolicy::new(vec![
            "127.0.0.1:*".parse().unwrap(),
            "localhost:*".parse().unwrap(),
        ])),
        http2,
    )
    .unwrap();
    let running = Frontend::builder(
        "127.0.0.1:0".parse().unwrap(),
        upstream,
        Source::text(scenario, "forward.yaml"),
    )
    .workers(2)
    .serve_options(ServeOptions {
        forward: Some(Arc::new(forward)),
        http2,
        ..ServeOptions::default()
    })
    .start()
    .unwrap();
    let engine = running.engine.clone();
    let handle = running;
    ForwardProxy {
        handle,
        engine,
        ca_pem,
        _ca_file: ca_file,
    }
}

/// The SDK as an app that talks to AWS: default endpoint for us-east-1, `proxy` as its
/// HTTPS_PROXY/HTTP_PROXY, `trusted` (PEM) as its only CA. Path-style, no retries.
pub(crate) fn app_client(proxy: SocketAddr, trusted: &str, endpoint: Option<String>) -> aws_sdk_s3::Client {
    let trusted = trusted.as_bytes().to_vec();
    let proxy_url = format!("http://{proxy}");
    let http = aws_smithy_http_client::Builder::new().build_with_connector_fn(move |_, _| {
        aws_smithy_http_client::Connector::builder()
            .proxy_config(ProxyConfig::all(&proxy_url).unwrap())
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .tls_context(
                TlsContext::builder()
                    .with_trust_store(TrustStore::empty().with_pem_certificate(trusted.clone()))
                    .build()
                    .unwrap(),
            )
            .build()
    });
    let mut conf = aws_sdk_s3::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            ACCESS_KEY, SECRET_KEY, None, None, "t",
        ))
        .force_path_style(true)
        .http_client(http)
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(20))
                .build(),
        );
    if let Some(endpoint) = endpoint {
        conf = conf.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(conf.build())
}

const SCENARIO: &str = "name: forward
rules:
  - {name: throttle, match: {key: throttled}, fault: {error: SlowDown}}
  - {name: cut, match: {key: reset}, fault: reset}
  - {name: slow, match: {key: slow}, fault: {latency: 10ms}}
";

/// The app reaches "AWS" through s3chaos (HTTPS_PROXY + its CA), byte-exact, and meets the
/// scenario's faults; the upstream hop is h2 or HTTP/1.1 as asked; an app that does not
/// trust s3chaos's CA fails at the handshake and the others go on.
async fn forward_mode_drill(http2: bool) {
    let store = start_aws_like_store(true).await;
    let proxy = start_forward_proxy(&store, SCENARIO, http2);
    let app = app_client(proxy.handle.addr, &proxy.ca_pem, None);

    crate::harness::round_trip(&app, "fwd", 2 * 1024 * 1024 + 3, 41).await;

    let err = app
        .get_object()
        .bucket("fwd")
        .key("throttled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"), "{err:?}");
    let err = app.get_object().bucket("fwd").key("reset").send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "a reset: {err:?}");
    assert!(
        app.head_object().bucket("fwd").key("obj").send().await.is_ok(),
        "the app goes on after the reset"
    );

    // The store saw the requests, over the protocol s3chaos was asked to speak to it.
    let versions = store.versions.lock().unwrap().clone();
    assert!(versions.len() >= 4, "{versions:?}");
    let expected = if http2 { Version::HTTP_2 } else { Version::HTTP_11 };
    assert!(versions.iter().all(|v| *v == expected), "{versions:?}");

    // An app that trusts only the store's own CA: s3chaos's minted certificate is refused.
    let untrusting = app_client(proxy.handle.addr, &store.ca_pem, None);
    let err = untrusting.list_buckets().send().await.unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "not trusted: {err:?}");
    assert!(app.list_buckets().send().await.is_ok(), "the trusting app goes on");
}

#[tokio::test]
async fn forward_mode_intercepts_aws_hosts_over_h2() {
    forward_mode_drill(true).await;
}

#[tokio::test]
async fn forward_mode_intercepts_aws_hosts_over_http1() {
    forward_mode_drill(false).await;
}

/// A host `--intercept` does not name is tunnelled untouched: the app sees the server's own
/// certificate (it trusts only that CA) and no fault, though the key matches a rule. Plain
/// `http://` proxy requests are forwarded, and faulted for an intercepted host.
#[tokio::test]
async fn other_hosts_are_tunnelled_untouched_and_plain_http_is_proxied() {
    let store = start_aws_like_store(true).await;
    let proxy = start_forward_proxy(&store, SCENARIO, true);
    let addr = proxy.handle.addr;

    let direct = app_client(
        addr,
        &store.ca_pem,
        Some(format!("https://localhost:{}", store.addr.port())),
    );
    direct.create_bucket().bucket("tun").send().await.unwrap();
    direct
        .put_object()
        .bucket("tun")
        .key("throttled")
        .body(ByteStream::from_static(b"through the tunnel"))
        .send()
        .await
        .unwrap();
    let got = direct.get_object().bucket("tun").key("throttled").send().await.unwrap();
    assert_eq!(
        &got.body.collect().await.unwrap().into_bytes()[..],
        b"through the tunnel"
    );

    // Plain HTTP: the embedded store on 127.0.0.1 (intercepted).
    let dir = tempfile::tempdir().unwrap();
    let plain_store = crate::harness::start_store(dir.path()).await;
    let http_app = app_client(addr, &proxy.ca_pem, Some(plain_store.url()));
    http_app.create_bucket().bucket("plain").send().await.unwrap();
    http_app
        .put_object()
        .bucket("plain")
        .key("k")
        .body(ByteStream::from_static(b"plain"))
        .send()
        .await
        .unwrap();
    let got = http_app.get_object().bucket("plain").key("k").send().await.unwrap();
    assert_eq!(&got.body.collect().await.unwrap().into_bytes()[..], b"plain");
    let err = http_app
        .get_object()
        .bucket("plain")
        .key("throttled")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("SlowDown"), "{err:?}");
    plain_store.task.abort();

    // A request that names s3chaos itself is served, not sent round again (where the
    // scenario would fault it a second time).
    let own = app_client(addr, &proxy.ca_pem, Some(format!("http://{addr}")));
    let buckets = own.list_buckets().send().await.unwrap();
    assert!(buckets.buckets().iter().any(|b| b.name() == Some("tun")), "{buckets:?}");
    let injected = || {
        let stats = proxy.engine.stats();
        stats.iter().find(|s| s.name == "slow").unwrap().injected
    };
    let err = own.get_object().bucket("tun").key("slow").send().await.unwrap_err();
    assert_eq!(err.code(), Some("NoSuchKey"), "the store's answer: {err:?}");
    assert_eq!(injected(), 1, "delayed once, not once per pass through s3chaos");
}

/// On one HTTP/2 connection (prior-knowledge h2c here), a reset or a blackhole hits one
/// stream and the others carry on; `connection: true` takes the whole connection.
#[tokio::test]
async fn h2_faults_hit_one_stream_unless_they_say_connection() {
    let h = crate::harness::Harness::start(
        "name: h2
rules:
  - {name: slow, match: {key: slow}, fault: {latency: 400ms, error: NoSuchKey}}
  - {name: stream-reset, match: {key: reset}, fault: reset}
  - {name: conn-reset, match: {key: reset-all}, fault: {reset: {connection: true}}}
  - {name: hole, match: {key: hole}, fault: blackhole}
",
    )
    .await;
    let addr = h.proxy;
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
        .await
        .unwrap();
    let driver = tokio::spawn(conn);
    let get = |key: &'static str| {
        let mut sender = sender.clone();
        async move {
            let req = http::Request::get(format!("http://{addr}/b/{key}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            sender.send_request(req).await
        }
    };

    // A slow request in flight while another stream is reset: it still gets its answer.
    let slow = tokio::spawn(get("slow"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let err = get("reset").await.unwrap_err();
    let err = format!("{err:?}");
    assert!(
        err.contains("Reset") && err.contains("INTERNAL_ERROR"),
        "RST_STREAM: {err}"
    );
    let answer = slow.await.unwrap().unwrap();
    assert_eq!(answer.status(), 404);
    assert_eq!(answer.version(), Version::HTTP_2);

    // A blackholed stream never answers; the connection still serves the others.
    let hole = tokio::spawn(get("hole"));
    let answer = get("slow").await.unwrap();
    assert_eq!(answer.status(), 404);
    assert!(!hole.is_finished(), "the blackholed stream is still waiting");
    assert_eq!(h.blackholed(), 1, "one stream held");
    hole.abort();

    // `connection: true`: the stream in flight beside it dies with the connection.
    let slow = tokio::spawn(get("slow"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(get("reset-all").await.is_err());
    assert!(
        slow.await.unwrap().is_err(),
        "the other stream went with the connection"
    );
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(sender.is_closed() || get("slow").await.is_err());
}

/// An intercepted tunnel is a client connection like any other: a phase with
/// `close_connections` drops it (the app's next request on it fails), as it drops plain ones.
#[tokio::test]
async fn a_close_connections_phase_drops_intercepted_tunnels() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PHASES: &str = "name: cut
phases:
  - {name: open, duration: 1s}
  - {name: closed, duration: 3s, close_connections: true}
";
    let store = start_aws_like_store(false).await;
    let proxy = start_forward_proxy(&store, PHASES, false);
    // Start the drill's clock now that the setup is done.
    proxy
        .engine
        .replace(s3chaos::engine::Scenario::parse(PHASES, "p").unwrap());

    // The app's side of a tunnel: CONNECT, then TLS trusting s3chaos's CA.
    let mut tcp = tokio::net::TcpStream::connect(proxy.handle.addr).await.unwrap();
    tcp.write_all(format!("CONNECT {AWS_HOST}:443 HTTP/1.1\r\nHost: {AWS_HOST}:443\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 256];
    let n = tcp.read(&mut head).await.unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    let mut roots = rustls::RootCertStore::empty();
    for cert in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(
        proxy.ca_pem.as_bytes(),
    ) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(AWS_HOST).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    async fn ask<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<String> {
        s.write_all(format!("HEAD /nobucket HTTP/1.1\r\nHost: {AWS_HOST}\r\n\r\n").as_bytes())
            .await?;
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    assert!(
        ask(&mut tls).await.unwrap().starts_with("HTTP/1.1 "),
        "served inside the tunnel"
    );

    for _ in 0..150 {
        if matches!(
            proxy.engine.state(),
            s3chaos::engine::timeline::DrillState::Running { phase: 1, .. }
        ) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the acceptor see the phase (it looks every 50 ms).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = ask(&mut tls).await;
    assert!(
        answer.as_deref().is_ok_and(str::is_empty) || answer.is_err(),
        "the tunnel was dropped: {answer:?}"
    );
}
