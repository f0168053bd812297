//! The correlation's metrics: suspicious requests taken, recorded or lost; incidents by
//! result; evidence exchanged through the cluster; detection → incident time.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// What became of a suspicious request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Recorded for its Service.
    Recorded,
    /// Lost: the queue from the WAF stage was full.
    Dropped,
    /// No managed Ingress routes its host and path to a Service.
    Unrouted,
    /// Forgotten to make room for another.
    Evicted,
    /// Older than any look-back could reach when it arrived (a backlog after a restart).
    Stale,
}

impl Fate {
    fn as_str(self) -> &'static str {
        match self {
            Fate::Recorded => "recorded",
            Fate::Dropped => "dropped",
            Fate::Unrouted => "unrouted",
            Fate::Evicted => "evicted",
            Fate::Stale => "stale",
        }
    }
}

/// How an incident ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncidentResult {
    /// Clients banned.
    Ban,
    /// Candidates, none to ban.
    NoBan,
    NoCandidates,
}

impl IncidentResult {
    fn as_str(self) -> &'static str {
        match self {
            IncidentResult::Ban => "ban",
            IncidentResult::NoBan => "no_ban",
            IncidentResult::NoCandidates => "no_candidates",
        }
    }
}

/// Cheap to clone; every clone counts into the same series.
#[derive(Clone, Debug)]
pub struct CorrelationMetrics {
    suspicions: Family<OutcomeLabel, Counter>,
    pub held: Gauge,
    incidents: Family<OutcomeLabel, Counter>,
    skipped: Family<OutcomeLabel, Counter>,
    writes: Family<OutcomeLabel, Counter>,
    reads: Family<OutcomeLabel, Counter>,
    seconds: Histogram,
}

impl Default for CorrelationMetrics {
    fn default() -> Self {
        Self {
            suspicions: Family::default(),
            held: Gauge::default(),
            incidents: Family::default(),
            skipped: Family::default(),
            writes: Family::default(),
            reads: Family::default(),
            // 1 ms .. ~65 s: at once when the evidence is there, up to `wait` when it is late.
            seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 17,
            )),
        }
    }
}

fn outcome(outcome: &'static str) -> OutcomeLabel {
    OutcomeLabel { outcome }
}

impl CorrelationMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_correlation_suspicions",
            "Suspicious requests from the WAF stage: recorded for their Service, dropped (queue full), unrouted (no managed Ingress routes them), evicted (room made for another), stale (older than any look-back reaches)",
            self.suspicions.clone(),
        );
        registry.register(
            "youwatch_correlation_suspicions_held",
            "Suspicious requests held for runtime detections to look back at",
            self.held.clone(),
        );
        registry.register(
            "youwatch_correlation_incidents",
            "Runtime detections correlated, by result: ban, no_ban (candidates, none to ban), no_candidates",
            self.incidents.clone(),
        );
        registry.register(
            "youwatch_correlation_skipped",
            "Runtime detections not correlated: duplicate (the pod's incident is open or done), busy (correlation.max_open reached)",
            self.skipped.clone(),
        );
        registry.register(
            "youwatch_correlation_evidence_writes",
            "Evidence Events written for other nodes (ok, failed)",
            self.writes.clone(),
        );
        registry.register(
            "youwatch_correlation_evidence_reads",
            "Lists of other nodes' evidence Events (ok, failed)",
            self.reads.clone(),
        );
        registry.register(
            "youwatch_correlation_incident_seconds",
            "Time from a runtime detection to its incident decided",
            self.seconds.clone(),
        );
    }

    pub fn suspicion(&self, fate: Fate) {
        self.suspicions.get_or_create(&outcome(fate.as_str())).inc();
    }

    /// Suspicious requests that met `fate` so far.
    pub fn suspicions(&self, fate: Fate) -> u64 {
        self.suspicions.get_or_create(&outcome(fate.as_str())).get()
    }

    pub fn incident(&self, result: IncidentResult, seconds: f64) {
        self.incidents
            .get_or_create(&outcome(result.as_str()))
            .inc();
        self.seconds.observe(seconds);
    }

    pub fn skipped(&self, reason: &'static str) {
        self.skipped.get_or_create(&outcome(reason)).inc();
    }

    pub fn write(&self, ok: bool) {
        self.writes
            .get_or_create(&outcome(if ok { "ok" } else { "failed" }))
            .inc();
    }

    pub fn read(&self, ok: bool) {
        self.reads
            .get_or_create(&outcome(if ok { "ok" } else { "failed" }))
            .inc();
    }
}
