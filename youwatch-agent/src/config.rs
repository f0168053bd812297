//! The agent's configuration: one YAML document, one section per stage. Each section's type
//! lives in its stage's module; this file only assembles them and loads the file.
//!
//! `config/default.yaml` is embedded in the binary, is the configuration used when no
//! `--config` is given, and doubles as the commented reference of every setting.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{
    correlate, enforce, inputs, inventory, netban, response, rules, sensor, telemetry, waf,
};

pub mod check;
pub mod reference;
#[cfg(test)]
mod sections;

/// The embedded default configuration (and reference), `youwatch-agent/config/default.yaml`.
pub const DEFAULT_YAML: &str = include_str!("../config/default.yaml");

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub agent: AgentConfig,
    pub sensor: sensor::SensorConfig,
    pub enforce: enforce::EnforceConfig,
    pub inventory: inventory::InventoryConfig,
    pub rules: rules::RulesConfig,
    pub falco: inputs::falco::FalcoConfig,
    pub waf: waf::WafConfig,
    pub response: response::ResponseConfig,
    pub correlation: correlate::CorrelationConfig,
    pub node_ban: netban::NodeBanConfig,
    pub telemetry: telemetry::TelemetryConfig,
}

/// Settings of the agent process itself.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// The Kubernetes node this agent runs on. Empty: taken from `$NODE_NAME` (the DaemonSet
    /// sets it from `spec.nodeName`), else the host name.
    pub node_name: String,
    /// Where the agent keeps state across restarts (tail cursors, ban expiry...).
    pub state_dir: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: String::new(),
            state_dir: PathBuf::from("/var/lib/youwatch"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config file {path} is not valid: {message}\n(`youwatch-agent config default` prints a commented reference)"
    )]
    Parse { path: PathBuf, message: String },
}

impl Config {
    /// The embedded defaults.
    pub fn embedded() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_YAML, Path::new("<embedded default.yaml>"))
    }

    /// Loads `path`, or the embedded defaults when `None`. Settings missing from the file take
    /// their default value; an unknown key is an error (it is nearly always a typo).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Self::embedded(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::parse(&text, path)
            }
        }
    }

    /// Parses YAML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        // An empty document means "all defaults".
        if text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })
    }

    /// The node name: config, else `$NODE_NAME`, else the host name.
    pub fn node_name(&self) -> String {
        if !self.agent.node_name.is_empty() {
            return self.agent.node_name.clone();
        }
        if let Ok(name) = std::env::var("NODE_NAME")
            && !name.is_empty()
        {
            return name;
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_reference_is_the_default() {
        // default.yaml documents every setting with its default value: keep the two equal.
        assert_eq!(Config::embedded().unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("agent:\n  nod_name: x\n", Path::new("my.yaml")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("my.yaml") && msg.contains("nod_name"), "{msg}");
    }
}
