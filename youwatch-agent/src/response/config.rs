//! The `response:` section. `config/default.yaml` documents each setting with its default.

use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::action::ActionKind;
use crate::detection::{Origin, Priority};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {
    /// Plan and print only, as `--dry-run` (which also turns this on).
    pub dry_run: bool,
    /// Which detections lead to which actions; every playbook that matches acts.
    pub playbooks: Vec<PlaybookConfig>,
    /// Pods in these namespaces are never deleted (the agent's own namespace never is).
    pub protected_namespaces: Vec<String>,
    /// Addresses never denied (CIDRs): add node, pod and service CIDRs, monitoring, offices.
    /// Loopback, link-local, unspecified and multicast addresses never are either.
    pub allowlist: Vec<IpNet>,
    pub delete_pod: DeletePodConfig,
    pub deny_ip: DenyIpConfig,
    pub quarantine: QuarantineConfig,
    pub retry: RetryConfig,
    /// Decided actions not yet applied, at most; beyond, detections wait (back-pressure to
    /// the detecting stages), never dropped.
    pub max_pending: usize,
    /// On SIGTERM, how long pending actions may still run before the agent exits (what is
    /// left stays journaled and runs at the next start). Keep it below the pod's
    /// terminationGracePeriodSeconds.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// fsync the journal of decided actions on every write (survives a node crash, not only
    /// a process kill; costs a disk flush per decision).
    pub journal_sync: bool,
}

impl Default for ResponseConfig {
    fn default() -> Self {
        Self {
            dry_run: false,
            playbooks: vec![
                PlaybookConfig {
                    name: "delete-compromised-pod".into(),
                    when: MatchConfig {
                        origins: vec![Origin::Rules, Origin::Falco],
                        min_priority: Priority::Error,
                        ..MatchConfig::default()
                    },
                    // deny_ip for a runtime detection: the clients its incident blames.
                    actions: vec![ActionKind::DeletePod, ActionKind::DenyIp],
                    ..PlaybookConfig::default()
                },
                PlaybookConfig {
                    name: "deny-waf-attacker".into(),
                    when: MatchConfig {
                        origins: vec![Origin::Waf],
                        rules: vec![crate::waf::detect::RULE_BAN.into()],
                        ..MatchConfig::default()
                    },
                    actions: vec![ActionKind::DenyIp],
                    ..PlaybookConfig::default()
                },
            ],
            protected_namespaces: vec!["kube-system".into()],
            allowlist: Vec::new(),
            delete_pod: DeletePodConfig::default(),
            deny_ip: DenyIpConfig::default(),
            quarantine: QuarantineConfig::default(),
            retry: RetryConfig::default(),
            max_pending: 10_000,
            shutdown_grace: Duration::from_secs(20),
            journal_sync: false,
        }
    }
}

/// One playbook: a detection that matches `when` gets `actions`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PlaybookConfig {
    /// Named in logs, Events and metrics.
    pub name: String,
    pub when: MatchConfig,
    pub actions: Vec<ActionKind>,
    /// Only plan (print) this playbook's actions, even when the agent acts.
    pub dry_run: bool,
    /// How long a deny_ip or quarantine lasts when the detection does not say (a WAF ban
    /// decision carries its own, growing for repeat offenders).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// Where this playbook's deny_ip is enforced.
    pub deny_ip_backends: DenyBackends,
}

/// Where a deny_ip is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DenyBackend {
    /// ingress-nginx's denylist annotation on the Ingresses serving the attacked host.
    IngressAnnotation,
    /// An IPBan object: every node with `node_ban.enabled` drops the address in its kernel.
    NodeTc,
}

impl DenyBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyBackend::IngressAnnotation => "ingress-annotation",
            DenyBackend::NodeTc => "node-tc",
        }
    }
}

/// A playbook's deny_ip backends: `[ingress-annotation]` unless it says otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DenyBackends(pub Vec<DenyBackend>);

impl Default for DenyBackends {
    fn default() -> Self {
        DenyBackends(vec![DenyBackend::IngressAnnotation])
    }
}

impl DenyBackends {
    pub fn has(&self, backend: DenyBackend) -> bool {
        self.0.contains(&backend)
    }
}

/// What a detection must be for a playbook to act. Every non-empty condition must hold.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MatchConfig {
    /// rules (own eBPF + rules), falco (the Falco fallback), waf. Empty: any.
    pub origins: Vec<Origin>,
    /// At least this severe.
    pub min_priority: Priority,
    /// Rule names (globs: `*` any run of characters). Empty: any.
    pub rules: Vec<String>,
    /// At least one of these tags. Empty: any.
    pub tags: Vec<String>,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            min_priority: Priority::Debug,
            rules: Vec::new(),
            tags: Vec::new(),
        }
    }
}

/// `response.delete_pod:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DeletePodConfig {
    /// Grace period of the deletion: 0 kills the compromised containers at once.
    pub grace_period_seconds: u32,
    /// At most this many deletions per workload (Deployment, StatefulSet...) per
    /// `rate_window`; more are refused (reported), so an attacker who keeps spawning shells
    /// cannot make the agent churn a workload.
    pub max_per_workload: u32,
    #[serde(with = "humantime_serde")]
    pub rate_window: Duration,
    /// Never delete when it would leave fewer than this many of the workload's desired
    /// replicas available: a number ("2") or a percentage ("50%", rounded up). The last
    /// available pod of a workload can always be deleted when it is compromised (its
    /// controller recreates it), so the guard never blocks a single-replica app.
    pub min_available: IntOrPercent,
    /// A deletion the replicas guard holds back is tried again until this old, then given up.
    #[serde(with = "humantime_serde")]
    pub retry_for: Duration,
}

impl Default for DeletePodConfig {
    fn default() -> Self {
        Self {
            grace_period_seconds: 0,
            max_per_workload: 5,
            rate_window: Duration::from_secs(600),
            min_available: IntOrPercent::Percent(50),
            retry_for: Duration::from_secs(600),
        }
    }
}

/// `response.deny_ip:` — the ingress-nginx denylist.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DenyIpConfig {
    /// The Ingress annotation the controller enforces (never a snippet annotation).
    pub annotation: String,
    /// The agent's own annotation: its entries and their expiry (the ban ledger), so expiry
    /// and `unban` remove only what the agent added.
    pub ledger_annotation: String,
    /// Entries on one Ingress at most (the user's and ours); a ban beyond is refused and
    /// counted.
    pub max_entries: usize,
    /// At most one patch per Ingress per window (every change reloads nginx): a ban on a
    /// quiet Ingress goes out at once, a burst waits for the window and goes out together.
    #[serde(with = "humantime_serde")]
    pub coalesce: Duration,
    /// Only Ingresses matching this label selector are patched. Empty: any.
    pub ingress_selector: String,
    /// Let loopback addresses be denied: only for labs and tests that simulate attackers on
    /// 127.0.0.0/8.
    pub allow_loopback: bool,
}

impl Default for DenyIpConfig {
    fn default() -> Self {
        Self {
            annotation: "nginx.ingress.kubernetes.io/denylist-source-range".into(),
            ledger_annotation: "youwatch.dev/denied-sources".into(),
            max_entries: 500,
            coalesce: Duration::from_millis(500),
            ingress_selector: String::new(),
            allow_loopback: false,
        }
    }
}

/// Most denylist entries per Ingress: with the ledger (about 250 bytes an entry at worst)
/// they must fit in the 256 KiB an object's annotations may hold together.
pub const MAX_DENY_ENTRIES: usize = 700;

impl DenyIpConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Setting { key, message });
        if self.max_entries > MAX_DENY_ENTRIES {
            return bad(
                "deny_ip.max_entries",
                format!(
                    "{} is more than {MAX_DENY_ENTRIES}: the entries and their ledger would not fit in an Ingress's annotations (256 KiB together)",
                    self.max_entries
                ),
            );
        }
        if let Err(e) = crate::inventory::labels::parse(&self.ingress_selector) {
            return bad("deny_ip.ingress_selector", e.to_string());
        }
        Ok(())
    }
}

/// `response.quarantine:` — deny all traffic to an app through its Ingress.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct QuarantineConfig {
    /// The allowlist annotation (`whitelist-source-range` on controllers older than 1.9).
    pub annotation: String,
    /// The agent's own annotation: the user's previous value to restore, and the expiry.
    pub ledger_annotation: String,
    /// What the allowlist is set to: an address no client has.
    pub deny_all_source: IpNet,
    /// How long a quarantine lasts when the playbook does not say.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        Self {
            annotation: "nginx.ingress.kubernetes.io/allowlist-source-range".into(),
            ledger_annotation: "youwatch.dev/quarantine".into(),
            // TEST-NET-1 (RFC 5737): documentation only, never routed.
            deny_all_source: "192.0.2.1/32".parse().unwrap_or_default(),
            ttl: Duration::from_secs(3600),
        }
    }
}

impl QuarantineConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let single = self.deny_all_source.prefix_len() == self.deny_all_source.max_prefix_len();
        if !single {
            return Err(ConfigError::Setting {
                key: "quarantine.deny_all_source",
                message: format!(
                    "{} is a range; use one address no client has (e.g. 192.0.2.1/32): the allowlist lets exactly that in",
                    self.deny_all_source
                ),
            });
        }
        Ok(())
    }
}

/// `response.retry:` — transient API errors (5xx, 429, timeouts, connection loss).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// A request without an answer within this long is abandoned and retried.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A count or a percentage (`"2"`, `2`, `"50%"`), as Kubernetes' IntOrString.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(u32),
    Percent(u32),
}

impl IntOrPercent {
    /// The count for `total`, percentages rounded up (as a PodDisruptionBudget's
    /// minAvailable).
    pub fn of(self, total: u32) -> u32 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => (u64::from(total) * u64::from(p)).div_ceil(100) as u32,
        }
    }
}

impl<'de> Deserialize<'de> for IntOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u32),
            Text(String),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "{s:?} is neither a count (\"2\") nor a percentage from 0% to 100% (\"50%\")"
            ))
        };
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(IntOrPercent::Int(n)),
            Raw::Text(s) => match s.trim().strip_suffix('%') {
                Some(p) => match p.trim().parse::<u32>() {
                    Ok(p) if p <= 100 => Ok(IntOrPercent::Percent(p)),
                    _ => Err(bad(&s)),
                },
                None => s.trim().parse().map(IntOrPercent::Int).map_err(|_| bad(&s)),
            },
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("response.playbooks[{index}]: {message}")]
    Playbook { index: usize, message: String },
    #[error("response.{key}: {message}")]
    Setting { key: &'static str, message: String },
}

impl ResponseConfig {
    /// Checks what serde cannot: names, globs, non-zero limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::HashSet::new();
        for (index, p) in self.playbooks.iter().enumerate() {
            let bad = |message: String| ConfigError::Playbook { index, message };
            if p.name.is_empty() {
                return Err(bad("needs a name".into()));
            }
            if !names.insert(p.name.as_str()) {
                return Err(bad(format!("the name {:?} is used twice", p.name)));
            }
            if p.actions.is_empty() {
                return Err(bad(format!(
                    "{:?} has no actions: list delete_pod, deny_ip and/or quarantine",
                    p.name
                )));
            }
            if p.deny_ip_backends.0.is_empty() {
                return Err(bad(format!(
                    "{:?}: deny_ip_backends is empty: list ingress-annotation, node-tc or both",
                    p.name
                )));
            }
            rule_globs(&p.when.rules).map_err(bad)?;
        }
        let zero = |key, bad: bool| {
            if bad {
                Err(ConfigError::Setting {
                    key,
                    message: "must be more than 0".into(),
                })
            } else {
                Ok(())
            }
        };
        zero("max_pending", self.max_pending == 0)?;
        zero("deny_ip.max_entries", self.deny_ip.max_entries == 0)?;
        zero(
            "delete_pod.rate_window",
            self.delete_pod.rate_window.is_zero(),
        )?;
        zero(
            "retry.request_timeout",
            self.retry.request_timeout.is_zero(),
        )?;
        self.deny_ip.validate()?;
        self.quarantine.validate()?;
        self.distinct_annotations()
    }

    /// The four annotations the Ingress actions use are different ones, and none is a
    /// snippet (off by default since ingress-nginx 1.9, the path of CVE-2021-25742).
    fn distinct_annotations(&self) -> Result<(), ConfigError> {
        let names = [
            ("deny_ip.annotation", &self.deny_ip.annotation),
            ("deny_ip.ledger_annotation", &self.deny_ip.ledger_annotation),
            ("quarantine.annotation", &self.quarantine.annotation),
            (
                "quarantine.ledger_annotation",
                &self.quarantine.ledger_annotation,
            ),
        ];
        for (i, (key, name)) in names.iter().enumerate() {
            let bad = |message: String| Err(ConfigError::Setting { key, message });
            if name.is_empty() || name.contains("snippet") {
                return bad(format!(
                    "{name:?}: name an annotation that holds source ranges or the agent's record, never a snippet"
                ));
            }
            if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
                return bad(format!("{name:?} is response.{other} already"));
            }
        }
        Ok(())
    }
}

/// The rule-name globs of a playbook.
pub fn rule_globs(patterns: &[String]) -> Result<GlobSet, String> {
    let mut set = GlobSetBuilder::new();
    for p in patterns {
        let glob = Glob::new(p).map_err(|e| format!("rule pattern {p:?}: {}", e.kind()))?;
        set.add(glob);
    }
    set.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_percent_of() {
        assert_eq!(IntOrPercent::Percent(50).of(3), 2);
        assert_eq!(IntOrPercent::Percent(50).of(1), 1);
    }

    #[test]
    fn playbook_errors_name_the_playbook() {
        let mut c = ResponseConfig::default();
        c.playbooks[1].actions.clear();
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("playbooks[1]") && err.contains("deny-waf-attacker"),
            "{err}"
        );
        let mut c = ResponseConfig::default();
        c.playbooks[0].when.rules = vec!["[".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("playbooks[0]")
        );
        ResponseConfig::default().validate().unwrap();
    }

    #[test]
    fn ingress_settings_are_checked_by_name() {
        let check = |change: fn(&mut ResponseConfig), key: &str| {
            let mut c = ResponseConfig::default();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        };
        check(|c| c.deny_ip.max_entries = 5000, "deny_ip.max_entries");
        check(
            |c| c.deny_ip.ingress_selector = "tier in (web".into(),
            "deny_ip.ingress_selector",
        );
        check(
            |c| c.deny_ip.annotation = "nginx.ingress.kubernetes.io/server-snippet".into(),
            "deny_ip.annotation",
        );
        check(
            |c| c.quarantine.deny_all_source = "0.0.0.0/0".parse().unwrap(),
            "quarantine.deny_all_source",
        );
        check(
            |c| c.quarantine.ledger_annotation = "youwatch.dev/denied-sources".into(),
            "quarantine.ledger_annotation",
        );
    }
}
