//! What a fault may vary by for one request: deterministic randomness and the ramp position.

/// A small counter-based random stream (SplitMix64), seeded from the scenario seed, the rule
/// index and how many requests that rule has matched. Reproducible across runs, platforms and
/// crate versions, which a seeded drill needs and `rand`'s small RNGs do not promise.
///
/// It also carries how far the request falls into its rule's time span, so a ramped value
/// (`latency: {from: 50ms, to: 2s}`) is read at the moment the rule fired.
#[derive(Debug, Clone)]
pub struct Draw {
    state: u64,
    progress: f64,
}

impl Draw {
    /// A rule's identity for [`Draw::new`], from its name (FNV-1a: stable across builds and
    /// versions, so a seed replays the same drill with a later s3chaos).
    pub fn rule_id(name: &str) -> u64 {
        name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    }

    pub fn new(seed: u64, rule: u64, nth_match: u64) -> Draw {
        let mut d = Draw {
            state: seed,
            progress: 0.0,
        };
        d.state ^= mix(rule ^ 0x5EED_0000_0000_0000);
        d.state ^= mix(nth_match.wrapping_add(0x9E37_79B9_7F4A_7C15));
        d
    }

    /// The same draw at `progress` (0..=1) through the rule's span.
    pub fn at(mut self, progress: f64) -> Draw {
        self.progress = progress.clamp(0.0, 1.0);
        self
    }

    /// How far through its ramp span the rule was when it fired: 0 at the start, 1 at the end
    /// (0 for rules without a span).
    pub fn progress(&self) -> f64 {
        self.progress
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// A uniform value in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_uniform_enough() {
        assert_eq!(Draw::new(42, 3, 7).unit(), Draw::new(42, 3, 7).unit());
        assert_ne!(Draw::new(42, 3, 7).unit(), Draw::new(42, 3, 8).unit());
        assert_ne!(Draw::new(42, 3, 7).unit(), Draw::new(43, 3, 7).unit());
        let n = 100_000;
        let below = (0..n).filter(|i| Draw::new(1, 0, *i).unit() < 0.3).count();
        let share = below as f64 / n as f64;
        assert!((0.29..0.31).contains(&share), "share {share}");
    }
}
