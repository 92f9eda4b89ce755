//! The CI version of the soak (benches/soak.rs): 60 seconds, 200 clients, ~10% faults,
//! against the real binary. `S3CHAOS_SOAK_SECS` lengthens it.

use std::time::Duration;

use crate::ONE_AT_A_TIME;
use crate::soak::{Settings, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_bounds_memory_and_leaves_nothing_open() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let secs = std::env::var("S3CHAOS_SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let settings = Settings {
        duration: Duration::from_secs(secs),
        clients: 200,
        sample_every: Duration::from_secs(5),
    };
    let (clients, duration) = (settings.clients, settings.duration);
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_s3chaos"));
    let report = tokio::task::spawn_blocking(move || run(&bin, &settings))
        .await
        .unwrap()
        .unwrap();
    eprintln!("{}", report.table());
    if let Err(problems) = report.verdict(clients, duration) {
        panic!("{problems}\n{}", report.table());
    }
}
