//! The one clock faults wait on: a sub-millisecond timer in production, tokio's clock in
//! tests.
//!
//! tokio's timer wheel has a 1 ms tick and rounds every deadline up, and the runtime's
//! `epoll_wait` rounds its timeout up to a whole millisecond too: measured here, a 50 ms
//! `tokio::time::sleep` ends after 52 ms. A chaos drill that promises "50 ms" should deliver
//! 50 ms, so latency faults sleep on this timer instead: one thread parks on a futex with a
//! nanosecond timeout until the earliest deadline and wakes the waiting tasks. Only faulted
//! requests use it; it costs nothing otherwise.

use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

struct Entry {
    deadline: Instant,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.deadline.cmp(&other.deadline)
    }
}

struct Timer {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    thread: Thread,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<&'static Timer>();
        let handle = std::thread::Builder::new()
            .name("s3chaos-timer".into())
            .spawn(move || run(rx.recv().expect("the timer is handed over at start")))
            .expect("spawning the timer thread");
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(BinaryHeap::new()),
            thread: handle.thread().clone(),
        }));
        tx.send(timer).expect("the timer thread waits for its state");
        timer
    })
}

fn run(timer: &'static Timer) {
    loop {
        let next = {
            let mut queue = timer.queue.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            while queue.peek().is_some_and(|Reverse(e)| e.deadline <= now) {
                if let Some(Reverse(e)) = queue.pop() {
                    e.waker.wake();
                }
            }
            queue.peek().map(|Reverse(e)| e.deadline)
        };
        match next {
            Some(deadline) => std::thread::park_timeout(deadline.saturating_duration_since(Instant::now())),
            None => std::thread::park(),
        }
    }
}

thread_local! {
    static TOKIO_CLOCK: Cell<bool> = const { Cell::new(false) };
}

/// Makes faults on this thread wait on tokio's clock instead of the precise timer, until the
/// guard is dropped. The time seam for tests: under `tokio::time::pause()` (a
/// current-thread runtime) a fault's waits then take no real time and happen in order.
pub fn use_tokio_clock() -> TokioClockGuard {
    TOKIO_CLOCK.with(|c| c.set(true));
    TokioClockGuard(())
}

/// Restores the precise timer when dropped (see [`use_tokio_clock`]).
pub struct TokioClockGuard(());

impl Drop for TokioClockGuard {
    fn drop(&mut self) {
        TOKIO_CLOCK.with(|c| c.set(false));
    }
}

fn tokio_clock() -> bool {
    TOKIO_CLOCK.with(Cell::get)
}

/// Now, on the clock faults wait on.
pub fn now() -> Instant {
    if tokio_clock() {
        tokio::time::Instant::now().into_std()
    } else {
        Instant::now()
    }
}

/// Completes at `deadline` (never before), typically within 0.1 ms after it.
pub fn sleep_until(deadline: Instant) -> Sleep {
    if tokio_clock() {
        return Sleep::Tokio(Box::pin(tokio::time::sleep_until(deadline.into())));
    }
    Sleep::Precise {
        deadline,
        registered: false,
    }
}

pub fn sleep(duration: Duration) -> Sleep {
    // Saturates: a wait too long to add to now (`for: 1000000000y`) is as good as forever.
    match now().checked_add(duration) {
        Some(deadline) => sleep_until(deadline),
        None => sleep_until(now() + Duration::from_secs(100 * 365 * 24 * 3600)),
    }
}

/// A wait on the precise timer, or (in tests) on tokio's clock.
pub enum Sleep {
    Precise { deadline: Instant, registered: bool },
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let (deadline, registered) = match self.get_mut() {
            Sleep::Tokio(sleep) => return sleep.as_mut().poll(cx),
            Sleep::Precise { deadline, registered } => (*deadline, registered),
        };
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        // Register once: the task is woken at the deadline and polls again. (A task that
        // moves to another executor in between is not something the proxy does.)
        if !*registered {
            *registered = true;
            let timer = timer();
            let earliest = {
                let mut queue = timer.queue.lock().unwrap_or_else(|e| e.into_inner());
                let earliest = queue.peek().is_none_or(|Reverse(e)| deadline < e.deadline);
                queue.push(Reverse(Entry {
                    deadline,
                    waker: cx.waker().clone(),
                }));
                earliest
            };
            if earliest {
                timer.thread.unpark();
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn never_early_and_close_to_the_deadline() {
        for ms in [1u64, 7, 30] {
            let start = Instant::now();
            sleep(Duration::from_millis(ms)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(ms), "{ms} ms sleep took {took:?}");
        }
        // Many concurrent sleeps, in any order, all complete.
        let handles: Vec<_> = (0..50u64)
            .rev()
            .map(|i| tokio::spawn(sleep(Duration::from_millis(i % 7))))
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn the_tokio_clock_seam_takes_no_real_time() {
        let _clock = use_tokio_clock();
        let (real, virtual_start) = (Instant::now(), now());
        sleep(Duration::from_secs(3600)).await;
        assert!(now() - virtual_start >= Duration::from_secs(3600));
        assert!(
            real.elapsed() < Duration::from_secs(5),
            "an hour of fault time, no hour of ours"
        );
    }
}
