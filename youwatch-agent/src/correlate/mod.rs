//! Correlation: a web attack followed by a runtime detection in a pod it reached is one
//! incident.
//!
//! The WAF stage offers every request with a CRS hit (detection-only and low-confidence
//! classes included) as a [`Suspicion`] through a lossy [`sink`]; the response stage routes it
//! (Host + path → Ingress rule → Service, as ingress-nginx does), keeps it in a bounded,
//! time-windowed [`log`] per Service and, for other nodes, publishes it as [`evidence`] on
//! the Service. A runtime detection in a pod (own rules or the Falco fallback) looks back
//! over [`CorrelationConfig::window`] at the requests that reached the pod's Services, here
//! and on other nodes, [`rank`]s them and makes one [`Incident`]: in the alert, in a
//! Kubernetes Event, and in the bans its playbooks call for. The pod's deletion never waits
//! for it.

pub mod config;
pub mod evidence;
pub mod incident;
pub mod log;
pub mod metrics;
pub mod rank;
pub mod sink;
pub mod suspicion;

use std::time::Duration;

use tokio::sync::mpsc;

pub use config::{ConfigError, CorrelationConfig};
pub use incident::Incident;
pub use metrics::CorrelationMetrics;
pub use sink::SuspicionSink;
pub use suspicion::{Suspicion, Workload};

use crate::waf::config::ScoringConfig;

/// The correlation, configured; the response stage runs it.
pub struct Correlation {
    pub config: CorrelationConfig,
    /// An incident's ban when its playbook sets no `ttl`: a repeat offender's
    /// (`waf.scoring.ban` × `ban_factor`, at most `max_ban`): the request got through.
    pub ban_ttl: Duration,
    pub suspicions: mpsc::Receiver<Suspicion>,
    pub metrics: CorrelationMetrics,
}

impl Correlation {
    /// `None` when `correlation.enabled` is off. The sink goes to the WAF stage.
    pub fn new(
        config: &CorrelationConfig,
        scoring: &ScoringConfig,
    ) -> Result<Option<(Correlation, SuspicionSink)>, ConfigError> {
        if !config.enabled {
            return Ok(None);
        }
        config.validate()?;
        let metrics = CorrelationMetrics::default();
        let (sink, suspicions) = sink::channel(config.suspicions.queue, metrics.clone());
        let correlation = Correlation {
            config: config.clone(),
            ban_ttl: repeat_offender_ttl(scoring),
            suspicions,
            metrics,
        };
        Ok(Some((correlation, sink)))
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }
}

/// A second offense's ban under `scoring`.
pub fn repeat_offender_ttl(scoring: &ScoringConfig) -> Duration {
    let ttl = scoring.ban.saturating_mul(scoring.ban_factor.max(1));
    ttl.min(scoring.max_ban.max(scoring.ban))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_incident_bans_like_a_repeat_offense() {
        let scoring = ScoringConfig::default();
        assert_eq!(repeat_offender_ttl(&scoring), Duration::from_secs(2400));
        let short = ScoringConfig {
            max_ban: Duration::from_secs(900),
            ..ScoringConfig::default()
        };
        assert_eq!(repeat_offender_ttl(&short), Duration::from_secs(900));
        let off = CorrelationConfig {
            enabled: false,
            ..CorrelationConfig::default()
        };
        assert!(Correlation::new(&off, &scoring).unwrap().is_none());
    }
}
