//! The upstream refusing, resetting, hanging and restarting mid-download: clients get an
//! S3-style 503 (or the proxy's upstream timeout), never a hang or a crash; the proxy
//! recovers the moment the upstream does; no descriptor or task is left behind.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use s3chaos::embedded::EmbeddedStore;
use s3chaos::proxy::{ProxyHandle, Upstream, UpstreamOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::{client_for, random_bytes, single_attempt, start_proxy, start_store};
use crate::{ONE_AT_A_TIME, open_fds};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Pass bytes both ways to the store.
    Forward,
    /// Accept, then reset the connection (RST).
    Reset,
    /// Accept, read, never answer.
    Hang,
}

/// A TCP front for the store that misbehaves on command, like a failing S3 endpoint (or
/// the load balancer in front of one).
struct Front {
    addr: SocketAddr,
    store: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    listener: Option<JoinHandle<()>>,
}

impl Front {
    async fn start(store: SocketAddr) -> Front {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut front = Front {
            addr: listener.local_addr().unwrap(),
            store,
            mode: Arc::new(Mutex::new(Mode::Forward)),
            connections: Arc::default(),
            listener: None,
        };
        front.serve(listener);
        front
    }

    fn serve(&mut self, listener: TcpListener) {
        let (mode, connections, store) = (self.mode.clone(), self.connections.clone(), self.store);
        self.listener = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mode = *mode.lock().unwrap();
                let task = tokio::spawn(async move {
                    match mode {
                        Mode::Forward => {
                            if let Ok(mut upstream) = TcpStream::connect(store).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                            }
                        }
                        Mode::Reset => {
                            let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
                            drop(client);
                        }
                        Mode::Hang => {
                            let _ = tokio::io::copy(&mut client, &mut tokio::io::sink()).await;
                            std::future::pending::<()>().await;
                        }
                    }
                });
                let mut open = connections.lock().unwrap();
                open.retain(|t| !t.is_finished());
                open.push(task);
            }
        }));
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Drops every connection it has (both sides close), as a restarting server does.
    fn drop_connections(&self) {
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Nothing listens any more: connection refused.
    async fn stop_listening(&mut self) {
        if let Some(listener) = self.listener.take() {
            listener.abort();
            let _ = listener.await;
        }
        self.drop_connections();
    }

    async fn listen_again(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

struct Setup {
    front: Front,
    proxy: SocketAddr,
    handle: s3chaos::frontend::Running,
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(1);

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = start_store(dir.path()).await;
    let front = Front::start(store.addr).await;
    let options = UpstreamOptions {
        connect_timeout: Duration::from_secs(1),
        response_timeout: UPSTREAM_TIMEOUT,
        ..UpstreamOptions::default()
    };
    let upstream = Upstream::new(&format!("http://{}", front.addr), &options).unwrap();
    let (proxy, _engine, handle) = start_proxy(upstream, "name: none\n").await;
    Setup {
        front,
        proxy,
        handle,
        store,
        _dir: dir,
    }
}

fn client(proxy: SocketAddr) -> aws_sdk_s3::Client {
    client_for(proxy, |b| single_attempt(b, Some(Duration::from_secs(10))))
}

/// `n` GETs, each through a client of its own, that must all fail as S3 fails when its
/// front end is down: 503 ServiceUnavailable with a request id, in bounded time.
async fn all_answered_503(proxy: SocketAddr, n: usize, what: &str) {
    for i in 0..n {
        let started = Instant::now();
        let err = client(proxy)
            .get_object()
            .bucket("trouble")
            .key("k")
            .send()
            .await
            .expect_err(what);
        assert_eq!(err.code(), Some("ServiceUnavailable"), "{what}, request {i}: {err:?}");
        let resp = err.raw_response().expect("an HTTP answer");
        assert_eq!(resp.status().as_u16(), 503);
        assert!(resp.headers().get("x-amz-request-id").is_some());
        assert!(
            started.elapsed() < UPSTREAM_TIMEOUT + Duration::from_secs(3),
            "{what}: answered after {:?}",
            started.elapsed()
        );
    }
}

async fn all_served(proxy: SocketAddr, n: usize, body: &[u8], what: &str) {
    for i in 0..n {
        let got = client(proxy)
            .get_object()
            .bucket("trouble")
            .key("k")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}, request {i}: {e:?}"));
        assert!(
            got.body.collect().await.unwrap().into_bytes() == body,
            "{what}: other bytes"
        );
    }
}

/// Descriptors and proxy tasks once the clients are gone and the proxy has closed their
/// connections.
async fn settled_counts(handle: &ProxyHandle) -> (usize, usize) {
    for _ in 0..100 {
        if handle.open_connections() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    (open_fds(), handle.alive_tasks())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusing_resetting_hanging_and_restarting_is_contained() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let mut s = setup().await;
    let body = random_bytes(64 * 1024, 3);
    // The objects go in directly: the proxy's 1 s upstream timeout is for the hang below, not
    // for a 16 MiB upload to a debug-built store on a busy machine.
    let c = client(s.store.addr);
    c.create_bucket().bucket("trouble").send().await.unwrap();
    c.put_object()
        .bucket("trouble")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .unwrap();
    let big = random_bytes(16 * 1024 * 1024, 4);
    c.put_object()
        .bucket("trouble")
        .key("big")
        .body(ByteStream::from(big.clone()))
        .send()
        .await
        .unwrap();
    drop(c);
    all_served(s.proxy, 10, &body, "warm-up").await;
    let (fds_before, tasks_before) = settled_counts(&s.handle.proxy).await;

    // Refused: nothing listens at the upstream address.
    s.front.stop_listening().await;
    all_answered_503(s.proxy, 5, "upstream refusing connections").await;
    s.front.listen_again().await;
    all_served(s.proxy, 3, &body, "after the refusals").await;

    // Reset: the upstream accepts and resets.
    s.front.set(Mode::Reset);
    s.front.drop_connections();
    all_answered_503(s.proxy, 5, "upstream resetting connections").await;
    s.front.set(Mode::Forward);
    all_served(s.proxy, 3, &body, "after the resets").await;

    // Hang: the upstream takes the request and never answers; the proxy's upstream timeout
    // answers for it, for several clients at once.
    s.front.set(Mode::Hang);
    s.front.drop_connections();
    let hung: Vec<_> = (0..4)
        .map(|_| tokio::spawn(all_answered_503(s.proxy, 1, "upstream hanging")))
        .collect();
    for h in hung {
        h.await.unwrap();
    }
    s.front.set(Mode::Forward);
    s.front.drop_connections();
    all_served(s.proxy, 3, &body, "after the hang").await;

    // Restart in the middle of a download: the client's body ends early with an error, at
    // once, rather than waiting for bytes that will never come.
    let got = client(s.proxy)
        .get_object()
        .bucket("trouble")
        .key("big")
        .send()
        .await
        .unwrap();
    let mut stream = got.body;
    let first = stream.try_next().await.unwrap().expect("a first chunk");
    assert!(!first.is_empty());
    s.front.drop_connections();
    let started = Instant::now();
    let mut received = first.len();
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await {
            Ok(Ok(Some(chunk))) => received += chunk.len(),
            Ok(Ok(None)) => break Ok(received),
            Ok(Err(e)) => break Err(e),
            Err(_) => panic!("the download hung after the upstream went away ({received} bytes)"),
        }
    };
    assert!(
        ended.is_err() || received < big.len(),
        "the whole object arrived although the upstream went away"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // Back to normal, and nothing left behind.
    all_served(s.proxy, 10, &body, "after the restart").await;
    let (fds_after, tasks_after) = settled_counts(&s.handle.proxy).await;
    // Slack for pooled upstream connections (each one socket and one task) that a different
    // interleaving keeps idle.
    assert!(
        fds_after <= fds_before + 4,
        "descriptors: {fds_before} before the trouble, {fds_after} after"
    );
    assert!(
        tasks_after <= tasks_before + 4,
        "proxy tasks: {tasks_before} before the trouble, {tasks_after} after"
    );
}
