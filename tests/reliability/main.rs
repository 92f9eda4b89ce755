//! Reliability checks that count the process's file descriptors and the proxy's tasks, so
//! they run in a test binary of their own, one at a time: other tests' sockets would blur
//! the counts.

#[allow(dead_code)]
#[path = "../it/harness.rs"]
mod harness;

mod descriptors;
#[path = "../../benches/soak.rs"]
mod soak;
mod soak_test;
mod upstream_trouble;

/// The tests here count what the whole process holds; they take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}
