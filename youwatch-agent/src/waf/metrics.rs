//! The WAF stage's Prometheus metrics. Label handles are resolved once, so counting in the
//! hot path is one atomic add.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::{classify::Class, entry::BadLine};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    pub class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabel {
    pub decision: &'static str,
}

/// Decisions, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecisionKind {
    /// No ban class in the entry.
    Pass,
    /// The client may never be banned (allowlist, loopback, trusted proxy...).
    Protected,
    /// No valid client address.
    Unattributable,
    Counted,
    Ban,
    AlreadyBanned,
}

impl DecisionKind {
    pub const ALL: [DecisionKind; 6] = [
        DecisionKind::Pass,
        DecisionKind::Protected,
        DecisionKind::Unattributable,
        DecisionKind::Counted,
        DecisionKind::Ban,
        DecisionKind::AlreadyBanned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Pass => "pass",
            DecisionKind::Protected => "protected",
            DecisionKind::Unattributable => "unattributable",
            DecisionKind::Counted => "counted",
            DecisionKind::Ban => "ban",
            DecisionKind::AlreadyBanned => "already_banned",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WafMetrics {
    pub entries: Counter,
    bad_lines: Family<KindLabel, Counter>,
    classes: Family<ClassLabel, Counter>,
    decisions: Family<DecisionLabel, Counter>,
    pub tracked_ips: Gauge,
    pub evicted_ips: Counter,
    pub blocked: Counter,
    bad_line_handles: Vec<Counter>,
    class_handles: Vec<Counter>,
    decision_handles: Vec<Counter>,
}

impl Default for WafMetrics {
    fn default() -> Self {
        let bad_lines = Family::<KindLabel, Counter>::default();
        let classes = Family::<ClassLabel, Counter>::default();
        let decisions = Family::<DecisionLabel, Counter>::default();
        WafMetrics {
            bad_line_handles: BadLine::ALL
                .iter()
                .map(|k| {
                    bad_lines
                        .get_or_create(&KindLabel { kind: k.as_str() })
                        .clone()
                })
                .collect(),
            class_handles: Class::ALL
                .iter()
                .map(|c| {
                    classes
                        .get_or_create(&ClassLabel { class: c.as_str() })
                        .clone()
                })
                .collect(),
            decision_handles: DecisionKind::ALL
                .iter()
                .map(|d| {
                    decisions
                        .get_or_create(&DecisionLabel {
                            decision: d.as_str(),
                        })
                        .clone()
                })
                .collect(),
            bad_lines,
            classes,
            decisions,
            entries: Counter::default(),
            tracked_ips: Gauge::default(),
            evicted_ips: Counter::default(),
            blocked: Counter::default(),
        }
    }
}

impl WafMetrics {
    pub fn bad_line(&self, kind: BadLine) -> &Counter {
        &self.bad_line_handles[BadLine::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }

    pub fn class(&self, class: Class) -> &Counter {
        &self.class_handles[class as usize]
    }

    pub fn decision(&self, d: DecisionKind) -> &Counter {
        &self.decision_handles[d as usize]
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_waf_entries",
            "Audit-log entries parsed",
            self.entries.clone(),
        );
        registry.register(
            "youwatch_waf_bad_lines",
            "Audit-log lines that are not entries, by kind",
            self.bad_lines.clone(),
        );
        registry.register(
            "youwatch_waf_entry_classes",
            "Entries per CRS attack class present in them",
            self.classes.clone(),
        );
        registry.register(
            "youwatch_waf_decisions",
            "Scoring decisions per entry",
            self.decisions.clone(),
        );
        registry.register(
            "youwatch_waf_blocked_entries",
            "Entries the WAF blocked (vs detection-only)",
            self.blocked.clone(),
        );
        registry.register(
            "youwatch_waf_tracked_ips",
            "Client IPs with scoring state",
            self.tracked_ips.clone(),
        );
        registry.register(
            "youwatch_waf_evicted_ips",
            "Client IP states forgotten because the cap was reached",
            self.evicted_ips.clone(),
        );
    }
}
