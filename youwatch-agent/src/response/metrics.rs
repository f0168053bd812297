//! The response stage's metrics: actions by kind and outcome, decision → applied latency,
//! retries, pending actions, Events.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use super::action::ActionKind;

/// How an action ended (or stands).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done in the cluster.
    Applied,
    /// Printed (client dry-run) or sent with dryRun=All (server dry-run).
    DryRun,
    /// Nothing to do: the pod was already gone or replaced, the address already denied.
    AlreadyDone,
    /// Same action already in force: not repeated.
    Deduplicated,
    /// A guard said no (protected namespace, allowlist, rate limit, replicas, other node).
    Refused,
    /// Retried until its deadline without success.
    GaveUp,
    /// A permanent error (RBAC, validation).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::DryRun => "dry_run",
            Outcome::AlreadyDone => "already_done",
            Outcome::Deduplicated => "deduplicated",
            Outcome::Refused => "refused",
            Outcome::GaveUp => "gave_up",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    action: &'static str,
}

fn latency_histogram() -> Histogram {
    // 100 µs .. ~26 s: an exec → DELETE is milliseconds, a coalesced ban a second.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 19,
    ))
}

/// Cheap to clone; every clone counts into the same series.
#[derive(Clone, Debug)]
pub struct ResponseMetrics {
    actions: Family<ActionLabels, Counter>,
    latency: Family<KindLabel, Histogram, fn() -> Histogram>,
    retries: Family<KindLabel, Counter>,
    pub pending: Gauge,
    pub events_sent: Counter,
    pub events_failed: Counter,
    pub journal_errors: Counter,
    /// The Ingress side's own counters (patches, conflicts, refusals, expiry).
    pub ingress: super::ingress::metrics::IngressMetrics,
}

impl Default for ResponseMetrics {
    fn default() -> Self {
        Self {
            actions: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            retries: Family::default(),
            pending: Gauge::default(),
            events_sent: Counter::default(),
            events_failed: Counter::default(),
            journal_errors: Counter::default(),
            ingress: Default::default(),
        }
    }
}

impl ResponseMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_response_actions",
            "Response actions by kind (delete_pod, deny_ip, quarantine) and outcome (applied, dry_run, already_done, deduplicated, refused, gave_up, failed)",
            self.actions.clone(),
        );
        registry.register(
            "youwatch_response_action_seconds",
            "Time from detection to the action applied in the cluster",
            self.latency.clone(),
        );
        registry.register(
            "youwatch_response_retries",
            "API requests retried after a transient error (5xx, 429, timeout, connection loss)",
            self.retries.clone(),
        );
        registry.register(
            "youwatch_response_pending",
            "Decided actions not applied yet (journaled; survive a restart)",
            self.pending.clone(),
        );
        registry.register(
            "youwatch_response_events_sent",
            "Kubernetes Events written",
            self.events_sent.clone(),
        );
        registry.register(
            "youwatch_response_events_failed",
            "Kubernetes Events that could not be written",
            self.events_failed.clone(),
        );
        registry.register(
            "youwatch_response_journal_errors",
            "Failed writes to the response journal (decided actions might not survive a restart)",
            self.journal_errors.clone(),
        );
        self.ingress.register(registry);
    }

    pub fn outcome(&self, kind: ActionKind, outcome: Outcome) {
        self.actions
            .get_or_create(&ActionLabels {
                action: kind.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Actions of `kind` that ended with `outcome` so far.
    pub fn count(&self, kind: ActionKind, outcome: Outcome) -> u64 {
        self.actions
            .get_or_create(&ActionLabels {
                action: kind.as_str(),
                outcome: outcome.as_str(),
            })
            .get()
    }

    pub fn latency(&self, kind: ActionKind, seconds: f64) {
        self.latency
            .get_or_create(&KindLabel {
                action: kind.as_str(),
            })
            .observe(seconds);
    }

    pub fn retry(&self, kind: ActionKind) {
        self.retries
            .get_or_create(&KindLabel {
                action: kind.as_str(),
            })
            .inc();
    }
}
