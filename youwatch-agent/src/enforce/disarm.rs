//! The disarmer: enforcement that stops more than `max_distinct` different binaries, or in more
//! than `max_distinct` different pods, within `window`, is more likely a bad rule taking the
//! node's workloads down than an attack, and switches itself to monitor mode.
//!
//! It counts what the kernel stopped (not what monitor mode flagged): binaries by the forbidden
//! name that matched (bounded by the configured list, so a path an attacker invents cannot
//! inflate the count), pods by their watched cgroup. Its memory is bounded by `max_distinct`.

use std::time::{Duration, Instant};

use super::DisarmConfig;

/// Why the disarmer tripped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trip {
    /// "6 distinct binaries" or "6 distinct pods".
    pub what: String,
    /// The binaries stopped within the window, most recent last.
    pub binaries: Vec<String>,
    /// How many pods (watched cgroups) had execs stopped within the window.
    pub pods: usize,
    pub window: Duration,
}

impl std::fmt::Display for Trip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "enforcement stopped {} within {} (binaries: {}; pods: {})",
            self.what,
            humantime::format_duration(self.window),
            self.binaries.join(", "),
            self.pods
        )
    }
}

pub struct Disarmer {
    max: usize,
    window: Duration,
    binaries: Recent<String>,
    pods: Recent<u64>,
    tripped: bool,
}

impl Disarmer {
    /// `None` when disarming is off (`max_distinct: 0`).
    pub fn new(config: &DisarmConfig) -> Option<Disarmer> {
        (config.max_distinct > 0).then(|| Disarmer {
            max: config.max_distinct,
            window: config.window,
            binaries: Recent::default(),
            pods: Recent::default(),
            tripped: false,
        })
    }

    /// Records one stopped exec; the trip, the first time a limit is passed (then never again).
    pub fn record(&mut self, now: Instant, binary: &str, pod: u64) -> Option<Trip> {
        if self.tripped {
            return None;
        }
        let oldest = now.checked_sub(self.window);
        self.binaries.note(binary.to_owned(), now, oldest);
        self.pods.note(pod, now, oldest);
        let what = if self.binaries.len() > self.max {
            format!("{} distinct binaries", self.binaries.len())
        } else if self.pods.len() > self.max {
            format!("execs in {} distinct pods", self.pods.len())
        } else {
            return None;
        };
        self.tripped = true;
        Some(Trip {
            what,
            binaries: self.binaries.keys(),
            pods: self.pods.len(),
            window: self.window,
        })
    }
}

/// Keys last seen within the window, oldest first. At most `max + 1` entries: the caller
/// trips (and stops recording) as soon as there are more than `max`.
struct Recent<K> {
    seen: Vec<(K, Instant)>,
}

impl<K> Default for Recent<K> {
    fn default() -> Self {
        Self { seen: Vec::new() }
    }
}

impl<K: PartialEq + Clone> Recent<K> {
    fn note(&mut self, key: K, now: Instant, oldest: Option<Instant>) {
        self.seen
            .retain(|(k, at)| *k != key && oldest.is_none_or(|oldest| *at > oldest));
        self.seen.push((key, now));
    }

    fn len(&self) -> usize {
        self.seen.len()
    }

    fn keys(&self) -> Vec<K> {
        self.seen.iter().map(|(k, _)| k.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disarmer(max: usize) -> Disarmer {
        Disarmer::new(&DisarmConfig {
            max_distinct: max,
            window: Duration::from_secs(60),
        })
        .unwrap()
    }

    #[test]
    fn trips_past_max_distinct_binaries_once() {
        let mut d = disarmer(2);
        let t = Instant::now();
        assert_eq!(d.record(t, "sh", 1), None);
        assert_eq!(d.record(t, "sh", 1), None, "the same binary again");
        assert_eq!(d.record(t, "bash", 1), None);
        let trip = d.record(t, "dash", 1).unwrap();
        assert_eq!(trip.what, "3 distinct binaries");
        assert_eq!(trip.binaries, ["sh", "bash", "dash"]);
        assert!(trip.to_string().contains("within 1m"), "{trip}");
        assert_eq!(d.record(t, "zsh", 1), None, "only once");
    }

    #[test]
    fn trips_past_max_distinct_pods() {
        let mut d = disarmer(2);
        let t = Instant::now();
        for pod in 1..=2 {
            assert_eq!(d.record(t, "sh", pod), None);
        }
        let trip = d.record(t, "sh", 3).unwrap();
        assert_eq!(
            (trip.what.as_str(), trip.pods),
            ("execs in 3 distinct pods", 3)
        );
    }

    #[test]
    fn what_left_the_window_no_longer_counts() {
        let mut d = disarmer(1);
        let t = Instant::now();
        assert_eq!(d.record(t, "sh", 1), None);
        let later = t + Duration::from_secs(61);
        assert_eq!(d.record(later, "bash", 2), None);
        assert!(
            d.record(later + Duration::from_secs(1), "dash", 2)
                .is_some()
        );
    }

    #[test]
    fn zero_never_disarms() {
        let config = DisarmConfig {
            max_distinct: 0,
            window: Duration::from_secs(60),
        };
        assert!(Disarmer::new(&config).is_none());
    }
}
