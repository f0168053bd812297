//! Evaluates the loaded rules on exec events and turns matches into `Detection`s.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;

use super::{
    fields::EventView,
    output::OutField,
    ruleset::{CompiledRule, RuleSet},
};
use crate::{
    detection::{Detection, Origin, PodRef, Subject},
    event::EnrichedExec,
};

/// How many rules may fire for one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleMatching {
    /// The first matching rule in load order only (Falco's default `rule_matching: first`).
    #[default]
    First,
    /// Every matching rule.
    All,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    priority: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The rules stage's metrics.
#[derive(Clone, Debug, Default)]
pub struct RulesMetrics {
    events: Counter,
    matches: Family<RuleLabels, Counter>,
    loaded: Family<StatusLabels, Gauge>,
}

impl RulesMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "youwatch_rules_exec_events_evaluated",
            "Exec events evaluated against the rules",
            self.events.clone(),
        );
        registry.register(
            "youwatch_rules_matches",
            "Rule matches (detections) per rule",
            self.matches.clone(),
        );
        registry.register(
            "youwatch_rules_loaded",
            "Loaded rules by status: evaluable, off (disabled by file or configuration), unsupported (not evaluable on exec events)",
            self.loaded.clone(),
        );
    }
}

pub struct Engine {
    rules: Vec<CompiledRule>,
    matching: RuleMatching,
    extra_fields: Vec<OutField>,
    hostname: String,
    seq: AtomicU64,
    metrics: RulesMetrics,
}

impl Engine {
    /// An engine over a rule set that loaded without errors.
    pub fn new(
        set: &RuleSet,
        matching: RuleMatching,
        extra_fields: Vec<OutField>,
        hostname: String,
        metrics: RulesMetrics,
    ) -> Engine {
        let (evaluable, off, unsupported) = set.counts();
        for (status, n) in [
            ("evaluable", evaluable),
            ("off", off),
            ("unsupported", unsupported),
        ] {
            metrics
                .loaded
                .get_or_create(&StatusLabels { status })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Engine {
            rules: set.rules.clone(),
            matching,
            extra_fields,
            hostname,
            seq: AtomicU64::new(0),
            metrics,
        }
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The detections for one exec: the first matching rule, or all (per `rule_matching`).
    pub fn evaluate(&self, exec: &EnrichedExec) -> Vec<Detection> {
        let num = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics.events.inc();
        let view = EventView::new(exec, num, &self.hostname);
        let mut out = Vec::new();
        for rule in &self.rules {
            if rule.condition.eval(&view) {
                self.metrics
                    .matches
                    .get_or_create(&RuleLabels {
                        rule: rule.name.to_string(),
                        priority: rule.priority.to_string(),
                    })
                    .inc();
                out.push(self.detection(rule, &view));
                if self.matching == RuleMatching::First {
                    break;
                }
            }
        }
        out
    }

    /// Indexes of the rules matching `exec`, without building detections (benchmarks).
    #[cfg(any(test, feature = "testing"))]
    pub fn matches(&self, exec: &EnrichedExec) -> Vec<usize> {
        let num = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let view = EventView::new(exec, num, &self.hostname);
        self.rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.condition.eval(&view))
            .map(|(i, _)| i)
            .collect()
    }

    fn detection(&self, rule: &CompiledRule, view: &EventView<'_>) -> Detection {
        let exec = view.exec();
        let (output, output_fields): (String, BTreeMap<String, serde_json::Value>) =
            rule.output.render(view, &self.extra_fields);
        Detection {
            time: exec.event.time,
            origin: Origin::Rules,
            rule: rule.name.to_string(),
            priority: rule.priority,
            output,
            tags: rule.tags.to_vec(),
            output_fields,
            subject: subject(exec),
        }
    }
}

/// The pod a detection is about, when the exec happened in one.
pub fn subject(exec: &EnrichedExec) -> Subject {
    match &exec.pod {
        Some(pod) if !pod.name.is_empty() && !pod.namespace.is_empty() => Subject::Pod(PodRef {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
            container_id: exec
                .container
                .as_ref()
                .filter(|c| !c.id.is_empty())
                .map(|c| c.id.clone()),
            container_name: exec
                .container
                .as_ref()
                .filter(|c| !c.name.is_empty())
                .map(|c| c.name.clone()),
            owner: pod.owner.clone(),
            labels: pod.labels.clone(),
        }),
        _ => Subject::None,
    }
}
