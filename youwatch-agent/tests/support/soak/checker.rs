//! The checker: how many alert lines each written entry got.
//!
//! Alerts are Falco JSON lines (`{"hostname":...}`); an entry's number is in
//! `output_fields["waf.unique_id"]`. A `kill -9` can leave a torn last line, which the next
//! run's first alert is appended to: such a line is split at each `{"hostname":` and its
//! whole alerts are counted (the torn one is repeated by the next run, as its cursor was not
//! saved).

use std::path::Path;

use serde_json::Value;

use super::{entries, rotator::Window};

/// Alert counts per entry, and where each repeat was written.
pub struct Tally {
    pub counts: Vec<u32>,
    /// Line index (in the alert file) of every alert for an entry already alerted.
    pub repeats_at: Vec<usize>,
    pub torn_lines: usize,
    /// Alerts naming no entry of ours (never expected).
    pub foreign: usize,
    pub lines: usize,
}

const START: &str = "{\"hostname\":";

impl Tally {
    pub fn read(alerts: &Path, written: u64) -> Tally {
        let text = std::fs::read_to_string(alerts).unwrap_or_default();
        let mut t = Tally {
            counts: vec![0; written as usize],
            repeats_at: Vec::new(),
            torn_lines: 0,
            foreign: 0,
            lines: 0,
        };
        for (i, line) in text.lines().enumerate() {
            t.lines = i + 1;
            let pieces: Vec<&str> = if line.matches(START).count() == 1 && line.starts_with(START) {
                vec![line]
            } else {
                t.torn_lines += 1;
                line.match_indices(START)
                    .map(|(at, _)| &line[at..])
                    .collect()
            };
            for piece in pieces {
                let Ok(v) = serde_json::from_str::<Value>(piece) else {
                    continue;
                };
                let n = v["output_fields"]["waf.unique_id"]
                    .as_str()
                    .and_then(entries::number);
                match n {
                    Some(n) if (n as usize) < t.counts.len() => {
                        let c = &mut t.counts[n as usize];
                        if *c > 0 {
                            t.repeats_at.push(i);
                        }
                        *c += 1;
                    }
                    _ => t.foreign += 1,
                }
            }
        }
        t
    }

    /// Entries alerted at least once.
    pub fn seen(&self) -> u64 {
        self.counts.iter().filter(|&&c| c > 0).count() as u64
    }

    /// Entries never alerted, split into those inside a copytruncate window and the others.
    pub fn lost(&self, windows: &[Window]) -> (Vec<u64>, Vec<u64>) {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c == 0)
            .map(|(n, _)| n as u64)
            .partition(|n| windows.iter().any(|w| w.contains(*n)))
    }

    /// Entries alerted more than once, and the extra alerts.
    pub fn duplicated(&self) -> (u64, u64) {
        let entries = self.counts.iter().filter(|&&c| c > 1).count() as u64;
        let extra = self
            .counts
            .iter()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum();
        (entries, extra)
    }

    /// Repeats per agent run: `starts` are the alert file's line counts when each run
    /// started; the result's `k` counts repeats written by run `k`.
    pub fn repeats_per_run(&self, starts: &[usize]) -> Vec<u64> {
        let mut per = vec![0; starts.len().max(1)];
        for &at in &self.repeats_at {
            let run = starts.iter().rposition(|&s| s <= at).unwrap_or(0);
            per[run] += 1;
        }
        per
    }
}

/// Lines in the alert file so far.
pub fn line_count(alerts: &Path) -> usize {
    std::fs::read(alerts)
        .map(|b| memchr::memchr_iter(b'\n', &b).count())
        .unwrap_or(0)
}
