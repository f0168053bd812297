//! The suspicious requests of the last minutes, per workload: bounded per workload and in
//! total, forgetting what is older than the retention.
//!
//! Requests come from anyone on the internet, so a flood must not push out the request that
//! matters: when a workload's share is full, the request that says least about a shell goes
//! first (anomalies before attacks before code execution; the oldest of those), and the
//! workload holding most makes room when the total is reached.

use std::collections::{HashMap, VecDeque};

use super::suspicion::{Suspicion, Workload};

/// The log's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub per_workload: usize,
    pub total: usize,
    /// Requests older than this (seconds before the newest time the log was told) go.
    pub retention_secs: u64,
}

/// What [`SuspicionLog::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Kept; not when older than the retention already (a backlog read after a restart).
    pub kept: bool,
    /// Requests forgotten to make room (0 or 1).
    pub evicted: usize,
}

#[derive(Debug)]
pub struct SuspicionLog {
    limits: Limits,
    workloads: HashMap<Workload, VecDeque<Suspicion>>,
    len: usize,
}

impl SuspicionLog {
    pub fn new(limits: Limits) -> SuspicionLog {
        SuspicionLog {
            limits: Limits {
                per_workload: limits.per_workload.max(1),
                total: limits.total.max(1),
                ..limits
            },
            workloads: HashMap::new(),
            len: 0,
        }
    }

    /// Requests held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `s` for `workload` at `now` (Unix seconds), making room as the doc says.
    pub fn record(&mut self, workload: &Workload, s: Suspicion, now: u64) -> Recorded {
        let cutoff = now.saturating_sub(self.limits.retention_secs);
        if s.time < cutoff {
            return Recorded {
                kept: false,
                evicted: 0,
            };
        }
        let mut evicted = 0;
        let per_workload = self.limits.per_workload;
        let full_here = self
            .workloads
            .get(workload)
            .is_some_and(|q| q.len() >= per_workload);
        if full_here {
            evicted += self.evict_from(workload);
        } else if self.len >= self.limits.total {
            self.prune(now);
            if self.len >= self.limits.total
                && let Some(largest) = self
                    .workloads
                    .iter()
                    .max_by_key(|(_, q)| q.len())
                    .map(|(w, _)| w.clone())
            {
                evicted += self.evict_from(&largest);
            }
        }
        let queue = self.workloads.entry(workload.clone()).or_default();
        while queue.front().is_some_and(|f| f.time < cutoff) {
            queue.pop_front();
            self.len -= 1;
        }
        queue.push_back(s);
        self.len += 1;
        Recorded {
            kept: true,
            evicted,
        }
    }

    /// Forgets the request of `workload` that says least (worst tier, then oldest).
    fn evict_from(&mut self, workload: &Workload) -> usize {
        let Some(queue) = self.workloads.get_mut(workload) else {
            return 0;
        };
        let Some((i, _)) = queue
            .iter()
            .enumerate()
            .max_by_key(|(i, s)| (s.tier(), std::cmp::Reverse((s.time, *i))))
        else {
            return 0;
        };
        queue.remove(i);
        self.len -= 1;
        if queue.is_empty() {
            self.workloads.remove(workload);
        }
        1
    }

    /// Forgets what is older than the retention at `now`.
    pub fn prune(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.limits.retention_secs);
        let mut len = 0;
        self.workloads.retain(|_, q| {
            q.retain(|s| s.time >= cutoff);
            len += q.len();
            !q.is_empty()
        });
        self.len = len;
    }

    /// The requests to `workload` made between `from` and `to` (inclusive, Unix seconds).
    pub fn between(&self, workload: &Workload, from: u64, to: u64) -> Vec<Suspicion> {
        self.workloads
            .get(workload)
            .into_iter()
            .flatten()
            .filter(|s| (from..=to).contains(&s.time))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::waf::classify::{Class, ClassSet};

    pub(crate) fn suspicion(ip: &str, time: u64, class: Class) -> Suspicion {
        let classes: ClassSet = [class].into_iter().collect();
        Suspicion {
            ip: ip.parse().unwrap(),
            protected: false,
            time,
            host: Some("shop.example".into()),
            method: "GET".into(),
            uri: format!("/x?{class}"),
            path: "/x".into(),
            rule_ids: vec![932160],
            classes,
            strong: classes,
            blocked: false,
            score: 5,
            unique_id: format!("{ip}-{time}-{class}"),
        }
    }

    fn workload(name: &str) -> Workload {
        Workload {
            namespace: "shop".into(),
            service: name.into(),
        }
    }

    fn limits(per_workload: usize, total: usize) -> Limits {
        Limits {
            per_workload,
            total,
            retention_secs: 60,
        }
    }

    #[test]
    fn keeps_the_window_per_workload() {
        let mut log = SuspicionLog::new(limits(10, 100));
        let (shop, other) = (workload("shop"), workload("other"));
        log.record(&shop, suspicion("203.0.113.1", 1000, Class::Rce), 1000);
        log.record(&other, suspicion("203.0.113.2", 1010, Class::Rce), 1010);
        assert_eq!(log.between(&shop, 990, 1020).len(), 1);
        assert_eq!(log.between(&shop, 1001, 1020).len(), 0);
        assert_eq!(log.between(&workload("nope"), 0, u64::MAX).len(), 0);
        // Too old to keep at all.
        let old = log.record(&shop, suspicion("203.0.113.3", 900, Class::Rce), 1010);
        assert!(!old.kept);
        assert_eq!(log.len(), 2);
        log.prune(1065);
        assert_eq!(log.len(), 1, "the request at 1000 is past the retention");
        log.prune(2000);
        assert!(log.is_empty());
    }

    #[test]
    fn a_flood_of_anomalies_does_not_push_out_code_execution() {
        let mut log = SuspicionLog::new(limits(8, 1000));
        let shop = workload("shop");
        log.record(&shop, suspicion("203.0.113.9", 1000, Class::Rce), 1000);
        for i in 0..500u64 {
            let ip = format!("198.51.100.{}", i % 250);
            log.record(&shop, suspicion(&ip, 1001 + i / 100, Class::Protocol), 1001);
        }
        let kept = log.between(&shop, 0, u64::MAX);
        assert_eq!(kept.len(), 8);
        assert!(kept.iter().any(|s| s.classes.contains(Class::Rce)));
        // A flood of attacks pushes out the anomalies, then the oldest attacks.
        for i in 0..20u64 {
            log.record(
                &shop,
                suspicion("198.51.100.7", 1010 + i, Class::Sqli),
                1010,
            );
        }
        let kept = log.between(&shop, 0, u64::MAX);
        assert!(kept.iter().any(|s| s.classes.contains(Class::Rce)));
        assert!(kept.iter().all(|s| !s.classes.contains(Class::Protocol)));
        assert_eq!(kept.iter().filter(|s| s.time >= 1023).count(), 7);
    }

    #[test]
    fn the_total_is_bounded_across_workloads() {
        let mut log = SuspicionLog::new(limits(100, 50));
        for i in 0..500u64 {
            let w = workload(&format!("svc-{}", i % 7));
            log.record(&w, suspicion("203.0.113.1", 1000, Class::Xss), 1000);
            assert!(log.len() <= 50);
        }
        assert_eq!(log.len(), 50);
    }
}
