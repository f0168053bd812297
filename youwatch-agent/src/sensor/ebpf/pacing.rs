//! When the ring-buffer reader waits for the kernel's wake-up and when it drains on a timer.
//!
//! Every wake-up of the reader costs a context switch (~10–15 µs of CPU on a VM), and a
//! wake-up rung by the exec program also costs the exec'ing task an interrupt. Below
//! `timer_above_rate` execs per second the reader sleeps and every exec rings it: one wake-up
//! per exec, the cheapest way to deliver an exec that has no neighbour within the latency
//! budget. Above it the reader drains every `drain_interval` and the program rings nothing:
//! one wake-up per interval, shared by every exec in it. The rate is measured over windows of
//! [`WINDOW_INTERVALS`] intervals; the reader goes back to sleep at half the threshold
//! (hysteresis), or at once after [`QUIET_TICKS`] empty drains.

use std::time::{Duration, Instant};

/// Intervals per rate measurement.
pub const WINDOW_INTERVALS: u32 = 4;
/// Empty timed drains in a row after which the reader sleeps whatever the rate said.
pub const QUIET_TICKS: u32 = 2;

/// How the reader waits before its next drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Sleep until the exec program rings (it does so while the reader sleeps).
    Bell,
    /// Sleep one drain interval; the program rings nothing.
    Tick,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pacing {
    pub drain_interval: Duration,
    /// Execs per second above which the reader drains on its timer.
    pub timer_above_rate: u32,
}

/// The reader's choice, from what its drains found.
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    wait: Wait,
    window_start: Instant,
    window_events: u64,
    empty_ticks: u32,
}

impl Pacer {
    pub fn new(pacing: Pacing, now: Instant) -> Self {
        Self {
            pacing,
            wait: Wait::Bell,
            window_start: now,
            window_events: 0,
            empty_ticks: 0,
        }
    }

    #[cfg(test)]
    pub fn wait(&self) -> Wait {
        self.wait
    }

    pub fn interval(&self) -> Duration {
        self.pacing.drain_interval
    }

    /// Records a drain that found `records` records at `now`; returns how to wait next.
    pub fn drained(&mut self, records: usize, now: Instant) -> Wait {
        self.window_events += records as u64;
        if self.wait == Wait::Tick {
            self.empty_ticks = if records == 0 {
                self.empty_ticks + 1
            } else {
                0
            };
            if self.empty_ticks >= QUIET_TICKS {
                self.switch(Wait::Bell, now);
                return self.wait;
            }
        }
        let window = self.pacing.drain_interval * WINDOW_INTERVALS;
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= window {
            let rate = self.window_events as f64 / elapsed.as_secs_f64();
            let threshold = f64::from(self.pacing.timer_above_rate);
            match self.wait {
                Wait::Bell if rate > threshold => self.switch(Wait::Tick, now),
                Wait::Tick if rate < threshold / 2.0 => self.switch(Wait::Bell, now),
                _ => self.restart_window(now),
            }
        }
        self.wait
    }

    fn switch(&mut self, wait: Wait, now: Instant) {
        self.wait = wait;
        self.empty_ticks = 0;
        self.restart_window(now);
    }

    fn restart_window(&mut self, now: Instant) {
        self.window_start = now;
        self.window_events = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACING: Pacing = Pacing {
        drain_interval: Duration::from_micros(500),
        timer_above_rate: 2000,
    };

    /// Feeds drains of `records` every `every`, `times` times; the waits chosen.
    fn feed(
        pacer: &mut Pacer,
        now: &mut Instant,
        every: Duration,
        records: usize,
        times: usize,
    ) -> Vec<Wait> {
        (0..times)
            .map(|_| {
                *now += every;
                pacer.drained(records, *now)
            })
            .collect()
    }

    #[test]
    fn sparse_execs_each_ring_the_reader() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(PACING, now);
        // 1,000 execs/s, one per bell.
        let waits = feed(&mut pacer, &mut now, Duration::from_millis(1), 1, 100);
        assert!(waits.iter().all(|&w| w == Wait::Bell));
    }

    #[test]
    fn a_dense_flow_moves_to_the_timer_within_one_window() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(PACING, now);
        // 10,000 execs/s: bells every 200 µs finding two records each.
        let waits = feed(&mut pacer, &mut now, Duration::from_micros(200), 2, 10);
        let first_tick = waits.iter().position(|&w| w == Wait::Tick).expect("ticks");
        assert!(first_tick < 10, "{waits:?}");
        // And stays there while the flow lasts.
        let waits = feed(&mut pacer, &mut now, PACING.drain_interval, 5, 100);
        assert!(waits.iter().all(|&w| w == Wait::Tick));
    }

    #[test]
    fn quiet_ticks_go_back_to_sleep_at_once() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(PACING, now);
        feed(&mut pacer, &mut now, Duration::from_micros(100), 1, 30);
        assert_eq!(pacer.wait(), Wait::Tick);
        let waits = feed(
            &mut pacer,
            &mut now,
            PACING.drain_interval,
            0,
            QUIET_TICKS as usize,
        );
        assert_eq!(waits.last(), Some(&Wait::Bell));
    }

    #[test]
    fn between_half_and_the_whole_threshold_the_mode_holds() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(PACING, now);
        // 1,500/s from sleeping: stays on bells.
        let waits = feed(&mut pacer, &mut now, Duration::from_micros(667), 1, 100);
        assert!(waits.iter().all(|&w| w == Wait::Bell));
        // Dense, then 1,500/s on the timer (~0.75 per tick, rarely two empty in a row here):
        feed(&mut pacer, &mut now, Duration::from_micros(100), 1, 30);
        assert_eq!(pacer.wait(), Wait::Tick);
        let pattern = [1, 1, 0, 1];
        let waits: Vec<Wait> = (0..100)
            .map(|i| {
                now += PACING.drain_interval;
                pacer.drained(pattern[i % 4], now)
            })
            .collect();
        assert!(waits.iter().all(|&w| w == Wait::Tick), "{waits:?}");
        // Below half the threshold (667/s), back to bells.
        let pattern = [1, 0, 0];
        let waits: Vec<Wait> = (0..20)
            .map(|i| {
                now += PACING.drain_interval;
                pacer.drained(pattern[i % 3], now)
            })
            .collect();
        assert_eq!(waits.last(), Some(&Wait::Bell), "{waits:?}");
    }

    #[test]
    fn a_long_quiet_spell_does_not_count_as_a_rate() {
        let mut now = Instant::now();
        let mut pacer = Pacer::new(PACING, now);
        now += Duration::from_secs(60);
        assert_eq!(pacer.drained(3, now), Wait::Bell);
    }
}
