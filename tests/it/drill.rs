//! Game-day drills as a client lives them: phases and ramps over time, live reload under
//! load, the stop condition, and the cap on faults at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use s3chaos::control::Control;
use s3chaos::drill::Supervisor;
use s3chaos::engine::timeline::DrillState;
use s3chaos::reload::Reloader;

use crate::harness::{Harness, client_for, seed_object, single_attempt};

const DRILL: &str = r#"
name: compressed-drill
seed: 7
phases:
  - name: calm
    duration: 2s
  - name: brownout
    duration: 2s
    rules:
      - name: rising-errors
        match: {operation: GetObject}
        probability: {from: 0.1, to: 0.9}
        fault: {error: InternalError}
  - name: outage
    duration: 1s
    rules:
      - {name: down, fault: {error: ServiceUnavailable}}
"#;

/// One GET as the drill saw it: in which phase, how far into the drill, and the error code.
struct Sample {
    phase: usize,
    at: Duration,
    error: Option<String>,
}

#[tokio::test]
async fn a_compressed_drill_follows_its_phases_and_recovers() {
    let h = Harness::start(DRILL).await;
    seed_object(&h, "drill", "k", 100).await;
    let c = h.single_attempt_client(None);
    let mut samples = Vec::new();
    let mut after_end = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while after_end.len() < 30 && Instant::now() < deadline {
        let before = h.engine.state();
        let outcome = c.get_object().bucket("drill").key("k").send().await;
        let after = h.engine.state();
        let error = outcome.err().map(|e| e.code().unwrap_or("(no code)").to_owned());
        match (before, after) {
            (DrillState::Running { phase: p, at: a }, DrillState::Running { phase: q, at: b }) if p == q => samples
                .push(Sample {
                    phase: p,
                    at: (a + b) / 2,
                    error,
                }),
            (DrillState::Over, DrillState::Over) => after_end.push(error),
            _ => {} // straddles a boundary: its phase is ambiguous
        }
    }
    let in_phase = |p: usize| samples.iter().filter(move |s| s.phase == p);

    let calm: Vec<_> = in_phase(0).collect();
    assert!(calm.len() >= 10, "{} requests in the calm phase", calm.len());
    assert!(calm.iter().all(|s| s.error.is_none()), "no fault before the brownout");

    // The brownout: the number of InternalErrors is what the ramp says, within binomial bounds.
    let brownout: Vec<_> = in_phase(1).collect();
    assert!(brownout.len() >= 40, "{} requests in the brownout", brownout.len());
    let p = |s: &Sample| 0.1 + 0.8 * (s.at.as_secs_f64() - 2.0) / 2.0;
    let expected: f64 = brownout.iter().map(|s| p(s)).sum();
    let sd = brownout.iter().map(|s| p(s) * (1.0 - p(s))).sum::<f64>().sqrt();
    let errors = brownout.iter().filter(|s| s.error.is_some()).count() as f64;
    assert!(
        (errors - expected).abs() <= 4.0 * sd + 2.0,
        "{errors} errors in {} brownout requests, expected {expected:.1} ± {:.1}",
        brownout.len(),
        4.0 * sd
    );
    assert!(
        brownout
            .iter()
            .all(|s| s.error.as_deref().is_none_or(|c| c == "InternalError"))
    );
    let rate = |half: &[&Sample]| half.iter().filter(|s| s.error.is_some()).count() as f64 / half.len() as f64;
    let (first, second): (Vec<&Sample>, Vec<&Sample>) = brownout.iter().partition(|s| s.at < Duration::from_secs(3));
    assert!(
        rate(&second) > rate(&first) + 0.2,
        "the ramp rises: {:.2} then {:.2}",
        rate(&first),
        rate(&second)
    );

    let outage: Vec<_> = in_phase(2).collect();
    assert!(outage.len() >= 10, "{} requests in the outage", outage.len());
    assert!(outage.iter().all(|s| s.error.as_deref() == Some("ServiceUnavailable")));

    assert_eq!(after_end.len(), 30, "the drill ended within the deadline");
    assert!(after_end.iter().all(Option::is_none), "recovery is complete");
}

/// Waits for client loops that return (successes, failures not injected); none may have
/// failed otherwise, and together they must have succeeded often enough to count.
async fn assert_only_injected_failures(clients: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>) {
    let mut total_ok = 0;
    for client in clients {
        let (ok, unexpected) = client.await.unwrap();
        assert!(unexpected.is_empty(), "failures that were not injected: {unexpected:?}");
        total_ok += ok;
    }
    assert!(total_ok > 100, "{total_ok} successful requests");
}

/// The file is rewritten (valid, invalid, valid) while clients keep requesting: the only
/// failures they ever see are the ones the running scenario injects.
#[tokio::test]
async fn reload_under_load_drops_nothing_and_keeps_the_last_good_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.yaml");
    let v1 = "name: live\nrules:\n  - {name: elsewhere, match: {bucket: other}, fault: {error: SlowDown}}\n";
    std::fs::write(&path, v1).unwrap();
    let h = Harness::start(v1).await;
    seed_object(&h, "live", "k", 2000).await;
    let control = Arc::new(Control::new(h.engine.clone(), v1.into(), path.display().to_string()));
    let (_hup, watcher) = Reloader::new(&path, control).spawn(Duration::from_millis(25));

    let stop = Arc::new(AtomicBool::new(false));
    let injected = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = h.single_attempt_client(None);
        let (stop, injected) = (stop.clone(), injected.clone());
        clients.push(tokio::spawn(async move {
            let (mut ok, mut unexpected) = (0usize, Vec::new());
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get_object().bucket("live").key("k").send().await {
                    Ok(out) => {
                        assert_eq!(out.body.collect().await.unwrap().into_bytes().len(), 2000);
                        ok += 1;
                    }
                    Err(e) if e.code() == Some("InternalError") && e.message() == Some("drill v2") => {
                        injected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => unexpected.push(format!("{e:?}")),
                }
            }
            (ok, unexpected)
        }));
    }

    let wait_for = |what: &'static str, f: Box<dyn Fn() -> bool>| async move {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting: {what}");
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let v2 = "name: live\nrules:\n  - {name: flaky, match: {bucket: live}, probability: 0.3, fault: {error: {code: InternalError, message: drill v2}}}\n";
    std::fs::write(&path, v2).unwrap();
    let engine = h.engine.clone();
    wait_for(
        "v2 applied",
        Box::new(move || engine.scenario().rules()[0].name() == "flaky"),
    )
    .await;
    let injected_now = injected.clone();
    wait_for(
        "v2 injects",
        Box::new(move || injected_now.load(Ordering::Relaxed) > 20),
    )
    .await;

    std::fs::write(
        &path,
        "name: live\nrules:\n  - {name: broken, fault: {error: SlowDwn}}\n",
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.engine.scenario().rules()[0].name(),
        "flaky",
        "the bad file was refused"
    );
    let before = injected.load(Ordering::Relaxed);
    let injected_now = injected.clone();
    wait_for(
        "v2 keeps injecting after the bad file",
        Box::new(move || injected_now.load(Ordering::Relaxed) > before + 10),
    )
    .await;

    std::fs::write(&path, "name: live\nrules: []\n").unwrap();
    let engine = h.engine.clone();
    wait_for("v3 applied", Box::new(move || engine.scenario().rules().is_empty())).await;
    // Requests that started under v2 may still finish with its fault; give them a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = injected.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(injected.load(Ordering::Relaxed), settled, "no fault after v3");

    stop.store(true, Ordering::Relaxed);
    assert_only_injected_failures(clients).await;
    watcher.abort();
}

/// The kill switch pulled and released while clients keep requesting, some of them in the
/// middle of a slowed download: nothing fails but the injected errors, every body arrives
/// whole, and no error is injected while halted.
#[tokio::test]
async fn halt_and_resume_under_load_drop_nothing() {
    let h = Harness::start(
        "name: live\nrules:\n  - {name: flaky, match: {bucket: live, key: small}, probability: 0.3, fault: {error: {code: InternalError, message: drill}}}\n  - {name: slow, match: {bucket: live, key: big}, fault: {bandwidth: 2MiB/s}}\n",
    )
    .await;
    let small = seed_object(&h, "live", "small", 2000).await;
    let big = seed_object(&h, "live", "big", 512 * 1024).await;
    let stop = Arc::new(AtomicBool::new(false));
    let injected = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for n in 0..4 {
        let c = h.single_attempt_client(Some(Duration::from_secs(10)));
        let (stop, injected) = (stop.clone(), injected.clone());
        let (key, body) = if n == 0 {
            ("big", big.clone())
        } else {
            ("small", small.clone())
        };
        clients.push(tokio::spawn(async move {
            let (mut ok, mut unexpected) = (0usize, Vec::new());
            for _ in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.get_object().bucket("live").key(key).send().await {
                    Ok(out) => match out.body.collect().await.map(|b| b.into_bytes()) {
                        Ok(got) if got == body => ok += 1,
                        Ok(_) => unexpected.push("other bytes".to_owned()),
                        Err(e) => unexpected.push(format!("body: {e:?}")),
                    },
                    Err(e) if e.code() == Some("InternalError") && e.message() == Some("drill") => {
                        injected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => unexpected.push(format!("{e:?}")),
                }
            }
            (ok, unexpected)
        }));
    }
    // Counted where the decision is made, so a client slow to read its answer on a busy
    // machine cannot blur the halted window.
    let decided = || h.stats("flaky").injected;
    for round in 0..3 {
        let before = decided();
        let mut fired = false;
        for _ in 0..250 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if decided() > before {
                fired = true;
                break;
            }
        }
        assert!(fired, "round {round}: no fault while running");
        assert!(h.engine.halt(format!("round {round}")));
        // A request decided just before the halt may still be counted.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let halted_at = decided();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(decided(), halted_at, "round {round}: a fault decided while halted");
        assert!(h.engine.resume());
    }
    stop.store(true, Ordering::Relaxed);
    assert_only_injected_failures(clients).await;
    assert!(
        injected.load(Ordering::Relaxed) > 0,
        "the clients saw the injected errors"
    );
}

/// `stop_if` halts the drill when the real upstream (here: a second s3chaos that breaks one
/// bucket, standing in for a sick staging S3) starts failing; injected faults never count.
#[tokio::test]
async fn stop_condition_halts_every_fault_when_the_upstream_itself_fails() {
    let sick_upstream = Harness::start(
        "name: sick\nrules:\n  - {name: broken, match: {bucket: sick}, fault: {error: InternalError}}\n",
    )
    .await;
    seed_object(&sick_upstream, "drill", "k", 10).await;
    let upstream = s3chaos::proxy::Upstream::new(&sick_upstream.url(""), &Default::default()).unwrap();
    let drill = r#"
name: guarded
stop_if: {upstream_error_rate: 0.5, window: 5s, min_requests: 5}
rules:
  - {name: throttle, match: {bucket: drill}, fault: {error: SlowDown}}
"#;
    let (addr, engine, _proxy) = crate::harness::start_proxy(upstream, drill).await;
    let _supervisor = Supervisor::new(Arc::new(Control::new(engine.clone(), drill.into(), "drill".into()))).spawn();
    let c = client_for(addr, |b| single_attempt(b, None));

    // Injected SlowDowns do not trip it.
    for _ in 0..10 {
        let e = c.get_object().bucket("drill").key("k").send().await.unwrap_err();
        assert_eq!(e.code(), Some("SlowDown"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(engine.halted(), None);

    // The upstream's own 500s do.
    for _ in 0..8 {
        let e = c.get_object().bucket("sick").key("k").send().await.unwrap_err();
        assert_eq!(e.code(), Some("InternalError"));
    }
    let mut reason = None;
    for _ in 0..50 {
        reason = engine.halted();
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = reason.expect("halted by the stop condition");
    // The supervisor may look between two of the 8 failures: it halts once 5 (min_requests)
    // or more have failed, all of them the upstream's own.
    let counted = reason
        .split("failed ")
        .nth(1)
        .and_then(|rest| rest.split(" requests").next())
        .expect("the reason says how many failed");
    let (failed, of) = counted.split_once(" of ").unwrap();
    assert_eq!(failed, of, "{reason}");
    assert!((5..=8).contains(&failed.parse::<u32>().unwrap()), "{reason}");

    let got = c.get_object().bucket("drill").key("k").send().await;
    assert!(got.is_ok(), "halted: the drill bucket passes untouched: {got:?}");
    assert!(engine.resume());
    let e = c.get_object().bucket("drill").key("k").send().await.unwrap_err();
    assert_eq!(e.code(), Some("SlowDown"), "resumed");
}

#[tokio::test]
async fn max_active_faults_bounds_the_blast_radius() {
    let h = Harness::start(
        "name: capped\nmax_active_faults: 2\nrules:\n  - {name: slow, match: {operation: GetObject}, fault: {latency: 1s}}\n",
    )
    .await;
    seed_object(&h, "cap", "k", 10).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let c = h.single_attempt_client(None);
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            c.get_object().bucket("cap").key("k").send().await.unwrap();
            started.elapsed()
        }));
    }
    let mut took = Vec::new();
    for t in tasks {
        took.push(t.await.unwrap());
    }
    let slow = took.iter().filter(|d| **d >= Duration::from_millis(950)).count();
    assert_eq!(slow, 2, "only two requests delayed at once: {took:?}");
    assert_eq!(h.engine.capped(), 4);
    assert_eq!(h.stats("slow").injected, 2);
    // The client has its last byte a moment before the proxy drops the response body that
    // holds the slot: wait (bounded) for the release rather than race it.
    for _ in 0..100 {
        if h.engine.active_faults() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.engine.active_faults(), 0, "slots are given back");
}

/// Phases that refuse connections (nothing listens: "connection refused") and that close the
/// open ones too, then accept again; as during the 2025 DNS outage, from the socket's side.
#[tokio::test]
async fn phases_refuse_then_close_connections_then_accept_again() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PHASES: &str = r#"
name: unreachable
phases:
  - {name: open, duration: 1s}
  - {name: refused, duration: 1500ms, refuse_connections: true}
  - {name: closed, duration: 1500ms, close_connections: true}
  - {name: back, duration: 2s}
"#;
    let h = Harness::start(PHASES).await;
    // Start the drill's clock now that the setup is done.
    h.engine.replace(s3chaos::engine::Scenario::empty());
    h.engine.replace(s3chaos::engine::Scenario::parse(PHASES, "p").unwrap());
    async fn ask(stream: &mut tokio::net::TcpStream) -> std::io::Result<String> {
        stream
            .write_all(b"HEAD /nobucket HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = [0u8; 1024];
        let n = stream.read(&mut buf).await?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
    let wait_for_phase = |index: usize| {
        let engine = h.engine.clone();
        async move {
            for _ in 0..100 {
                if matches!(engine.state(), DrillState::Running { phase, .. } if phase == index) {
                    // Let the acceptor see it (it looks every 50 ms).
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("phase {index} never came");
        }
    };

    let mut kept = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    assert!(ask(&mut kept).await.unwrap().starts_with("HTTP/1.1 "), "open");

    wait_for_phase(1).await;
    let refused = tokio::net::TcpStream::connect(h.proxy).await;
    assert_eq!(refused.unwrap_err().kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(
        ask(&mut kept).await.unwrap().starts_with("HTTP/1.1 "),
        "open connections keep working"
    );

    wait_for_phase(2).await;
    let answer = ask(&mut kept).await;
    assert!(
        answer.as_deref().is_ok_and(str::is_empty) || answer.is_err(),
        "the open connection was dropped: {answer:?}"
    );
    assert!(tokio::net::TcpStream::connect(h.proxy).await.is_err());

    wait_for_phase(3).await;
    let mut again = tokio::net::TcpStream::connect(h.proxy).await.unwrap();
    assert!(
        ask(&mut again).await.unwrap().starts_with("HTTP/1.1 "),
        "accepting again"
    );
    let ok = h.single_attempt_client(None).list_buckets().send().await;
    assert!(ok.is_ok(), "{ok:?}");
}
