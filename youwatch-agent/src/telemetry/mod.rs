//! Telemetry: Prometheus metrics, health, and the agent's HTTP listener.

pub mod alert;
pub mod by_reason;
pub mod health;
pub mod http;

use std::net::SocketAddr;

use serde::Deserialize;

/// `telemetry:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Address of the agent's HTTP port (`/metrics`, `/healthz`, `/readyz`, `POST /falco`).
    /// Empty string: no HTTP listener.
    pub listen: String,
    /// Falco-format JSON alerts (stdout, file).
    pub alerts: alert::AlertConfig,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9376".to_owned(),
            alerts: alert::AlertConfig::default(),
        }
    }
}

impl TelemetryConfig {
    /// The listen address, `None` when disabled.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|e| {
            format!(
                "telemetry.listen {:?} is not an address like 0.0.0.0:9376: {e}",
                self.listen
            )
        })
    }
}
