//! The inventory stage's Prometheus metrics.

use super::recovery::{RelistReason, WatchErrorReason};
use prometheus_client::{
    encoding::{EncodeLabelSet, EncodeLabelValue},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// How far an exec could be attributed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Attribution {
    /// Pod and container (name, image) known.
    Container,
    /// Pod known; the container's id is not in the pod's status (yet).
    UnlistedContainer,
    /// Pod known, exec in the pod-level cgroup itself.
    Pod,
    /// A cgroup watched outside the pod inventory (`--watch-cgroup`, node-local mode).
    Cgroup,
    /// The watched cgroup is unknown to the inventory.
    None,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AttributionLabels {
    pub attribution: Attribution,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WatchErrorLabels {
    pub reason: WatchErrorReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RelistLabels {
    pub reason: RelistReason,
}

/// Cheap to clone: every clone updates the same metrics.
#[derive(Clone, Debug, Default)]
pub struct InventoryMetrics {
    pub guarded_pods: Gauge,
    pub pending_pods: Gauge,
    pub watched_cgroups: Gauge,
    /// Watched cgroups also enforced (forbidden execs stopped by the kernel).
    pub enforced_cgroups: Gauge,
    pub process_table_entries: Gauge,
    pub watch_errors: Family<WatchErrorLabels, Counter>,
    pub relists: Family<RelistLabels, Counter>,
    /// 1 once the guarded workloads are known: this node's pods listed and applied (cluster
    /// mode), or cgroupfs scanned (node-local mode).
    pub synced: Gauge,
    pub execs: Family<AttributionLabels, Counter>,
}

impl InventoryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_inventory_guarded_pods",
            "Pods on this node selected for guarding",
            self.guarded_pods.clone(),
        );
        registry.register(
            "youwatch_inventory_pending_pods",
            "Guarded pods whose cgroup has not appeared yet",
            self.pending_pods.clone(),
        );
        registry.register(
            "youwatch_inventory_watched_cgroups",
            "Cgroups in the kernel's watched set",
            self.watched_cgroups.clone(),
        );
        registry.register(
            "youwatch_inventory_enforced_cgroups",
            "Watched cgroups where the kernel stops forbidden execs (enforce or monitor mode)",
            self.enforced_cgroups.clone(),
        );
        registry.register(
            "youwatch_inventory_process_table_entries",
            "Processes remembered for lineage",
            self.process_table_entries.clone(),
        );
        registry.register(
            "youwatch_inventory_pod_watch_errors",
            "Errors of the pod watch against the API server, by reason (each is retried with backoff)",
            self.watch_errors.clone(),
        );
        registry.register(
            "youwatch_inventory_pod_relists",
            "Complete lists of this node's pods, by reason: start-up, periodic, or the watch could not resume",
            self.relists.clone(),
        );
        registry.register(
            "youwatch_inventory_synced",
            "1 once this node's guarded pods (or containers) are known and watched",
            self.synced.clone(),
        );
        registry.register(
            "youwatch_inventory_execs",
            "Exec events enriched, by how far they were attributed",
            self.execs.clone(),
        );
    }

    pub fn watch_error(&self, reason: WatchErrorReason) {
        self.watch_errors
            .get_or_create(&WatchErrorLabels { reason })
            .inc();
    }

    pub fn relist(&self, reason: RelistReason) {
        self.relists.get_or_create(&RelistLabels { reason }).inc();
    }

    pub fn exec(&self, attribution: Attribution) {
        self.execs
            .get_or_create(&AttributionLabels { attribution })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_encodes() {
        let metrics = InventoryMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.exec(Attribution::Container);
        metrics.guarded_pods.set(2);
        metrics.relist(RelistReason::Periodic);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("youwatch_inventory_guarded_pods 2"), "{text}");
        assert!(
            text.contains("youwatch_inventory_execs_total{attribution=\"Container\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("youwatch_inventory_pod_relists_total{reason=\"Periodic\"} 1"),
            "{text}"
        );
    }
}
