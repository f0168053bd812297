//! Enforcement's Prometheus metrics, read at each scrape: the kernel's own counts of stopped
//! and flagged execs (exact even when the ring buffer was full), the mode and mechanism in
//! force, and whether the disarmer tripped.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use super::{EnforceMode, tap::EnforceStatus};
use crate::sensor::ebpf::Enforcement;

#[derive(Clone)]
pub struct EnforceMetrics {
    pub(super) armed: Enforcement,
    pub(super) status: EnforceStatus,
}

impl std::fmt::Debug for EnforceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnforceMetrics")
    }
}

impl EnforceMetrics {
    pub fn new(armed: Enforcement, status: EnforceStatus) -> Self {
        Self { armed, status }
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

impl Collector for EnforceMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Ok(c) = self.armed.counters() {
            let mut family = encoder.encode_descriptor(
                "youwatch_enforce_execs",
                "Forbidden execs in enforced workloads, by mechanism (sigkill, lsm, monitor) and \
                 outcome (stopped, would_stop, failed: the signal could not be sent), as the \
                 kernel counts them.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (mechanism, outcome, value) in [
                ("sigkill", "stopped", c.killed),
                ("lsm", "stopped", c.denied),
                ("monitor", "would_stop", c.would_stop),
                ("sigkill", "failed", c.signal_failed),
            ] {
                let labels = [("mechanism", mechanism), ("outcome", outcome)];
                ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        let mode = self.status.mode();
        let mechanism = self.status.mechanism().as_str();
        let mut family = encoder.encode_descriptor(
            "youwatch_enforce_mode",
            "1 for the enforcement mode in force (off, monitor, enforce) and its mechanism \
             (lsm or sigkill).",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for candidate in [EnforceMode::Off, EnforceMode::Monitor, EnforceMode::Enforce] {
            let labels = [("mode", candidate.as_str()), ("mechanism", mechanism)];
            ConstGauge::new(i64::from(candidate == mode)).encode(family.encode_family(&labels)?)?;
        }
        let disarmed = ConstGauge::new(i64::from(self.status.disarmed()));
        disarmed.encode(encoder.encode_descriptor(
            "youwatch_enforce_disarmed",
            "1 once the disarmer switched enforcement to monitor mode (until the agent restarts).",
            None,
            disarmed.metric_type(),
        )?)
    }
}
