//! Which requests could have led to a runtime detection, most likely first, and which of
//! their clients to ban.
//!
//! A candidate is a request to one of the pod's workloads made within the window before the
//! detection. Ranked by: code-execution classes (RCE, LFI, RFI, PHP, Java, Node.js/generic
//! injection) before other attacks before anomalies; shown by a rule that rarely misfires
//! before weak rules alone; nearest in time; a request that got through (detection-only, or
//! below the threshold) before a blocked one (a blocked request never reached the app, though
//! its client is still an attacker).

use std::{collections::BTreeSet, net::IpAddr};

use super::suspicion::{Suspicion, Tier, Workload};

/// Audit-log times are whole seconds and nodes' clocks differ a little: a request logged up
/// to this long after the detection still counts, and the window is as much longer.
pub const CLOCK_SLACK_SECS: u64 = 2;

/// A request that may have led to the detection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub suspicion: Suspicion,
    pub workload: Workload,
    /// The node whose WAF saw it; `None`: this agent's own.
    pub seen_by: Option<String>,
}

/// Whether a request made at `time` falls in the `window_secs` before a detection at `at`.
pub fn in_window(time: u64, at: u64, window_secs: u64) -> bool {
    time.saturating_add(window_secs + CLOCK_SLACK_SECS) >= at
        && time <= at.saturating_add(CLOCK_SLACK_SECS)
}

/// `candidates` without repeats (the same request reported by two agents: the first kept),
/// most likely first for a detection at `at` (Unix seconds).
pub fn rank(candidates: Vec<Candidate>, at: u64) -> Vec<Candidate> {
    let mut unique: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if !unique
            .iter()
            .any(|u| u.suspicion.same_request(&c.suspicion))
        {
            unique.push(c);
        }
    }
    unique.sort_by(|a, b| key(a, at).cmp(&key(b, at)));
    unique
}

fn key(c: &Candidate, at: u64) -> (Tier, bool, u64, bool, IpAddr, &str) {
    let s = &c.suspicion;
    (
        s.tier(),
        !s.strong_attack(),
        s.time.abs_diff(at),
        s.blocked,
        s.ip,
        &s.unique_id,
    )
}

/// Which clients an incident bans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanPolicy {
    /// Distinct addresses at most.
    pub max_ips: usize,
    /// Also ban a client whose requests show an attack class only through rules that misfire
    /// on ordinary text (weight < 1 in `waf.scoring.rule_weights`).
    pub weak_rules: bool,
}

impl BanPolicy {
    /// Why the client of `s` is not banned, if so.
    pub fn excludes(&self, s: &Suspicion) -> Option<&'static str> {
        if s.protected {
            return Some("the WAF never bans this client (waf.client_ip)");
        }
        if s.tier() == Tier::Anomaly {
            return Some("no attack class");
        }
        if !self.weak_rules && !s.strong_attack() {
            return Some("attack classes only from rules that misfire on ordinary text");
        }
        None
    }

    /// Indexes into `ranked` of the candidates whose clients to ban: the first of each
    /// address the policy allows, at most `max_ips`.
    pub fn choose(&self, ranked: &[Candidate]) -> Vec<usize> {
        let mut chosen = Vec::new();
        let mut ips = BTreeSet::new();
        for (i, c) in ranked.iter().enumerate() {
            if ips.len() >= self.max_ips {
                break;
            }
            if self.excludes(&c.suspicion).is_none() && ips.insert(c.suspicion.ip) {
                chosen.push(i);
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::log::tests::suspicion, waf::classify::Class};

    fn candidate(ip: &str, time: u64, class: Class) -> Candidate {
        Candidate {
            suspicion: suspicion(ip, time, class),
            workload: Workload {
                namespace: "shop".into(),
                service: "juice-shop".into(),
            },
            seen_by: None,
        }
    }

    fn ips(ranked: &[Candidate]) -> Vec<String> {
        ranked.iter().map(|c| c.suspicion.ip.to_string()).collect()
    }

    #[test]
    fn the_window_bound_holds_with_slack() {
        assert!(in_window(1000, 1060, 60));
        assert!(in_window(998, 1060, 60), "two seconds of slack");
        assert!(!in_window(997, 1060, 60));
        assert!(
            in_window(1062, 1060, 60),
            "logged in the same second, clocks apart"
        );
        assert!(!in_window(1063, 1060, 60), "made after the detection");
        assert!(in_window(0, 0, 0));
    }

    #[test]
    fn code_execution_first_then_strength_then_nearest_then_not_blocked() {
        let mut weak_rce = candidate("203.0.113.5", 1059, Class::Rce);
        weak_rce.suspicion.strong = Default::default();
        let mut blocked = candidate("203.0.113.6", 1050, Class::Lfi);
        blocked.suspicion.blocked = true;
        let ranked = rank(
            vec![
                candidate("203.0.113.1", 1059, Class::Sqli),
                candidate("203.0.113.2", 1059, Class::Protocol),
                candidate("203.0.113.3", 1030, Class::Rce),
                candidate("203.0.113.4", 1050, Class::Php),
                weak_rce,
                blocked,
            ],
            1060,
        );
        assert_eq!(
            ips(&ranked),
            [
                "203.0.113.4", // code execution, strong, 10 s before, got through
                "203.0.113.6", // the same, but blocked
                "203.0.113.3", // code execution, strong, 30 s before
                "203.0.113.5", // code execution from a weak rule only
                "203.0.113.1", // an attack
                "203.0.113.2", // an anomaly
            ]
        );
    }

    #[test]
    fn one_request_seen_twice_is_one_candidate() {
        let local = candidate("203.0.113.1", 1000, Class::Rce);
        let mut remote = local.clone();
        remote.seen_by = Some("node-b".into());
        let ranked = rank(vec![local, remote], 1000);
        assert_eq!(ranked.len(), 1);
        assert_eq!(ranked[0].seen_by, None);
    }

    #[test]
    fn bans_attackers_only_bounded() {
        let mut protected = candidate("10.0.0.1", 1000, Class::Rce);
        protected.suspicion.protected = true;
        let mut weak = candidate("203.0.113.5", 1000, Class::Rce);
        weak.suspicion.strong = Default::default();
        let ranked = vec![
            protected,
            candidate("203.0.113.1", 1000, Class::Rce),
            candidate("203.0.113.1", 999, Class::Lfi),
            weak,
            candidate("203.0.113.2", 1000, Class::Protocol),
            candidate("203.0.113.3", 1000, Class::Xss),
            candidate("203.0.113.4", 1000, Class::Sqli),
        ];
        let policy = BanPolicy {
            max_ips: 2,
            weak_rules: false,
        };
        assert_eq!(policy.choose(&ranked), [1, 5]);
        let all = BanPolicy {
            max_ips: 10,
            weak_rules: true,
        };
        assert_eq!(all.choose(&ranked), [1, 3, 5, 6]);
        let none = BanPolicy {
            max_ips: 0,
            weak_rules: true,
        };
        assert!(none.choose(&ranked).is_empty());
    }
}
