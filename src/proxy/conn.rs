//! One accepted client connection: the socket hyper serves, which carries out the fate a
//! fault set on the connection's [`ConnControl`] (see [`crate::faults::fate`]) when hyper
//! lets go of it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub use crate::faults::fate::{ConnControl, Counted, Fate, Hold, Keep};
/// The client socket as hyper sees it. Once a fate is set, writes fail and shutdown is a
/// no-op, so hyper can neither answer nor send a FIN behind the fault's back.
pub struct ClientStream {
    inner: Option<TcpStream>,
    control: Arc<ConnControl>,
}

impl ClientStream {
    pub fn new(inner: TcpStream, control: Arc<ConnControl>) -> ClientStream {
        // Watched for the client's FIN while a fault keeps it waiting (`faults::departure`).
        control.departure().watch(&inner);
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
        self.control.fate() != Fate::Normal
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
        self.control.departure().unwatch();
        match self.control.fate() {
            Fate::Reset => {
                // SO_LINGER 0 makes close() send an RST instead of a FIN.
                let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
            Fate::Blackhole => match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    let counted = Counted::new(self.control.held_counter());
                    let keep = self.control.take_keep();
                    rt.spawn(hold(stream, counted, keep));
                }
                Err(_) => drop(stream),
            },
            Fate::Normal => {}
        }
    }
}

/// Holds a blackholed socket: reads and discards whatever the client sends, answers nothing,
/// and lets go when the client closes or resets the connection (or the worker shuts down).
async fn hold(mut stream: TcpStream, _counted: Counted, mut keep: Option<Keep>) {
    let mut buf = [0u8; 512];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    if let Some(keep) = keep.as_mut() {
        keep.client_left();
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
