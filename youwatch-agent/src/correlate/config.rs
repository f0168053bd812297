//! The `correlation:` section. `config/default.yaml` documents each setting with its default.

use std::time::Duration;

use serde::Deserialize;

use super::{log::Limits, rank::BanPolicy};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CorrelationConfig {
    /// Tie each runtime detection in a pod to the suspicious requests that reached the pod's
    /// Services (needs the cluster: Ingresses and Services).
    pub enabled: bool,
    /// How far back before a runtime detection requests count.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long after a runtime detection the agent keeps looking for a request that is
    /// logged late (ModSecurity writes an entry when the request ends).
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// Candidates named in an incident at most (the most likely ones).
    pub max_candidates: usize,
    /// Runtime detections looking back at once at most; beyond, a detection is not
    /// correlated (counted, logged).
    pub max_open: usize,
    pub ban: BanConfig,
    pub suspicions: SuspicionsConfig,
    pub cross_node: CrossNodeConfig,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(60),
            wait: Duration::from_secs(60),
            max_candidates: 10,
            max_open: 64,
            ban: BanConfig::default(),
            suspicions: SuspicionsConfig::default(),
            cross_node: CrossNodeConfig::default(),
        }
    }
}

/// `correlation.ban:` — which candidates' clients an incident bans (playbooks with `deny_ip`
/// for runtime detections).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BanConfig {
    /// Distinct addresses banned per incident at most, most likely first.
    pub max_ips: usize,
    /// Also ban a client whose requests show attack classes only through rules that misfire
    /// on ordinary text (weight below 1 in waf.scoring.rule_weights).
    pub weak_rules: bool,
}

impl Default for BanConfig {
    fn default() -> Self {
        Self {
            max_ips: 3,
            weak_rules: false,
        }
    }
}

/// `correlation.suspicions:` — the suspicious requests kept for looking back.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SuspicionsConfig {
    /// Requests on their way from the WAF stage; beyond, dropped (counted), never slowing
    /// the audit log.
    pub queue: usize,
    /// Requests kept per Service at most.
    pub per_service: usize,
    /// Requests kept in all at most.
    pub total: usize,
}

impl Default for SuspicionsConfig {
    fn default() -> Self {
        Self {
            queue: 4096,
            per_service: 256,
            total: 10_000,
        }
    }
}

/// `correlation.cross_node:` — the ingress controller that saw a request and the pod that ran
/// the shell are often on different nodes.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CrossNodeConfig {
    /// Publish this node's suspicious requests as evidence on the Services they reached (one
    /// Event per Service and node, updated).
    pub publish: bool,
    /// Read the evidence other nodes published when a runtime detection looks back.
    pub read: bool,
    /// One update per Service at most this often (the first at once).
    #[serde(with = "humantime_serde")]
    pub publish_interval: Duration,
    /// Requests published per Service at most (the most telling ones).
    pub max_published: usize,
}

impl Default for CrossNodeConfig {
    fn default() -> Self {
        Self {
            publish: true,
            read: true,
            publish_interval: Duration::from_secs(1),
            max_published: 32,
        }
    }
}

/// Most requests published on one Event: they must fit its annotations comfortably.
pub const MAX_PUBLISHED: usize = 64;

const HOUR: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
#[error("correlation.{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl CorrelationConfig {
    /// Checks what serde cannot; the message names the setting and its value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let durations = [
            ("window", self.window, Duration::from_secs(1), HOUR),
            ("wait", self.wait, Duration::ZERO, HOUR),
            (
                "cross_node.publish_interval",
                self.cross_node.publish_interval,
                // Every update is a write to the API server.
                Duration::from_millis(100),
                HOUR,
            ),
        ];
        for (key, value, min, max) in durations {
            if !(min..=max).contains(&value) {
                return Err(ConfigError {
                    key,
                    message: format!(
                        "{} is not between {} and {}",
                        humantime::format_duration(value),
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                });
            }
        }
        let counts = [
            ("max_candidates", self.max_candidates, 1, 100),
            ("max_open", self.max_open, 1, 1024),
            ("ban.max_ips", self.ban.max_ips, 0, 100),
            ("suspicions.queue", self.suspicions.queue, 1, 1_000_000),
            (
                "suspicions.per_service",
                self.suspicions.per_service,
                1,
                100_000,
            ),
            ("suspicions.total", self.suspicions.total, 1, 1_000_000),
            (
                "cross_node.max_published",
                self.cross_node.max_published,
                1,
                MAX_PUBLISHED,
            ),
        ];
        for (key, value, min, max) in counts {
            if !(min..=max).contains(&value) {
                return Err(ConfigError {
                    key,
                    message: format!("{value} is not between {min} and {max}"),
                });
            }
        }
        Ok(())
    }

    /// The log's bounds: requests are kept as long as a detection may still look at them.
    pub fn limits(&self) -> Limits {
        Limits {
            per_workload: self.suspicions.per_service,
            total: self.suspicions.total,
            retention_secs: (self.window + self.wait).as_secs() + 2 * super::rank::CLOCK_SLACK_SECS,
        }
    }

    pub fn ban_policy(&self) -> BanPolicy {
        BanPolicy {
            max_ips: self.ban.max_ips,
            weak_rules: self.ban.weak_rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_named() {
        let mut cfg = CorrelationConfig::default();
        cfg.cross_node.publish_interval = Duration::from_millis(10);
        assert_eq!(
            cfg.validate().unwrap_err().to_string(),
            "correlation.cross_node.publish_interval: 10ms is not between 100ms and 1h"
        );
        let cfg = CorrelationConfig {
            window: Duration::ZERO,
            ..CorrelationConfig::default()
        };
        assert!(cfg.validate().unwrap_err().to_string().contains("window"));
    }
}
