//! When a client's FIN means it left, and when it only finished sending.
//!
//! A client may send its whole request and then shut down its write side (`shutdown(SHUT_WR)`,
//! as `nc -N` and some HTTP tools do); HTTP/1.1 allows it and S3 answers. A client whose
//! attempt timeout fires while a fault delays its answer closes its socket: the proxy sees
//! the very same FIN, and the socket cannot tell the two apart (only a write would draw the
//! departed client's RST).
//!
//! So the proxy decides by what it is doing when the FIN comes. hyper is told to allow
//! half-closes (it then stops reading once it has the whole request, and answers). While a
//! fault keeps the client waiting in silence (a delay before the answer, a stall, first-byte
//! latency: a [`Silence`]), the connection's socket is watched for the FIN, and the FIN is
//! the client giving up: the connection is dropped at once and the request logged
//! `client_gone`, which is what a drill measures (the client's timeout). At any other time a
//! FIN is a half-close: the answer is sent, then the connection closed. A client that left
//! while the upstream (not a fault) was slow is then found out by the writes (its RST),
//! except an answer small enough to fit in the socket's buffers, which is logged as sent.
//! A FIN in the middle of an upload is what it always was, a body cut short.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::Interest;
use tokio::sync::Notify;

/// One connection's socket, as far as its FIN goes, and the silences a fault keeps on it.
#[derive(Debug, Default)]
pub struct Departure {
    /// The client socket's descriptor, while the connection owns it (see [`Departure::watch`]).
    socket: Mutex<Option<RawFd>>,
    /// Silences a fault is keeping on the connection right now.
    silences: AtomicUsize,
    changed: Notify,
}

impl Departure {
    /// The connection owns `socket` from now until [`Departure::unwatch`].
    pub fn watch(&self, socket: &impl AsRawFd) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = Some(socket.as_raw_fd());
    }

    /// The socket is about to be closed or handed on: it is not watched any more.
    pub fn unwatch(&self) {
        *self.socket.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Ends when the client's FIN (or RST) arrives during a fault's silence: it left.
    pub async fn departed(&self) {
        loop {
            self.until(|silences| silences > 0).await;
            match self.duplicate() {
                Some(socket) => {
                    tokio::select! {
                        () = fin(socket) => return,
                        () = self.until(|silences| silences == 0) => {}
                    }
                }
                // Out of descriptors (or the socket is gone): the silence just runs its course.
                None => self.until(|silences| silences == 0).await,
            }
        }
    }

    /// A descriptor of its own for the socket, so it can be watched beside hyper's.
    fn duplicate(&self) -> Option<OwnedFd> {
        let socket = self.socket.lock().unwrap_or_else(|p| p.into_inner());
        let fd = (*socket)?;
        // SAFETY: `fd` is open: the connection registered it with `watch` while it owns the
        // socket and clears it with `unwatch`, under this lock, before the socket is closed;
        // the borrow lasts only for the `dup` below.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        borrowed.try_clone_to_owned().ok()
    }

    async fn until(&self, done: impl Fn(usize) -> bool) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            // Registered before the check, so a change between the two is not missed.
            changed.as_mut().enable();
            if done(self.silences.load(Ordering::Acquire)) {
                return;
            }
            changed.await;
        }
    }
}

/// Ends when the peer has shut down its sending side (epoll's `RDHUP`) or the socket failed.
/// Data the client sent and hyper has not read (a pipelined request) is left where it is.
async fn fin(socket: OwnedFd) {
    let Ok(socket) = tokio::net::TcpStream::from_std(std::net::TcpStream::from(socket)) else {
        return std::future::pending().await;
    };
    loop {
        let Ok(ready) = socket.ready(Interest::READABLE).await else {
            return;
        };
        if ready.is_read_closed() {
            return;
        }
        // Readable only because of data: forget this readiness without reading (an I/O that
        // "would block" clears it), and wait for the next event.
        let _ = socket.try_io(Interest::READABLE, || {
            Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
        });
    }
}

/// A fault keeping the client waiting in silence, for as long as it lives.
#[derive(Debug)]
pub struct Silence(Arc<Departure>);

impl Silence {
    pub fn new(departure: Arc<Departure>) -> Silence {
        departure.silences.fetch_add(1, Ordering::AcqRel);
        departure.changed.notify_waiters();
        Silence(departure)
    }
}

impl Drop for Silence {
    fn drop(&mut self) {
        self.0.silences.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn pair() -> (tokio::net::TcpStream, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        (client, server)
    }

    async fn departs_within(d: &Departure, ms: u64) -> bool {
        tokio::time::timeout(Duration::from_millis(ms), d.departed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_fin_is_a_departure_only_during_a_silence() {
        let (mut client, server) = pair().await;
        let d = Arc::new(Departure::default());
        d.watch(&server);
        client.shutdown().await.unwrap();
        assert!(!departs_within(&d, 50).await, "a FIN with no silence is a half-close");
        let silence = Silence::new(d.clone());
        assert!(departs_within(&d, 1000).await, "a FIN during a silence is a departure");
        drop(silence);
        assert!(!departs_within(&d, 50).await);
    }

    /// The FIN arrives after data hyper has not read: still seen, and the data stays.
    #[tokio::test]
    async fn a_fin_behind_unread_data_is_seen_and_the_data_left_in_place() {
        let (mut client, mut server) = pair().await;
        let d = Arc::new(Departure::default());
        d.watch(&server);
        let _silence = Silence::new(d.clone());
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(!departs_within(&d, 100).await, "data alone is not a departure");
        client.shutdown().await.unwrap();
        assert!(departs_within(&d, 1000).await);
        let mut buf = Vec::new();
        server.read_to_end(&mut buf).await.unwrap();
        assert_eq!(buf, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn an_unwatched_socket_never_departs() {
        let (mut client, server) = pair().await;
        let d = Arc::new(Departure::default());
        d.watch(&server);
        d.unwatch();
        let _silence = Silence::new(d.clone());
        client.shutdown().await.unwrap();
        assert!(!departs_within(&d, 100).await);
    }
}
