//! A DenyIp through the backends its playbook names (`deny_ip_backends`): the Ingress
//! denylist annotation ([`super::ingress`]), the node ban's IPBan ([`super::node_tc`]), or
//! both at once — one outcome for the action, the detail naming each backend's.

use std::collections::BTreeMap;

use super::{
    Finished,
    action::{Decided, DenyIp},
    config::{DenyBackend, DenyBackends, ResponseConfig},
    ingress::IngressHandle,
    metrics::Outcome,
    node_tc::NodeTcBans,
};

/// Each playbook's backends, by name.
#[derive(Clone, Debug, Default)]
pub struct Backends(BTreeMap<String, DenyBackends>);

impl Backends {
    pub fn new(config: &ResponseConfig) -> Backends {
        Backends(
            config
                .playbooks
                .iter()
                .map(|p| (p.name.clone(), p.deny_ip_backends.clone()))
                .collect(),
        )
    }

    /// The backends of `playbook`; the default (`ingress-annotation`) for a playbook no
    /// longer configured (an action journaled before a config change).
    pub fn of(&self, playbook: &str) -> DenyBackends {
        self.0.get(playbook).cloned().unwrap_or_default()
    }
}

/// Carries out `d` through `backends`.
pub async fn deny(
    backends: &DenyBackends,
    ingress: &IngressHandle,
    node_tc: &NodeTcBans,
    decided: &Decided,
    d: &DenyIp,
) -> Finished {
    let on_ingress = backends.has(DenyBackend::IngressAnnotation);
    let on_node = backends.has(DenyBackend::NodeTc);
    match (on_ingress, on_node) {
        (true, true) => {
            let (a, b) = futures::join!(ingress.run(decided), node_tc.run(decided, d));
            combine(&[
                (DenyBackend::IngressAnnotation, a),
                (DenyBackend::NodeTc, b),
            ])
        }
        (false, true) => node_tc.run(decided, d).await,
        _ => ingress.run(decided).await,
    }
}

/// One outcome for several backends: a failure anywhere fails the action (a later detection
/// retries; what was done says so then), else applied anywhere, else the first's.
pub fn combine(parts: &[(DenyBackend, Finished)]) -> Finished {
    let rank = |o: Outcome| match o {
        Outcome::Failed => 0,
        Outcome::GaveUp => 1,
        Outcome::Applied => 2,
        Outcome::DryRun => 3,
        Outcome::Refused => 4,
        Outcome::AlreadyDone => 5,
        Outcome::Deduplicated => 6,
    };
    let outcome = parts
        .iter()
        .map(|(_, f)| f.outcome)
        .min_by_key(|o| rank(*o))
        .unwrap_or(Outcome::AlreadyDone);
    let detail = parts
        .iter()
        .map(|(b, f)| format!("{}: {} ({})", b.as_str(), f.detail, f.outcome.as_str()))
        .collect::<Vec<_>>()
        .join("; ");
    Finished::new(outcome, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::response::config::PlaybookConfig;

    #[test]
    fn outcomes_of_both_backends() {
        let f = |o| Finished::new(o, "d");
        let both = |a, b| {
            combine(&[
                (DenyBackend::IngressAnnotation, f(a)),
                (DenyBackend::NodeTc, f(b)),
            ])
        };
        assert_eq!(
            both(Outcome::Refused, Outcome::Applied).outcome,
            Outcome::Applied
        );
        assert_eq!(
            both(Outcome::Applied, Outcome::GaveUp).outcome,
            Outcome::GaveUp
        );
        assert_eq!(
            both(Outcome::AlreadyDone, Outcome::Refused).outcome,
            Outcome::Refused
        );
        assert_eq!(
            both(Outcome::Applied, Outcome::AlreadyDone).detail,
            "ingress-annotation: d (applied); node-tc: d (already_done)"
        );
    }

    #[test]
    fn each_playbook_its_backends() {
        let mut config = ResponseConfig::default();
        config.playbooks.push(PlaybookConfig {
            name: "kernel".into(),
            deny_ip_backends: DenyBackends(vec![DenyBackend::NodeTc]),
            ..PlaybookConfig::default()
        });
        let b = Backends::new(&config);
        assert_eq!(b.of("kernel").0, [DenyBackend::NodeTc]);
        assert_eq!(
            b.of("deny-waf-attacker").0,
            [DenyBackend::IngressAnnotation]
        );
        assert_eq!(b.of("gone").0, [DenyBackend::IngressAnnotation]);
    }
}
