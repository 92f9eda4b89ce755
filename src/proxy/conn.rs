//! One accepted client connection, and the control a fault uses to decide its fate.
//!
//! hyper owns the socket while it serves the connection, so a fault cannot touch it directly.
//! Instead the fault marks the connection's [`ConnControl`] and fails the request; hyper then
//! drops the connection, and [`ClientStream`]'s `Drop` carries out the fate: an RST
//! (`SO_LINGER 0`) for a reset, or handing the socket to a small task that holds it open,
//! unanswered, for a blackhole. No other layer special-cases a fault kind.
//!
//! An HTTP/2 connection carries many requests at once, so there a reset or blackhole hits one
//! stream: the request fails (hyper answers `RST_STREAM`) or is never answered, and the
//! connection's other streams carry on. A fault that says `connection: true` takes the whole
//! connection instead: the serving task is told to drop it ([`ConnControl::killed`]), and
//! `Drop` carries out the fate as on HTTP/1.1.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

const NORMAL: u8 = 0;
const RESET: u8 = 1;
const BLACKHOLE: u8 = 2;

/// What should happen to a connection when hyper lets go of it.
#[derive(Debug, Default)]
pub struct ConnControl {
    fate: AtomicU8,
    /// The proxy's count of connections held by blackholes.
    held: Arc<AtomicUsize>,
    /// Kept alive as long as a blackhole holds the socket (the fault's engine decision).
    keep: Mutex<Option<Keep>>,
    /// The connection speaks HTTP/2: its requests are streams that can fail one by one.
    multiplexed: AtomicBool,
    /// Tells the serving task to drop an HTTP/2 connection a fault has taken over.
    kill: tokio::sync::Notify,
}

/// What is left for the caller of [`ConnControl::blackhole`] to do.
pub enum Hold {
    /// The connection is taken: fail the request, and its socket is held when hyper lets go.
    Connection,
    /// Only this request's HTTP/2 stream: never answer it ([`ConnControl::hold_stream`]).
    Stream(Option<Keep>),
}

/// Something a held connection keeps alive until it is released.
pub type Keep = Box<dyn std::fmt::Debug + Send>;

impl ConnControl {
    pub fn new(held: Arc<AtomicUsize>) -> ConnControl {
        ConnControl {
            fate: AtomicU8::new(NORMAL),
            held,
            keep: Mutex::new(None),
            multiplexed: AtomicBool::new(false),
            kill: tokio::sync::Notify::new(),
        }
    }

    /// Notes that the connection speaks HTTP/2 (its requests say so).
    pub fn set_multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Relaxed);
    }

    fn is_multiplexed(&self) -> bool {
        self.multiplexed.load(Ordering::Relaxed)
    }

    /// Abort with a TCP RST; nothing more is written. On HTTP/2, unless `connection`, only the
    /// stream is reset: by the error the caller returns, which hyper turns into `RST_STREAM`.
    pub fn reset(&self, connection: bool) {
        if !self.is_multiplexed() {
            self.fate.store(RESET, Ordering::Release);
        } else if connection {
            self.fate.store(RESET, Ordering::Release);
            self.kill.notify_one();
        }
    }

    /// Keep the socket open without ever answering, until the client closes it; `keep` lives
    /// as long as the socket is held. On HTTP/2, unless `connection`, only the stream is held,
    /// by the caller.
    pub fn blackhole(&self, connection: bool, keep: Option<Keep>) -> Hold {
        if self.is_multiplexed() && !connection {
            return Hold::Stream(keep);
        }
        *self.keep.lock().unwrap_or_else(|e| e.into_inner()) = keep;
        self.fate.store(BLACKHOLE, Ordering::Release);
        if self.is_multiplexed() {
            self.kill.notify_one();
        }
        Hold::Connection
    }

    /// Never answers a blackholed HTTP/2 stream: pends, counted among the held, until hyper
    /// drops it (the client resets the stream or closes the connection).
    pub async fn hold_stream(&self, keep: Option<Keep>) {
        let _counted = Counted::new(self.held.clone());
        std::future::pending::<()>().await;
        drop(keep);
    }

    /// Completes when a fault has taken the whole HTTP/2 connection: the serving task then
    /// drops it, and `Drop` carries out the fate.
    pub async fn killed(&self) {
        self.kill.notified().await;
    }

    fn fate(&self) -> u8 {
        self.fate.load(Ordering::Acquire)
    }
}

/// The client socket as hyper sees it. Once a fate is set, writes fail and shutdown is a
/// no-op, so hyper can neither answer nor send a FIN behind the fault's back.
pub struct ClientStream {
    inner: Option<TcpStream>,
    control: Arc<ConnControl>,
}

impl ClientStream {
    pub fn new(inner: TcpStream, control: Arc<ConnControl>) -> ClientStream {
        ClientStream {
            inner: Some(inner),
            control,
        }
    }

    /// The first bytes the client sent, left in place for hyper to read.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.inner {
            Some(stream) => stream.peek(buf).await,
            None => Ok(0),
        }
    }

    fn inner(&mut self) -> &mut TcpStream {
        self.inner.as_mut().expect("the socket is only taken in Drop")
    }

    fn fated(&self) -> bool {
        self.control.fate() != NORMAL
    }
}

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection taken over by an injected fault",
    )
}

impl AsyncRead for ClientStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.inner()).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.fated() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(self.inner()).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.fated() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(self.inner()).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fated() {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(self.inner()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fated() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(self.inner()).poll_shutdown(cx)
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else {
            return;
        };
        match self.control.fate() {
            RESET => {
                // SO_LINGER 0 makes close() send an RST instead of a FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            BLACKHOLE => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let counted = Counted::new(self.control.held.clone());
                    let keep = self.control.keep.lock().unwrap_or_else(|e| e.into_inner()).take();
                    rt.spawn(hold(stream, counted, keep));
                }
                Err(_) => drop(stream),
            },
            _ => {}
        }
    }
}

/// Holds a blackholed socket: reads and discards whatever the client sends, answers nothing,
/// and lets go when the client closes or resets the connection (or the worker shuts down).
async fn hold(mut stream: TcpStream, _counted: Counted, _keep: Option<Keep>) {
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// One held connection or stream in the proxy's count, for as long as it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(held: Arc<AtomicUsize>) -> Counted {
        held.fetch_add(1, Ordering::Relaxed);
        Counted(held)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client connection as hyper serves it: plain, or TLS on top of the same
/// [`ClientStream`], so a fault's fate reaches the TCP socket either way.
pub enum ClientIo {
    Plain(ClientStream),
    Tls(Box<tokio_rustls::server::TlsStream<ClientStream>>),
}

impl AsyncRead for ClientIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Plain(s) => s.is_write_vectored(),
            ClientIo::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
