//! A sub-millisecond timer for latency faults.
//!
//! tokio's timer wheel has a 1 ms tick and rounds every deadline up, and the runtime's
//! `epoll_wait` rounds its timeout up to a whole millisecond too: measured here, a 50 ms
//! `tokio::time::sleep` ends after 52 ms. A chaos drill that promises "50 ms" should deliver
//! 50 ms, so latency faults sleep on this timer instead: one thread parks on a futex with a
//! nanosecond timeout until the earliest deadline and wakes the waiting tasks. Only faulted
//! requests use it; it costs nothing otherwise.

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

/// Completes at `deadline` (never before), typically within 0.1 ms after it.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        registered: false,
    }
}

pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

pub struct Sleep {
    deadline: Instant,
    registered: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        // Register once: the task is woken at the deadline and polls again. (A task that
        // moves to another executor in between is not something the proxy does.)
        if !self.registered {
            self.registered = true;
            let timer = timer();
            let earliest = {
                let mut queue = timer.queue.lock().unwrap_or_else(|e| e.into_inner());
                let earliest = queue.peek().is_none_or(|Reverse(e)| self.deadline < e.deadline);
                queue.push(Reverse(Entry {
                    deadline: self.deadline,
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
}
