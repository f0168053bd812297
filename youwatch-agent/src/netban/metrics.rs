//! The node ban's metrics: entries in force, packets dropped, bans not enforced by reason,
//! interfaces attached or refused, expired IPBans deleted, the ledger watch.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::{cluster::reflect::WatchMetrics, telemetry::by_reason::ByReason};

/// Cheap to clone; every clone counts into the same series.
#[derive(Clone, Default)]
pub struct NetbanMetrics {
    pub entries: Gauge,
    pub dropped: Counter,
    refused: ByReason,
    pub interfaces: Gauge,
    pub interfaces_refused: Counter,
    pub deleted: Counter,
    pub ledger: WatchMetrics,
}

impl NetbanMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_netban_entries",
            "Banned ranges in force in this node's kernel deny lists",
            self.entries.clone(),
        );
        registry.register(
            "youwatch_netban_dropped_packets",
            "Packets the node ban dropped (counted from the per-entry, per-CPU kernel counters)",
            self.dropped.clone(),
        );
        self.refused.register(
            registry,
            "youwatch_netban_refused",
            "IPBans not enforced on this node, by reason: own_address, allowlist, proxy, reserved, too_wide, invalid, full (node_ban.max_entries)",
        );
        registry.register(
            "youwatch_netban_interfaces",
            "Interfaces the node ban's program is attached to",
            self.interfaces.clone(),
        );
        registry.register(
            "youwatch_netban_interfaces_refused",
            "Interfaces detached because their connections come from proxies, load balancers or the node itself, not clients",
            self.interfaces_refused.clone(),
        );
        registry.register(
            "youwatch_netban_expired_deleted",
            "Expired IPBan objects this agent deleted",
            self.deleted.clone(),
        );
        registry.register(
            "youwatch_netban_ledger_bans",
            "IPBan objects in the cluster (the ledger, as watched)",
            self.ledger.objects.clone(),
        );
        registry.register(
            "youwatch_netban_ledger_watch_errors",
            "Errors of the IPBan watch (retried with backoff)",
            self.ledger.errors.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.inc(reason);
    }

    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.refused.get(reason)
    }
}
