//! Playbooks: which detection leads to which actions. Every playbook whose conditions hold
//! contributes its actions; an action the detection cannot carry (a pod deletion for a WAF
//! attacker, a ban without an address) is skipped with a debug line. A `deny_ip` for a
//! runtime detection in a pod bans the clients its incident blames ([`IncidentBan`]),
//! once the correlation has decided them.

use std::time::{Duration, SystemTime};

use globset::GlobSet;

use super::{
    action::{Action, ActionKind, DeletePod, DenyIp, Quarantine, QuarantineTarget},
    config::{ConfigError, MatchConfig, PlaybookConfig, ResponseConfig, rule_globs},
};
use crate::detection::{Detection, Subject};

/// Ban length when neither the detection nor the playbook says.
const DEFAULT_BAN: Duration = Duration::from_secs(600);

/// One decision of one playbook, before it gets an id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub playbook: String,
    pub action: Action,
    pub give_up_at: SystemTime,
    pub dry_run: bool,
}

/// A playbook's `deny_ip` for a runtime detection in a pod: ban the clients its incident
/// blames (see `crate::correlate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentBan {
    pub playbook: String,
    /// The playbook's `ttl`; `None`: the correlation's (a repeat offender's ban).
    pub ttl: Option<Duration>,
    pub dry_run: bool,
}

struct Playbook {
    config: PlaybookConfig,
    rules: GlobSet,
}

/// The configured playbooks, compiled.
pub struct Playbooks {
    playbooks: Vec<Playbook>,
    grace_period_seconds: u32,
    delete_retry_for: Duration,
    quarantine_ttl: Duration,
}

impl Playbooks {
    pub fn new(config: &ResponseConfig) -> Result<Playbooks, ConfigError> {
        config.validate()?;
        let playbooks = config
            .playbooks
            .iter()
            .enumerate()
            .map(|(index, p)| {
                Ok(Playbook {
                    rules: rule_globs(&p.when.rules)
                        .map_err(|message| ConfigError::Playbook { index, message })?,
                    config: p.clone(),
                })
            })
            .collect::<Result<_, ConfigError>>()?;
        Ok(Playbooks {
            playbooks,
            grace_period_seconds: config.delete_pod.grace_period_seconds,
            delete_retry_for: config.delete_pod.retry_for,
            quarantine_ttl: config.quarantine.ttl,
        })
    }

    /// The actions `d` calls for, decided at `now`.
    pub fn decide(&self, d: &Detection, now: SystemTime) -> Vec<Planned> {
        let mut out = Vec::new();
        for p in &self.playbooks {
            if !matches(&p.config.when, &p.rules, d) {
                continue;
            }
            for kind in &p.config.actions {
                match self.action(*kind, &p.config, d, now) {
                    Some((action, give_up_at)) => out.push(Planned {
                        playbook: p.config.name.clone(),
                        action,
                        give_up_at,
                        dry_run: p.config.dry_run,
                    }),
                    // Decided by the incident (`incident_bans`).
                    None if *kind == ActionKind::DenyIp && matches!(d.subject, Subject::Pod(_)) => {
                    }
                    None => tracing::debug!(
                        playbook = p.config.name,
                        action = kind.as_str(),
                        rule = d.rule,
                        "the detection does not name what this action needs; skipped"
                    ),
                }
            }
        }
        out
    }

    /// The incident bans `d` calls for: one per matching playbook with `deny_ip`, for a
    /// detection in a pod.
    pub fn incident_bans(&self, d: &Detection) -> Vec<IncidentBan> {
        if !matches!(d.subject, Subject::Pod(_)) {
            return Vec::new();
        }
        self.playbooks
            .iter()
            .filter(|p| p.config.actions.contains(&ActionKind::DenyIp))
            .filter(|p| matches(&p.config.when, &p.rules, d))
            .map(|p| IncidentBan {
                playbook: p.config.name.clone(),
                ttl: (!p.config.ttl.is_zero()).then_some(p.config.ttl),
                dry_run: p.config.dry_run,
            })
            .collect()
    }

    fn action(
        &self,
        kind: super::action::ActionKind,
        playbook: &PlaybookConfig,
        d: &Detection,
        now: SystemTime,
    ) -> Option<(Action, SystemTime)> {
        use super::action::ActionKind as K;
        let ttl = |fallback: Duration| {
            if playbook.ttl.is_zero() {
                fallback
            } else {
                playbook.ttl
            }
        };
        match (kind, &d.subject) {
            (K::DeletePod, Subject::Pod(pod)) => Some((
                Action::DeletePod(DeletePod {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    uid: pod.uid.clone(),
                    owner: pod.owner.clone(),
                    labels: pod.labels.clone(),
                    grace_period_seconds: self.grace_period_seconds,
                }),
                now + self.delete_retry_for,
            )),
            (K::DenyIp, Subject::Attacker { ip, host, ban_for }) => {
                let until = now + ban_for.unwrap_or_else(|| ttl(DEFAULT_BAN));
                let offense = d
                    .output_fields
                    .get("waf.offense")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok())
                    .unwrap_or(1);
                Some((
                    Action::DenyIp(DenyIp {
                        ip: *ip,
                        host: host.clone(),
                        until,
                        offense,
                    }),
                    until,
                ))
            }
            (K::Quarantine, subject) => {
                let target = match subject {
                    Subject::Pod(pod) => QuarantineTarget::Pod {
                        namespace: pod.namespace.clone(),
                        name: pod.name.clone(),
                        labels: pod.labels.clone(),
                    },
                    Subject::Attacker {
                        host: Some(host), ..
                    } => QuarantineTarget::Host { host: host.clone() },
                    _ => return None,
                };
                let until = now + ttl(self.quarantine_ttl);
                Some((Action::Quarantine(Quarantine { target, until }), until))
            }
            _ => None,
        }
    }
}

fn matches(when: &MatchConfig, rules: &GlobSet, d: &Detection) -> bool {
    // The stage's own reports are never acted on. Priority: lower is more severe.
    d.origin != crate::detection::Origin::Response
        && (when.origins.is_empty() || when.origins.contains(&d.origin))
        && d.priority <= when.min_priority
        && (when.rules.is_empty() || rules.is_match(&d.rule))
        && (when.tags.is_empty() || d.tags.iter().any(|t| when.tags.contains(t)))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::detection::{Origin, PodRef, Priority};

    fn detection(origin: Origin, priority: Priority, subject: Subject) -> Detection {
        Detection {
            time: UNIX_EPOCH,
            origin,
            rule: "Shell in a Juice Shop pod".into(),
            priority,
            output: String::new(),
            tags: vec!["shell".into()],
            output_fields: Default::default(),
            subject,
        }
    }

    fn pod() -> Subject {
        Subject::Pod(PodRef {
            namespace: "shop".into(),
            name: "juice-shop-1".into(),
            uid: Some("u-1".into()),
            ..PodRef::default()
        })
    }

    #[test]
    fn defaults_delete_on_severe_exec_detections_and_deny_waf_bans() {
        let p = Playbooks::new(&ResponseConfig::default()).unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let planned = p.decide(&detection(Origin::Rules, Priority::Critical, pod()), now);
        assert_eq!(planned.len(), 1);
        assert_eq!(planned[0].playbook, "delete-compromised-pod");
        assert!(
            matches!(&planned[0].action, Action::DeletePod(d) if d.uid.as_deref() == Some("u-1"))
        );
        // Falco fallback: the same.
        assert_eq!(
            p.decide(&detection(Origin::Falco, Priority::Error, pod()), now)
                .len(),
            1
        );
        // Notice is below the bar.
        assert!(
            p.decide(&detection(Origin::Rules, Priority::Notice, pod()), now)
                .is_empty()
        );

        let mut ban = detection(
            Origin::Waf,
            Priority::Critical,
            Subject::Attacker {
                ip: "203.0.113.7".parse().unwrap(),
                host: Some("shop.example".into()),
                ban_for: Some(Duration::from_secs(60)),
            },
        );
        ban.rule = crate::waf::detect::RULE_BAN.into();
        let planned = p.decide(&ban, now);
        assert_eq!(planned.len(), 1);
        let Action::DenyIp(deny) = &planned[0].action else {
            panic!()
        };
        assert_eq!(deny.until, now + Duration::from_secs(60));
        assert_eq!(planned[0].give_up_at, deny.until);
        // A WAF attack report (not a ban decision) is not acted on.
        ban.rule = crate::waf::detect::RULE_ATTACK.into();
        assert!(p.decide(&ban, now).is_empty());
    }

    #[test]
    fn deny_ip_for_a_runtime_detection_bans_through_its_incident() {
        let mut config = ResponseConfig::default();
        config.playbooks[0].ttl = Duration::from_secs(90);
        let p = Playbooks::new(&config).unwrap();
        let shell = detection(Origin::Rules, Priority::Critical, pod());
        assert_eq!(
            p.incident_bans(&shell),
            [IncidentBan {
                playbook: "delete-compromised-pod".into(),
                ttl: Some(Duration::from_secs(90)),
                dry_run: false,
            }]
        );
        // Not now: the pod's deletion is the only action decided at once.
        assert_eq!(p.decide(&shell, UNIX_EPOCH).len(), 1);
        // Nothing to correlate below the bar, nor for a WAF attacker.
        assert!(
            p.incident_bans(&detection(Origin::Rules, Priority::Notice, pod()))
                .is_empty()
        );
        let attacker = Subject::Attacker {
            ip: "203.0.113.7".parse().unwrap(),
            host: None,
            ban_for: None,
        };
        assert!(
            p.incident_bans(&detection(Origin::Rules, Priority::Critical, attacker))
                .is_empty()
        );
    }

    #[test]
    fn an_action_the_subject_cannot_carry_is_skipped() {
        let mut config = ResponseConfig::default();
        config.playbooks[0]
            .actions
            .push(super::super::action::ActionKind::DenyIp);
        let p = Playbooks::new(&config).unwrap();
        let planned = p.decide(
            &detection(Origin::Rules, Priority::Critical, pod()),
            UNIX_EPOCH,
        );
        assert_eq!(planned.len(), 1, "deny_ip needs an attacker address");
    }
}
