//! When a scenario's rules apply: the drill's clock, its phases and its end.
//!
//! Every position is computed from one anchor time, never from counting ticks, so replicas
//! that load the same file with the same `start_at` run the same drill in lockstep without
//! talking to each other, and a reload of the running drill does not restart it.

use std::time::{Duration, Instant, SystemTime};

use super::index::RuleIndex;
pub use crate::scenario::Connections;

/// The drill's zero: `start_at` from the file, or the moment the scenario was first loaded.
/// Drill time may run faster than real time (`--time-scale 0.01`: an hour-long incident in
/// 36 seconds); waiting for `start_at` happens in real time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// A monotonic instant at which the drill time was `base_elapsed`.
    base: Instant,
    base_elapsed: Duration,
    /// Drill seconds per real second.
    speed: f64,
}

impl Clock {
    pub fn starting_now() -> Clock {
        Clock {
            base: Instant::now(),
            base_elapsed: Duration::ZERO,
            speed: 1.0,
        }
    }

    /// A clock whose zero is the wall-clock time `at`, which may be past or future. Converted
    /// to the monotonic clock once, so a wall-clock step later does not jump the drill.
    pub fn anchored_at(at: SystemTime) -> Clock {
        let (now, wall) = (Instant::now(), SystemTime::now());
        match at.duration_since(wall) {
            // In the future: zero is that far ahead.
            Ok(ahead) => Clock {
                base: now + ahead,
                base_elapsed: Duration::ZERO,
                speed: 1.0,
            },
            Err(past) => Clock {
                base: now,
                base_elapsed: past.duration(),
                speed: 1.0,
            },
        }
    }

    /// The same clock with drill time running `speed` times as fast as real time, from the
    /// same zero (a drill already under way is rescaled from its anchor).
    pub fn with_speed(mut self, speed: f64) -> Clock {
        let factor = speed / self.speed;
        self.base_elapsed = scaled(self.base_elapsed, factor);
        self.speed = speed;
        self
    }

    pub fn speed(&self) -> f64 {
        self.speed
    }

    /// Drill time at `now`, or `None` before the drill starts.
    pub fn elapsed(&self, now: Instant) -> Option<Duration> {
        now.checked_duration_since(self.base).map(|d| {
            let d = if self.speed == 1.0 { d } else { scaled(d, self.speed) };
            d.saturating_add(self.base_elapsed)
        })
    }
}

/// `d * factor`, saturating instead of panicking where `Duration::mul_f64` would (a result
/// beyond `Duration::MAX`, or a factor that is not a positive finite number).
fn scaled(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(if factor > 0.0 {
        Duration::MAX
    } else {
        Duration::ZERO
    })
}

/// One phase, compiled: its place on the timeline and the rules that apply in it (the
/// scenario's top-level rules first, then its own, in file order).
#[derive(Debug)]
pub struct Phase {
    pub(crate) name: Option<String>,
    /// Drill time at which it starts.
    pub(crate) start: Duration,
    /// `None` only for the single endless phase of a scenario without `phases:`.
    pub(crate) duration: Option<Duration>,
    /// Indices into the scenario's rules.
    pub(crate) rules: Vec<u32>,
    pub(crate) index: RuleIndex,
    pub(crate) connections: Connections,
}

impl Phase {
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// Drill time at which it starts.
    pub fn start(&self) -> Duration {
        self.start
    }

    pub fn end(&self) -> Option<Duration> {
        self.duration.map(|d| self.start + d)
    }

    pub fn connections(&self) -> Connections {
        self.connections
    }
}

/// Where a drill stands at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillState {
    /// Before `start_at`: no fault applies yet.
    Pending { starts_in: Duration },
    /// In phase `phase`, `at` into the drill (within the current cycle when repeating).
    Running { phase: usize, at: Duration },
    /// After the last phase of a drill that does not repeat: healthy from now on.
    Over,
    /// Past `max_duration`: every fault has stopped by itself.
    Expired,
}

#[derive(Debug)]
pub struct Timeline {
    pub(crate) start_at: Option<SystemTime>,
    pub(crate) repeat: bool,
    pub(crate) max_duration: Option<Duration>,
    /// Never empty.
    pub(crate) phases: Vec<Phase>,
    /// The sum of the phases' durations; `None` without phases.
    pub(crate) cycle: Option<Duration>,
    pub(crate) clock: Clock,
    /// Whether any of this depends on time; if not, requests never read the clock.
    pub(crate) timed: bool,
}

impl Timeline {
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    pub fn has_phases(&self) -> bool {
        self.cycle.is_some()
    }

    pub fn repeats(&self) -> bool {
        self.repeat
    }

    pub fn max_duration(&self) -> Option<Duration> {
        self.max_duration
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// The hot-path form of [`Timeline::state`]: the running phase and the drill time, or
    /// `None` when no fault applies now. Reads no clock for a scenario that does not need one.
    #[inline]
    pub fn locate(&self) -> Option<(usize, Duration)> {
        if !self.timed {
            return Some((0, Duration::ZERO));
        }
        match self.state(Instant::now()) {
            DrillState::Running { phase, at } => Some((phase, at)),
            _ => None,
        }
    }

    pub fn state(&self, now: Instant) -> DrillState {
        let Some(elapsed) = self.clock.elapsed(now) else {
            let starts_in = self.clock.base.saturating_duration_since(now);
            return DrillState::Pending { starts_in };
        };
        if self.max_duration.is_some_and(|max| elapsed >= max) {
            return DrillState::Expired;
        }
        let at = match self.cycle {
            None => elapsed,
            Some(cycle) if self.repeat => Duration::from_nanos((elapsed.as_nanos() % cycle.as_nanos().max(1)) as u64),
            Some(cycle) if elapsed >= cycle => return DrillState::Over,
            Some(_) => elapsed,
        };
        let phase = self.phases.iter().rposition(|p| p.start <= at).unwrap_or(0);
        DrillState::Running { phase, at }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(durations: &[u64], repeat: bool, max: Option<u64>, clock: Clock) -> Timeline {
        let mut start = Duration::ZERO;
        let phases = durations
            .iter()
            .map(|s| {
                let d = Duration::from_secs(*s);
                let p = Phase {
                    name: None,
                    start,
                    duration: Some(d),
                    rules: Vec::new(),
                    index: RuleIndex::default(),
                    connections: Connections::Accept,
                };
                start += d;
                p
            })
            .collect();
        Timeline {
            start_at: None,
            repeat,
            max_duration: max.map(Duration::from_secs),
            phases,
            cycle: Some(start),
            clock,
            timed: true,
        }
    }

    #[test]
    fn phases_follow_the_clock_then_end_or_repeat() {
        let clock = Clock::starting_now();
        let base = clock.base;
        let at = |s: u64| base + Duration::from_secs(s);
        let t = timeline(&[10, 20, 5], false, None, clock);
        assert_eq!(
            t.state(at(0)),
            DrillState::Running {
                phase: 0,
                at: Duration::ZERO
            }
        );
        assert!(matches!(t.state(at(10)), DrillState::Running { phase: 1, .. }));
        assert!(matches!(t.state(at(34)), DrillState::Running { phase: 2, .. }));
        assert_eq!(t.state(at(35)), DrillState::Over);

        let t = timeline(&[10, 20, 5], true, Some(100), clock);
        assert_eq!(
            t.state(at(36)),
            DrillState::Running {
                phase: 0,
                at: Duration::from_secs(1)
            }
        );
        assert!(matches!(t.state(at(99)), DrillState::Running { phase: 1, .. }));
        assert_eq!(t.state(at(100)), DrillState::Expired);
    }

    #[test]
    fn wall_clock_anchor_in_the_future_and_the_past() {
        let future = Clock::anchored_at(SystemTime::now() + Duration::from_secs(60));
        let t = timeline(&[10], false, None, future);
        assert!(
            matches!(t.state(Instant::now()), DrillState::Pending { starts_in } if starts_in > Duration::from_secs(58))
        );
        assert_eq!(t.locate(), None);

        let past = Clock::anchored_at(SystemTime::now() - Duration::from_secs(15));
        let t = timeline(&[10, 10], false, None, past);
        assert!(
            matches!(t.state(Instant::now()), DrillState::Running { phase: 1, at } if at >= Duration::from_secs(15))
        );
    }

    #[test]
    fn extreme_speeds_saturate_instead_of_panicking() {
        let clock = Clock::anchored_at(SystemTime::UNIX_EPOCH).with_speed(1e20);
        assert_eq!(clock.elapsed(Instant::now()), Some(Duration::MAX));
        let slow = Clock::starting_now().with_speed(1e-20);
        assert!(slow.elapsed(Instant::now()).unwrap() < Duration::from_millis(1));
    }
}
