//! The drill supervisor: a background task beside the proxy that says out loud what the
//! timeline does (each phase as it starts, the end of the drill, `max_duration`), enforces
//! the stop condition, halting every fault when the real upstream starts failing, and removes
//! rules added at run time when their `ttl` runs out.
//!
//! With an event log it also writes the drill's own timeline there ([`DrillEvent`]: each
//! phase at the time the timeline started it, the end, halts and resumes), so a report draws
//! the phases as the scenario ran them.
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
use crate::telemetry::{DrillEvent, Telemetry};

/// How often the supervisor looks.
pub const TICK: Duration = Duration::from_millis(100);

pub struct Supervisor {
    control: Arc<Control>,
    engine: Arc<Engine>,
    /// The scenario last looked at, and where its drill stood.
    last: Option<(Arc<Scenario>, DrillState)>,
    /// Upstream tallies over the stop condition's window, oldest first.
    samples: VecDeque<(Instant, UpstreamTally)>,
    /// Where the drill's timeline is written, with the requests (`--events`).
    log: Option<Arc<Telemetry>>,
    /// The halt reason last seen (`None`: faults on).
    halted: Option<String>,
}

impl Supervisor {
    pub fn new(control: Arc<Control>) -> Supervisor {
        Supervisor {
            engine: control.engine().clone(),
            control,
            last: None,
            samples: VecDeque::new(),
            log: None,
            halted: None,
        }
    }

    /// Also writes the drill's timeline to `telemetry`'s event log, when it has one.
    pub fn logging_to(mut self, telemetry: Arc<Telemetry>) -> Supervisor {
        self.log = Some(telemetry);
        self
    }

    fn write(&self, event: DrillEvent) {
        if let Some(log) = self.log.as_ref().and_then(|t| t.request_log()) {
            log.record_drill(event);
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
        if previous != Some(state)
            && let Some(event) = announce(&scenario, previous, state)
        {
            self.write(event);
        }
        self.last = Some((scenario.clone(), state));
        self.check_stop_condition(&scenario, now);
        let halted = self.engine.halted();
        if halted != self.halted {
            let event = match &halted {
                Some(reason) => DrillEvent {
                    drill: "halt".into(),
                    reason: Some(reason.clone()),
                    ..drill_event(&scenario, std::time::SystemTime::now())
                },
                None => DrillEvent {
                    drill: "resume".into(),
                    ..drill_event(&scenario, std::time::SystemTime::now())
                },
            };
            self.write(event);
            self.halted = halted;
        }
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

fn drill_event(scenario: &Scenario, at: std::time::SystemTime) -> DrillEvent {
    DrillEvent {
        time: humantime::format_rfc3339_micros(at).to_string(),
        scenario: Some(scenario.name().to_owned()),
        ..DrillEvent::default()
    }
}

/// Logs a change in where the drill stands; the event log's line for it, if it has one.
fn announce(scenario: &Scenario, previous: Option<DrillState>, state: DrillState) -> Option<DrillEvent> {
    let timeline = scenario.timeline();
    let name = scenario.name();
    match state {
        DrillState::Pending { starts_in } => {
            tracing::info!(
                target: "s3chaos::drill",
                scenario = name,
                "drill starts in {} (start_at)",
                humantime::format_duration(Duration::from_secs(starts_in.as_secs()))
            );
            None
        }
        DrillState::Running { phase, at } => {
            let p = &timeline.phases()[phase];
            let phase_name = p.name()?; // no phases: nothing to announce
            let same_phase_continues =
                matches!(previous, Some(DrillState::Running { phase: q, at: before }) if q == phase && before <= at);
            if same_phase_continues {
                return None;
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
            // When the timeline started it (the tick that saw it may be up to a tick late).
            let into = at.saturating_sub(p.start()).div_f64(timeline.clock().speed());
            let started = std::time::SystemTime::now() - into;
            Some(DrillEvent {
                drill: "phase".into(),
                phase: Some(phase_name.to_owned()),
                index: Some(phase),
                of: Some(timeline.phases().len()),
                ..drill_event(scenario, started)
            })
        }
        DrillState::Over => {
            tracing::info!(
                target: "s3chaos::drill",
                scenario = name,
                "drill over: the last phase ended; requests pass untouched from now on"
            );
            Some(DrillEvent {
                drill: "over".into(),
                ..drill_event(scenario, std::time::SystemTime::now())
            })
        }
        DrillState::Expired => {
            tracing::warn!(
                target: "s3chaos::drill",
                scenario = name,
                "max duration reached: every fault has stopped by itself"
            );
            Some(DrillEvent {
                drill: "expired".into(),
                ..drill_event(scenario, std::time::SystemTime::now())
            })
        }
    }
}
