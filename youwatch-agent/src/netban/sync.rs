//! Keeps this node's deny table equal to the ledger: on every change of the watched IPBans,
//! at the next expiry (every agent removes an entry at its time, whoever wrote it and
//! whether or not its author is still there), and every [`RESYNC`] anyway. Removals go
//! first, so a full table makes room before it takes new entries.
//!
//! The packets each entry dropped are read from its per-CPU counters here and added to
//! `youwatch_netban_dropped_packets_total`, and logged when the entry leaves.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use ipnet::IpNet;

use super::{
    crd::IpBan,
    desired::{Desired, desired},
    guard::KernelGuard,
    kernel::DenyTable,
    metrics::NetbanMetrics,
};
use crate::{
    cluster::{reflect::Reflected, rescan::Rescan},
    response::ingress::ledger::format_time,
    stage::{StopSignal, Task},
};

/// Longest time between two passes (counters, clock steps, a missed notification).
pub const RESYNC: Duration = Duration::from_secs(10);

/// The deny table, shared with whoever reads it (tests, benchmarks).
pub type SharedTable = Arc<Mutex<Box<dyn DenyTable>>>;

/// The guard, shared with the visibility check that refreshes the node's own addresses.
pub type SharedGuard = Arc<RwLock<KernelGuard>>;

pub struct Syncer {
    pub index: Reflected<IpBan>,
    pub table: SharedTable,
    pub guard: SharedGuard,
    pub metrics: NetbanMetrics,
}

impl Syncer {
    pub fn spawn(self, stop: StopSignal) -> Task {
        stop.spawn_until(self.run())
    }

    async fn run(self) {
        if !self.index.listed().await {
            return;
        }
        let mut rescan = Rescan::new(self.index.changes(), RESYNC);
        let mut state = Passes::default();
        loop {
            let now = SystemTime::now();
            let wanted = {
                let guard = self.guard.read().unwrap_or_else(|e| e.into_inner());
                desired(&self.index.all(), now, &guard)
            };
            state.report_skipped(&wanted, &self.metrics);
            state.apply(&self.table, &wanted, &self.metrics);
            if !rescan.wait(wanted.next_expiry()).await {
                return;
            }
        }
    }
}

/// What one pass remembers for the next: drop counts read, objects already warned about
/// (not enforced, or failed to enter the table).
#[derive(Default)]
struct Passes {
    drops: BTreeMap<IpNet, u64>,
    warned: BTreeMap<String, String>,
    failed: BTreeMap<String, String>,
}

impl Passes {
    /// Logs and counts each object not enforced, once per object and reason.
    fn report_skipped(&mut self, wanted: &Desired, metrics: &NetbanMetrics) {
        let mut warned = BTreeMap::new();
        for s in &wanted.skipped {
            if self.warned.get(&s.name) != Some(&s.why) {
                metrics.refused(s.reason);
                tracing::warn!(
                    ipban = s.name,
                    reason = s.reason,
                    "IPBan not enforced on this node: {}",
                    s.why
                );
            }
            warned.insert(s.name.clone(), s.why.clone());
        }
        // Bounded by the objects that exist now.
        self.warned = warned;
    }

    fn apply(&mut self, table: &SharedTable, wanted: &Desired, metrics: &NetbanMetrics) {
        let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
        let held = table.entries();
        for net in held.keys().filter(|n| !wanted.entries.contains_key(n)) {
            let dropped = self.count_drops(&**table, net, metrics);
            match table.remove(net) {
                Ok(()) => {
                    self.drops.remove(net);
                    tracing::info!(address = %net, dropped, "node ban lifted");
                }
                Err(e) => tracing::error!(error = %e, "cannot lift a node ban"),
            }
        }
        let mut failed = BTreeMap::new();
        for (net, w) in &wanted.entries {
            if held.get(net) == Some(&w.until) {
                self.count_drops(&**table, net, metrics);
                continue;
            }
            match table.upsert(*net, w.until) {
                Ok(()) => tracing::info!(
                    address = %net,
                    until = format_time(w.until),
                    ipban = w.name,
                    "node ban in force"
                ),
                Err(e) => {
                    let why = e.to_string();
                    if self.failed.get(&w.name) != Some(&why) {
                        metrics.refused("full");
                        tracing::error!(
                            ipban = w.name,
                            error = why,
                            "IPBan not enforced on this node"
                        );
                    }
                    failed.insert(w.name.clone(), why);
                }
            }
        }
        self.failed = failed;
        metrics.entries.set(table.entries().len() as i64);
    }

    /// Adds what `net` dropped since the last pass to the counter; its total.
    fn count_drops(&mut self, table: &dyn DenyTable, net: &IpNet, metrics: &NetbanMetrics) -> u64 {
        let now = table.drops(net);
        let before = self.drops.insert(*net, now).unwrap_or(0);
        metrics.dropped.inc_by(now.saturating_sub(before));
        now
    }
}
