//! This process's threads as the scheduler accounts them.

use std::time::{Duration, Instant};

/// CPU time and times scheduled in, of one thread or summed over several.
#[derive(Clone, Copy, Default)]
pub struct ThreadsCpu {
    pub cpu: Duration,
    pub runs: u64,
}

impl std::ops::Sub for ThreadsCpu {
    type Output = Self;
    fn sub(self, earlier: Self) -> Self {
        Self {
            cpu: self.cpu.saturating_sub(earlier.cpu),
            runs: self.runs.saturating_sub(earlier.runs),
        }
    }
}

/// Sums `/proc/self/task/<tid>/schedstat` (on-CPU ns, wait ns, times run) over `tids`: user
/// and kernel time at ns precision, unlike rusage.
pub fn cpu(tids: &[String]) -> ThreadsCpu {
    tids.iter().fold(ThreadsCpu::default(), |sum, tid| {
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap_or_default();
        let fields: Vec<u64> = stat
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        ThreadsCpu {
            cpu: sum.cpu + Duration::from_nanos(fields.first().copied().unwrap_or(0)),
            runs: sum.runs + fields.get(2).copied().unwrap_or(0),
        }
    })
}

/// Polls `ready` every 5 ms for up to 10 s.
pub fn wait_for<T>(mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
