//! What the Ingress side counts besides the stage's action outcomes: patches sent,
//! conflicts re-read, entries refused by reason, bans expired, quarantines lifted, the
//! Ingress watch.

use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};

use crate::telemetry::by_reason::ByReason;

/// Cheap to clone; every clone counts into the same series.
#[derive(Clone, Debug, Default)]
pub struct IngressMetrics {
    pub patches: Counter,
    pub conflicts: Counter,
    refused: ByReason,
    pub expired: Counter,
    pub lifted: Counter,
    pub watch_errors: Counter,
    pub managed: Gauge,
}

impl IngressMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_response_ingress_patches",
            "Ingress annotation patches accepted by the API server (each denylist change reloads nginx)",
            self.patches.clone(),
        );
        registry.register(
            "youwatch_response_ingress_conflicts",
            "Ingress patches refused with 409 Conflict (another writer first), re-read and retried",
            self.conflicts.clone(),
        );
        self.refused.register(
            registry,
            "youwatch_response_deny_refused",
            "Addresses not denied, by reason: allowlist, reserved (loopback, link-local...), full (deny_ip.max_entries), malformed_list (the user's denylist is invalid), malformed_ledger",
        );
        registry.register(
            "youwatch_response_bans_expired",
            "Denied addresses removed from an Ingress at their expiry",
            self.expired.clone(),
        );
        registry.register(
            "youwatch_response_quarantines_lifted",
            "Quarantines lifted (expiry or release), the user's allowlist restored",
            self.lifted.clone(),
        );
        registry.register(
            "youwatch_response_ingress_watch_errors",
            "Errors of the Ingress watch (retried with backoff)",
            self.watch_errors.clone(),
        );
        registry.register(
            "youwatch_response_ingresses",
            "Ingresses the agent manages (matching deny_ip.ingress_selector)",
            self.managed.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.inc(reason);
    }

    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.refused.get(reason)
    }
}
