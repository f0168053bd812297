//! What the response stage decides: an [`Action`] with the [`Evidence`] that caused it, as a
//! [`Decided`] record — the unit journaled, executed, retried, reported in an Event and
//! printed in dry-run.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

use crate::detection::{Detection, Origin, Priority};

/// One thing to do in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    DeletePod(DeletePod),
    DenyIp(DenyIp),
    Quarantine(Quarantine),
}

/// Delete a compromised pod; its controller recreates it from the clean image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePod {
    pub namespace: String,
    pub name: String,
    /// Deleted with this `uid` precondition, so a same-named replacement is never touched.
    /// Unknown (a Falco alert without `k8s.pod.uid`): read from the pod before deleting.
    pub uid: Option<String>,
    /// Top controller (`("Deployment", "juice-shop")`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub grace_period_seconds: u32,
}

/// Deny a client address on the Ingress(es) of the attacked host until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DenyIp {
    pub ip: IpAddr,
    /// The attacked virtual host; `None`: every Ingress the agent manages.
    pub host: Option<String>,
    #[serde(with = "unix_secs")]
    pub until: SystemTime,
    /// The scorer's offense count (a repeat offender's ban is longer).
    pub offense: u32,
}

/// Deny all traffic to an app through its Ingress(es) until `until`, keeping the user's own
/// allowlist to restore.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub target: QuarantineTarget,
    #[serde(with = "unix_secs")]
    pub until: SystemTime,
}

/// Which app to quarantine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum QuarantineTarget {
    /// The Ingresses routing to the Services that select this pod.
    Pod {
        namespace: String,
        name: String,
        labels: BTreeMap<String, String>,
    },
    /// The Ingresses serving this host.
    Host { host: String },
}

impl Action {
    /// `delete_pod`, `deny_ip`, `quarantine` (metric label, log field, config spelling).
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::DeletePod(_) => ActionKind::DeletePod,
            Action::DenyIp(_) => ActionKind::DenyIp,
            Action::Quarantine(_) => ActionKind::Quarantine,
        }
    }

    /// What makes two actions "the same" while one is in force: one deletion per pod, one
    /// ban per (address, host), one quarantine per app.
    pub fn key(&self) -> String {
        match self {
            Action::DeletePod(p) => format!(
                "{DELETE_POD_KEY}{}/{}/{}",
                p.namespace,
                p.name,
                p.uid.as_deref().unwrap_or("")
            ),
            Action::DenyIp(d) => format!("deny_ip/{}/{}", d.ip, d.host.as_deref().unwrap_or("*")),
            Action::Quarantine(q) => match &q.target {
                QuarantineTarget::Pod {
                    namespace, labels, ..
                } => format!("quarantine/pod/{namespace}/{labels:?}"),
                QuarantineTarget::Host { host } => format!("quarantine/host/{host}"),
            },
        }
    }
}

/// How [`Action::key`] starts for a pod deletion.
pub const DELETE_POD_KEY: &str = "delete_pod/";

/// The actions a playbook can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    DeletePod,
    DenyIp,
    Quarantine,
}

impl ActionKind {
    pub const ALL: [ActionKind; 3] = [
        ActionKind::DeletePod,
        ActionKind::DenyIp,
        ActionKind::Quarantine,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::DeletePod => "delete_pod",
            ActionKind::DenyIp => "deny_ip",
            ActionKind::Quarantine => "quarantine",
        }
    }
}

/// Output fields worth keeping as evidence (the rest of the alert is in the alert line).
const EVIDENCE_FIELDS: &[&str] = &[
    "proc.pid",
    "proc.cmdline",
    "proc.exepath",
    "proc.pname",
    "user.name",
    "container.id",
    "container.name",
    "container.image.repository",
    "waf.client_ip",
    "waf.host",
    "waf.classes",
    "waf.score",
    "waf.blocked",
    "waf.rule_id",
    "waf.method",
    "waf.uri",
    "waf.unique_id",
    "waf.offense",
    "incident.pod",
    "incident.rank",
];

/// Longest output text kept (an Event's note holds 1 kB).
const MAX_OUTPUT: usize = 512;

/// Why an action was decided: the detection, trimmed to what an Event and a log line need.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub rule: String,
    pub priority: Priority,
    pub origin: Origin,
    #[serde(with = "unix_secs")]
    pub time: SystemTime,
    pub output: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, serde_json::Value>,
}

impl Eq for Evidence {}

impl Evidence {
    pub fn of(d: &Detection) -> Evidence {
        Evidence {
            rule: d.rule.clone(),
            priority: d.priority,
            origin: d.origin,
            time: d.time,
            output: truncate(&d.output, MAX_OUTPUT),
            fields: EVIDENCE_FIELDS
                .iter()
                .filter_map(|k| {
                    let v = d.output_fields.get(*k)?;
                    (!v.is_null()).then(|| ((*k).to_owned(), v.clone()))
                })
                .collect(),
        }
    }

    /// One line for an Event note: rule, priority and the evidence fields.
    pub fn summary(&self) -> String {
        let mut s = format!("{} ({}, {:?})", self.rule, self.priority, self.origin);
        for (k, v) in &self.fields {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            s.push_str(&format!(" {k}={v}"));
        }
        truncate(&s, 900)
    }
}

/// An action decided by a playbook, with everything needed to carry it out after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decided {
    /// Unique per agent (journal sequence).
    pub id: u64,
    pub playbook: String,
    pub action: Action,
    pub evidence: Evidence,
    #[serde(with = "unix_secs")]
    pub decided_at: SystemTime,
    /// Retried until applied or until this time; then given up, reported.
    #[serde(with = "unix_secs")]
    pub give_up_at: SystemTime,
    /// This playbook only plans (client dry-run), whatever the agent's mode.
    #[serde(default)]
    pub dry_run: bool,
}

impl Decided {
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.decided_at).unwrap_or_default()
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `SystemTime` as whole seconds since the Unix epoch (journal and dry-run output).
pub mod unix_secs {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        Ok(UNIX_EPOCH + Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Seconds since the Unix epoch.
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decided_round_trips_through_json() {
        let d = Decided {
            id: 7,
            playbook: "deny-waf-attacker".into(),
            action: Action::DenyIp(DenyIp {
                ip: "203.0.113.9".parse().unwrap(),
                host: Some("shop.example".into()),
                until: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                offense: 2,
            }),
            evidence: Evidence {
                rule: "WAF attacker to ban".into(),
                priority: Priority::Critical,
                origin: Origin::Waf,
                time: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
                output: "x".into(),
                fields: [("waf.rule_id".to_owned(), serde_json::json!(942100))].into(),
            },
            decided_at: UNIX_EPOCH + Duration::from_secs(1_700_000_001),
            give_up_at: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            dry_run: false,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(json.contains(r#""action":"deny_ip""#), "{json}");
        assert_eq!(serde_json::from_str::<Decided>(&json).unwrap(), d);
    }

    #[test]
    fn output_is_cut_on_a_char_boundary() {
        let s = "é".repeat(600);
        let t = truncate(&s, MAX_OUTPUT);
        assert!(t.len() <= MAX_OUTPUT + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }
}
