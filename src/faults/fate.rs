//! A connection's fate: what a fault asks to happen to the client connection it acts on.
//!
//! hyper owns the socket while it serves the connection, so a fault cannot touch it directly.
//! Instead the fault marks the connection's [`ConnControl`] and fails the request; hyper then
//! drops the connection, and the proxy's client stream carries out the fate when it is
//! dropped: an RST (`SO_LINGER 0`) for a reset, or handing the socket to a small task that
//! holds it open, unanswered, for a blackhole. No other layer special-cases a fault kind.
//!
//! An HTTP/2 connection carries many requests at once, so there a reset or blackhole hits one
//! stream: the request fails (hyper answers `RST_STREAM`) or is never answered, and the
//! connection's other streams carry on. A fault that says `connection: true` takes the whole
//! connection instead: the serving task is told to drop it ([`ConnControl::killed`]), and
//! the stream's `Drop` carries out the fate as on HTTP/1.1.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::departure::{Departure, Silence};

/// What the proxy does with the socket when hyper lets go of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Close it as usual.
    Normal,
    /// Abort with a TCP RST.
    Reset,
    /// Hold it open, unanswered, until the client leaves.
    Blackhole,
}

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
    /// The client's FIN, and whether a fault's silence makes it a departure.
    departure: Arc<Departure>,
    /// Numbered from 1 in the order connections were made (the event log's `conn`).
    id: u64,
    /// When its last request ended, microseconds after [`epoch`] (0: none has yet).
    answered_at: AtomicU64,
}

/// The process's clock origin for [`ConnControl`]'s idle times.
fn epoch() -> std::time::Instant {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(std::time::Instant::now)
}

/// Connections made so far, for their ids.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// What is left for the caller of [`ConnControl::blackhole`] to do.
pub enum Hold {
    /// The connection is taken: fail the request, and its socket is held when hyper lets go.
    Connection,
    /// Only this request's HTTP/2 stream: never answer it ([`ConnControl::hold_stream`]).
    Stream(Option<Keep>),
}

/// Something a held connection keeps alive until it is released.
pub type Keep = Box<dyn Held>;

/// What a blackhole holds: told when the client leaves; dropped without that, the proxy let
/// go first (it stopped while the client was still waiting).
pub trait Held: std::fmt::Debug + Send {
    fn client_left(&mut self) {}
}

impl ConnControl {
    pub fn new(held: Arc<AtomicUsize>) -> ConnControl {
        ConnControl {
            fate: AtomicU8::new(NORMAL),
            held,
            keep: Mutex::new(None),
            multiplexed: AtomicBool::new(false),
            kill: tokio::sync::Notify::new(),
            departure: Arc::default(),
            id: CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1,
            answered_at: AtomicU64::new(0),
        }
    }

    /// A request on this connection has ended (its answer sent, or the request failed).
    pub fn answered(&self, at: std::time::Instant) {
        let micros = at.saturating_duration_since(epoch()).as_micros() as u64;
        self.answered_at.store(micros.max(1), Ordering::Relaxed);
    }

    /// How long the connection had been idle when a request arrived at `now`: since its
    /// previous request ended; `None` for its first request.
    pub fn idle_at(&self, now: std::time::Instant) -> Option<std::time::Duration> {
        let last = self.answered_at.load(Ordering::Relaxed);
        (last != 0).then(|| {
            now.saturating_duration_since(epoch())
                .saturating_sub(std::time::Duration::from_micros(last))
        })
    }

    /// This connection's number, for the event log.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Puts what the held socket keeps alive in place after the fact (the request's own
    /// context, so that it ends when the client leaves the blackhole).
    pub fn keep_while_held(&self, keep: Keep) {
        *self.keep.lock().unwrap_or_else(|e| e.into_inner()) = Some(keep);
    }

    /// The client's FIN and what it means; see [`super::departure`].
    pub fn departure(&self) -> &Arc<Departure> {
        &self.departure
    }

    /// A fault keeps the client waiting in silence until the guard is dropped: a FIN from
    /// the client meanwhile means it left.
    pub fn silence(&self) -> Silence {
        Silence::new(self.departure.clone())
    }

    /// Notes that the connection speaks HTTP/2 (its requests say so).
    pub fn set_multiplexed(&self) {
        self.multiplexed.store(true, Ordering::Relaxed);
    }

    pub fn is_multiplexed(&self) -> bool {
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

    /// What should happen to the socket when hyper lets go of it.
    pub fn fate(&self) -> Fate {
        match self.fate.load(Ordering::Acquire) {
            RESET => Fate::Reset,
            BLACKHOLE => Fate::Blackhole,
            _ => Fate::Normal,
        }
    }

    /// The blackholed connection's keep-alive, for the task that holds the socket.
    pub fn take_keep(&self) -> Option<Keep> {
        self.keep.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// The proxy's count of held connections, for the task that holds the socket.
    pub fn held_counter(&self) -> Arc<AtomicUsize> {
        self.held.clone()
    }
}

/// One held connection or stream in the proxy's count, for as long as it lives.
pub struct Counted(Arc<AtomicUsize>);

impl Counted {
    pub fn new(held: Arc<AtomicUsize>) -> Counted {
        held.fetch_add(1, Ordering::Relaxed);
        Counted(held)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
