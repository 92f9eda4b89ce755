//! What the proxy tells the outside world about itself: counters for Prometheus, the recent
//! injected faults for the admin API, and the optional per-request event log for reports.
//!
//! Counting stays off the request's critical path as far as it can: each worker thread
//! counts into its own [`WorkerMetrics`] (relaxed atomics no other thread writes, so no
//! cache line bounces between cores), and a scrape sums the workers. The event log is
//! written by its own thread from a bounded queue; a full queue drops the line and counts it.

pub mod events;
pub mod prometheus;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::s3::Operation;
pub use events::{DrillEvent, FaultEvent, RecentFaults, RequestEvent, RequestLog};

/// How one request really ended, as the client saw it: what the event log, the metrics and
/// the report count (not the status the response head promised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response went out whole (the upstream's, or one a fault made in S3's place).
    Complete,
    /// The body stopped short of what its head promised, cut by a fault (`truncate`,
    /// `reset: {after_bytes}`).
    Cut { by: &'static str },
    /// No response at all: a fault ended the request (`blackhole`, `reset`).
    Injected { by: &'static str },
    /// The client left before the response was complete (during a delay, a stall, mid-body).
    ClientGone,
    /// The upstream failed: unreachable (s3chaos answered 503), or its body broke mid-stream.
    UpstreamError,
    /// A blackhole still held the request when the proxy stopped: the client never gave up
    /// (no read timeout).
    StillHeld,
}

impl Outcome {
    /// Every outcome's name, in the order of [`Outcome::index`].
    pub const NAMES: [&'static str; 6] = [
        "complete",
        "cut",
        "no_response",
        "client_gone",
        "upstream_error",
        "still_held",
    ];

    pub fn index(self) -> usize {
        match self {
            Outcome::Complete => 0,
            Outcome::Cut { .. } => 1,
            Outcome::Injected { .. } => 2,
            Outcome::ClientGone => 3,
            Outcome::UpstreamError => 4,
            Outcome::StillHeld => 5,
        }
    }

    /// As written in the event log's `outcome` field.
    pub fn name(self) -> &'static str {
        Outcome::NAMES[self.index()]
    }
}

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status codes are counted exactly up to this; index 0 means "no response" (blackhole,
/// reset, client gone).
const STATUS_SLOTS: usize = 600;

/// One worker thread's counters.
pub struct WorkerMetrics {
    /// By operation, then by status class (0 = no response, 1..=5 = 1xx..5xx).
    requests: Box<[[AtomicU64; 6]]>,
    statuses: Box<[AtomicU64]>,
    upstream_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    upstream_sum_micros: AtomicU64,
    upstream_count: AtomicU64,
    upstream_unavailable: AtomicU64,
    open_connections: AtomicI64,
    outcomes: [AtomicU64; Outcome::NAMES.len()],
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            requests: (0..Operation::ALL.len()).map(|_| Default::default()).collect(),
            statuses: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            upstream_buckets: Default::default(),
            upstream_sum_micros: AtomicU64::new(0),
            upstream_count: AtomicU64::new(0),
            upstream_unavailable: AtomicU64::new(0),
            open_connections: AtomicI64::new(0),
            outcomes: Default::default(),
        }
    }
}

impl WorkerMetrics {
    /// One request ended: answered with `status` (`None`: no response at all), ending as
    /// `outcome`.
    #[inline]
    pub fn request(&self, operation: Operation, status: Option<u16>, outcome: Outcome) {
        self.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        let status = status.map_or(0, usize::from);
        let class = if (100..600).contains(&status) { status / 100 } else { 0 };
        self.requests[operation as usize][class].fetch_add(1, Ordering::Relaxed);
        self.statuses[status.min(STATUS_SLOTS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Time from sending a request upstream to its response head.
    #[inline]
    pub fn upstream_latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.upstream_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.upstream_sum_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.upstream_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_unavailable(&self) {
        self.upstream_unavailable.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The sum of every worker's counters at one moment.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// (operation, status class 0..=5, count), non-zero only.
    pub requests: Vec<(Operation, usize, u64)>,
    /// (status, count), non-zero only; status 0 = no response.
    pub statuses: Vec<(u16, u64)>,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS`], then +Inf.
    pub upstream_buckets: Vec<u64>,
    pub upstream_sum: Duration,
    pub upstream_count: u64,
    pub upstream_unavailable: u64,
    pub open_connections: i64,
    /// Requests by how they ended, in the order of [`Outcome::NAMES`].
    pub outcomes: [u64; Outcome::NAMES.len()],
}

impl Totals {
    pub fn requests_total(&self) -> u64 {
        self.requests.iter().map(|r| r.2).sum()
    }

    /// Requests answered with a 5xx or not answered at all.
    pub fn failed_total(&self) -> u64 {
        self.requests.iter().filter(|r| r.1 == 0 || r.1 == 5).map(|r| r.2).sum()
    }
}

/// Everything the proxy reports, shared by its workers and the admin API.
pub struct Telemetry {
    workers: Mutex<Vec<Arc<WorkerMetrics>>>,
    pub recent: RecentFaults,
    request_log: Option<RequestLog>,
    started: Instant,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new(None)
    }
}

impl Telemetry {
    pub fn new(request_log: Option<RequestLog>) -> Telemetry {
        Telemetry {
            workers: Mutex::new(Vec::new()),
            recent: RecentFaults::new(1024),
            request_log,
            started: Instant::now(),
        }
    }

    /// Counters for a new worker thread.
    pub fn new_worker(&self) -> Arc<WorkerMetrics> {
        let metrics = Arc::new(WorkerMetrics::default());
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(metrics.clone());
        metrics
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn request_log(&self) -> Option<&RequestLog> {
        self.request_log.as_ref()
    }

    pub fn totals(&self) -> Totals {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut t = Totals {
            upstream_buckets: vec![0; LATENCY_BUCKETS.len() + 1],
            ..Totals::default()
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for op in Operation::ALL {
            for class in 0..6 {
                let n: u64 = workers.iter().map(|w| load(&w.requests[*op as usize][class])).sum();
                if n > 0 {
                    t.requests.push((*op, class, n));
                }
            }
        }
        for status in 0..STATUS_SLOTS {
            let n: u64 = workers.iter().map(|w| load(&w.statuses[status])).sum();
            if n > 0 {
                t.statuses.push((status as u16, n));
            }
        }
        let mut cumulative = 0;
        for (i, slot) in t.upstream_buckets.iter_mut().enumerate() {
            cumulative += workers.iter().map(|w| load(&w.upstream_buckets[i])).sum::<u64>();
            *slot = cumulative;
        }
        t.upstream_sum = Duration::from_micros(workers.iter().map(|w| load(&w.upstream_sum_micros)).sum());
        t.upstream_count = workers.iter().map(|w| load(&w.upstream_count)).sum();
        t.upstream_unavailable = workers.iter().map(|w| load(&w.upstream_unavailable)).sum();
        t.open_connections = workers.iter().map(|w| w.open_connections.load(Ordering::Relaxed)).sum();
        for (i, slot) in t.outcomes.iter_mut().enumerate() {
            *slot = workers.iter().map(|w| load(&w.outcomes[i])).sum();
        }
        t
    }
}
