//! A counter per reason (`{reason="allowlist"}`): how the node ban and the Ingress side
//! count what they refuse.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Cheap to clone; every clone counts into the same series.
#[derive(Clone, Debug, Default)]
pub struct ByReason(Family<ReasonLabel, Counter>);

impl ByReason {
    pub fn register(&self, registry: &mut Registry, name: &str, help: &str) {
        registry.register(name, help, self.0.clone());
    }

    pub fn inc(&self, reason: &'static str) {
        self.0.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub fn get(&self, reason: &'static str) -> u64 {
        self.0.get_or_create(&ReasonLabel { reason }).get()
    }
}
