//! Retry delays for the pod watch, as client-go's reflector spaces its list-and-watch retries
//! (`tools/cache/reflector.go`, `wait.Backoff`): 800 ms doubling to 30 s, each delay drawn
//! from `[d, 2d)`, so a failing API server sees a request every 30–60 s per agent (client-go
//! aims at ~0.22 QPS) and the agents of a cluster do not retry in step.
//!
//! The delays grow across successes: a list that works followed by a watch that fails is not
//! a recovery. They start over once no retry was needed for [`RESET_AFTER`] (client-go's
//! "if we don't backoff for 2min, assume API server is healthy").

use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_millis(800);
pub const CAP: Duration = Duration::from_secs(30);
pub const RESET_AFTER: Duration = Duration::from_secs(120);

pub struct Backoff {
    /// The base of the next delay (before jitter).
    next: Duration,
    last_retry: Option<Instant>,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: INITIAL,
            last_retry: None,
            jitter: Jitter::default(),
        }
    }
}

impl Backoff {
    /// The delay before the retry of a request that failed at `now`.
    pub fn delay(&mut self, now: Instant) -> Duration {
        if self
            .last_retry
            .is_some_and(|last| now.saturating_duration_since(last) > RESET_AFTER)
        {
            self.next = INITIAL;
        }
        self.last_retry = Some(now);
        let base = self.next;
        self.next = (base * 2).min(CAP);
        base + base.mul_f64(self.jitter.fraction())
    }
}

/// Uniform fractions in `[0, 1)` from a xorshift generator seeded per process: enough to keep
/// agents apart, no cryptographic use.
pub struct Jitter(u64);

impl Default for Jitter {
    fn default() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self(RandomState::new().hash_one(std::process::id()) | 1)
    }
}

impl Jitter {
    pub fn fraction(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `d` scaled by a factor in `[1 - spread, 1 + spread)`.
    pub fn spread(&mut self, d: Duration, spread: f64) -> Duration {
        d.mul_f64(1.0 - spread + 2.0 * spread * self.fraction())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_800ms_to_30s_with_up_to_double_jitter() {
        let mut b = Backoff::default();
        let t = Instant::now();
        let bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0, 30.0];
        for (i, base) in bases.iter().enumerate() {
            let d = b.delay(t + Duration::from_secs(i as u64)).as_secs_f64();
            assert!(
                d >= *base && d < 2.0 * base,
                "retry {i}: {d} for base {base}"
            );
        }
    }

    #[test]
    fn starts_over_after_two_quiet_minutes_only() {
        let mut b = Backoff::default();
        let t = Instant::now();
        b.delay(t);
        b.delay(t + Duration::from_secs(1));
        // Within two minutes of the last retry: still growing.
        let d = b.delay(t + Duration::from_secs(100));
        assert!(d >= Duration::from_millis(3200), "{d:?}");
        let d = b.delay(t + Duration::from_secs(100) + RESET_AFTER + Duration::from_secs(1));
        assert!(d < INITIAL * 2, "{d:?}");
    }

    #[test]
    fn jitter_spreads_uniformly() {
        let mut j = Jitter::default();
        let samples: Vec<f64> = (0..10_000).map(|_| j.fraction()).collect();
        assert!(samples.iter().all(|f| (0.0..1.0).contains(f)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
        let d = j.spread(Duration::from_secs(100), 0.1);
        assert!(d >= Duration::from_secs(90) && d < Duration::from_secs(110));
    }
}
