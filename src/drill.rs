//! The drill supervisor: a background task beside the proxy that says out loud what the
//! timeline does (each phase as it starts, the end of the drill, `max_duration`), enforces
//! the stop condition, halting every fault when the real upstream starts failing, and removes
//! rules added at run time when their `ttl` runs out.
//!
//! It never decides for a request: requests read the timeline themselves (see
//! [`crate::engine::timeline`]), so a late tick here delays a log line, never a fault's end.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::Control;
use crate::engine::Scenario;
use crate::engine::timeline::DrillState;
use crate::engine::{Engine, UpstreamTally};

/// How often the supervisor looks.
pub const TICK: Duration = Duration::from_millis(100);

pub struct Supervisor {
    control: Arc<Control>,
    engine: Arc<Engine>,
    /// The scenario last looked at, and where its drill stood.
    last: Option<(Arc<Scenario>, DrillState)>,
    /// Upstream tallies over the stop condition's window, oldest first.
    samples: VecDeque<(Instant, UpstreamTally)>,
}

impl Supervisor {
    pub fn new(control: Arc<Control>) -> Supervisor {
        Supervisor {
            engine: control.engine().clone(),
            control,
            last: None,
            samples: VecDeque::new(),
        }
    }

    /// Runs [`Supervisor::tick`] every [`TICK`] until the task is dropped.
    pub fn spawn(mut self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(TICK);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                self.tick(Instant::now());
            }
        })
    }

    pub fn tick(&mut self, now: Instant) {
        for name in self.control.expire(now) {
            tracing::info!(target: "s3chaos::drill", rule = %name, "rule removed: its ttl ran out");
        }
        // One load: the phase number and the phases come from the same version of the scenario.
        let (scenario, state) = self.engine.scenario_and_state();
        let previous = match &self.last {
            Some((s, st)) if Arc::ptr_eq(s, &scenario) => Some(*st),
            _ => None,
        };
        if previous != Some(state) {
            announce(&scenario, previous, state);
        }
        self.last = Some((scenario.clone(), state));
        self.check_stop_condition(&scenario, now);
    }

    fn check_stop_condition(&mut self, scenario: &Scenario, now: Instant) {
        let Some(stop) = scenario.safety().stop_if else {
            self.samples.clear();
            return;
        };
        let tally = self.engine.upstream_tally();
        self.samples.push_back((now, tally));
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > stop.window)
        {
            self.samples.pop_front();
        }
        let Some((_, oldest)) = self.samples.front() else {
            return;
        };
        let requests = tally.requests - oldest.requests;
        let failures = tally.failures - oldest.failures;
        if requests == 0 || requests < stop.min_requests || self.engine.halted().is_some() {
            return;
        }
        let rate = failures as f64 / requests as f64;
        if rate >= stop.upstream_error_rate.get() {
            let reason = format!(
                "stop condition: the upstream itself failed {failures} of {requests} requests ({:.0}%) over the last {}, at or above {:.0}%",
                rate * 100.0,
                humantime::format_duration(stop.window),
                stop.upstream_error_rate.get() * 100.0
            );
            if self.engine.halt(reason.clone()) {
                tracing::error!(target: "s3chaos::drill", "HALTED — every fault is off: {reason}. Resume with SIGUSR2 once the upstream is healthy.");
            }
        }
    }
}

/// Logs a change in where the drill stands.
fn announce(scenario: &Scenario, previous: Option<DrillState>, state: DrillState) {
    let timeline = scenario.timeline();
    let name = scenario.name();
    match state {
        DrillState::Pending { starts_in } => tracing::info!(
            target: "s3chaos::drill",
            scenario = name,
            "drill starts in {} (start_at)",
            humantime::format_duration(Duration::from_secs(starts_in.as_secs()))
        ),
        DrillState::Running { phase, at } => {
            let p = &timeline.phases()[phase];
            let Some(phase_name) = p.name() else {
                return; // no phases: nothing to announce
            };
            let same_phase_continues =
                matches!(previous, Some(DrillState::Running { phase: q, at: before }) if q == phase && before <= at);
            if same_phase_continues {
                return;
            }
            // In real time, which differs from drill time under --time-scale.
            let left = p
                .end()
                .map(|end| end.saturating_sub(at).div_f64(timeline.clock().speed()))
                .unwrap_or_default();
            tracing::info!(
                target: "s3chaos::drill",
                scenario = name,
                phase = phase_name,
                rules = p.rules.len(),
                "phase `{phase_name}` started ({} of {}), {} left in it",
                phase + 1,
                timeline.phases().len(),
                humantime::format_duration(Duration::from_millis(left.as_millis() as u64))
            );
        }
        DrillState::Over => tracing::info!(
            target: "s3chaos::drill",
            scenario = name,
            "drill over: the last phase ended; requests pass untouched from now on"
        ),
        DrillState::Expired => tracing::warn!(
            target: "s3chaos::drill",
            scenario = name,
            "max duration reached: every fault has stopped by itself"
        ),
    }
}
