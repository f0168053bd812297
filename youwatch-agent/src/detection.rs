//! `Detection`: what every detecting stage (own rules, Falco fallback, WAF scoring) hands to
//! the response stage.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    str::FromStr,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

/// Falco's priorities, most severe first (the order Falco compares them in). Read from config
/// and alerts as [`FromStr`] reads it: any case, with Falco's aliases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

impl Priority {
    pub const ALL: [Priority; 8] = [
        Priority::Emergency,
        Priority::Alert,
        Priority::Critical,
        Priority::Error,
        Priority::Warning,
        Priority::Notice,
        Priority::Informational,
        Priority::Debug,
    ];

    /// The spelling Falco writes in JSON alerts (`"Critical"`, `"Warning"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Emergency => "Emergency",
            Priority::Alert => "Alert",
            Priority::Critical => "Critical",
            Priority::Error => "Error",
            Priority::Warning => "Warning",
            Priority::Notice => "Notice",
            Priority::Informational => "Informational",
            Priority::Debug => "Debug",
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "unknown priority {0:?}: expected one of emergency, alert, critical, error, warning, notice, informational (info), debug"
)]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    /// Case-insensitive, with Falco's aliases (`info`, `warn`, `err`, `crit`, `emerg`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "emergency" | "emerg" => Priority::Emergency,
            "alert" => Priority::Alert,
            "critical" | "crit" => Priority::Critical,
            "error" | "err" => Priority::Error,
            "warning" | "warn" => Priority::Warning,
            "notice" => Priority::Notice,
            "informational" | "info" => Priority::Informational,
            "debug" => Priority::Debug,
            _ => return Err(UnknownPriority(s.to_owned())),
        })
    }
}

impl<'de> Deserialize<'de> for Priority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which stage produced a detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Our own rules on our own eBPF exec events.
    Rules,
    /// An alert received from an existing Falco.
    Falco,
    /// ModSecurity audit-log scoring.
    Waf,
    /// The response stage reporting an action it took (never acted on).
    Response,
}

/// A pod as a detection names it. `uid` lets the response delete exactly this pod and never a
/// same-named replacement.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub container_id: Option<String>,
    pub container_name: Option<String>,
    /// Top controller (`("Deployment", "juice-shop")`), when the detecting stage knows it
    /// (the inventory does; a Falco alert does not, the response then reads the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(String, String)>,
    /// The pod's labels, when known (the ReplicaSet behind a Deployment is named from
    /// `pod-template-hash`; quarantine finds the pod's Services by them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// What the detection is about: the thing a response would act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// A process in a pod did something (exec rules, Falco alerts).
    Pod(PodRef),
    /// A client attacked through the ingress; `ban_for` is the scoring stage's verdict.
    Attacker {
        ip: IpAddr,
        /// The attacked virtual host (`Host` header), to find the Ingress to patch.
        host: Option<String>,
        ban_for: Option<Duration>,
    },
    /// Nothing to act on (e.g. an exec outside any pod in node-local mode).
    None,
}

/// One detection, in a shape close to a Falco alert so it can be emitted as one.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Detection {
    pub time: SystemTime,
    pub origin: Origin,
    /// Rule name (Falco rule, or WAF decision name).
    pub rule: String,
    pub priority: Priority,
    /// Rendered output line.
    pub output: String,
    pub tags: Vec<String>,
    /// Field values the output used (Falco's `output_fields`).
    pub output_fields: BTreeMap<String, serde_json::Value>,
    pub subject: Subject,
}
