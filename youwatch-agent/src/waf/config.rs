//! The `waf:` section. `config/default.yaml` documents each setting with its default.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use super::classify::{Class, ClassSet};
use crate::tail::FollowConfig;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WafConfig {
    /// The ModSecurity (v3 JSON serial) or Coraza JSON audit log to follow. Empty: off.
    pub audit_log: PathBuf,
    /// How the audit log is followed (start, rotation, polling).
    pub follow: FollowConfig,
    /// Classes whose presence makes an entry count against its client.
    pub ban_classes: Vec<Class>,
    /// Which detections the stage sends on: only bans, or every attack entry too.
    pub report: Report,
    pub scoring: ScoringConfig,
    pub client_ip: ClientIpConfig,
}

impl Default for WafConfig {
    fn default() -> Self {
        Self {
            audit_log: PathBuf::new(),
            follow: FollowConfig::default(),
            ban_classes: Class::ALL
                .into_iter()
                .filter(|c| c.bans_by_default())
                .collect(),
            report: Report::Bans,
            scoring: ScoringConfig::default(),
            client_ip: ClientIpConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// A detection when an IP crosses the threshold (what the response acts on).
    #[default]
    Bans,
    /// Also one per attack entry (no ban attached): noisy, for alerting pipelines.
    Attacks,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ScoringConfig {
    /// Points that make a ban. An entry's points: each matched rule of a ban class adds its
    /// CRS severity points (critical 5) times its weight; a blocked entry counts
    /// `blocked_factor` times.
    pub threshold: u32,
    /// How many times an entry the WAF blocked counts (a detection-only one counts once).
    pub blocked_factor: f32,
    /// Points added when a client shows a ban class it had not shown since its bucket was
    /// last empty, for every class after its first (only rules of weight ≥ 1 show a class).
    pub new_class_points: f32,
    /// Weight of a rule by id; unlisted rules weigh 1, 0 ignores a rule.
    pub rule_weights: BTreeMap<u32, f32>,
    /// The bucket leaks `threshold` points per `window`.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// First ban's length.
    #[serde(with = "humantime_serde")]
    pub ban: Duration,
    /// Each further ban lasts this many times the previous one...
    pub ban_factor: u32,
    /// ...up to this.
    #[serde(with = "humantime_serde")]
    pub max_ban: Duration,
    /// An IP without a ban for this long starts over as a first offender.
    #[serde(with = "humantime_serde")]
    pub repeat_memory: Duration,
    /// Per-IP states kept; the least recently seen is forgotten beyond it.
    pub max_tracked_ips: usize,
}

impl Default for ScoringConfig {
    fn default() -> Self {
        Self {
            threshold: 20,
            blocked_factor: 2.0,
            new_class_points: 10.0,
            rule_weights: default_rule_weights(),
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
            ban_factor: 4,
            max_ban: Duration::from_secs(7 * 24 * 3600),
            repeat_memory: Duration::from_secs(7 * 24 * 3600),
            max_tracked_ips: 100_000,
        }
    }
}

/// Rules that rarely misfire weigh 2 (one blocked entry is a ban), PL1 rules that fire on
/// ordinary prose 0.5 (it takes four blocked entries). Chosen on the corpora under
/// `tests/data/waf-corpus/`; `config/default.yaml` says why for each.
fn default_rule_weights() -> BTreeMap<u32, f32> {
    let reliable = [
        942100, 941100, 930120, 932160, 932170, 932171, 933100, 933110, 934100, 944100, 944110,
    ];
    let weak = [932100, 932110, 932150, 933210, 942190, 942270];
    reliable
        .into_iter()
        .map(|id| (id, 2.0))
        .chain(weak.into_iter().map(|id| (id, 0.5)))
        .collect()
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientIpConfig {
    /// Proxies whose `X-Forwarded-For` is believed (CIDRs).
    pub trusted_proxies: Vec<IpNet>,
    /// Never ban these (CIDRs). Loopback, unspecified and multicast never are anyway.
    pub allowlist: Vec<IpNet>,
    /// Let loopback addresses be banned: only for labs and tests that simulate attackers on
    /// 127.0.0.0/8.
    pub ban_loopback: bool,
}

/// Largest rule weight and blocked factor accepted.
const MAX_WEIGHT: f32 = 100.0;

impl WafConfig {
    pub fn enabled(&self) -> bool {
        !self.audit_log.as_os_str().is_empty()
    }

    pub fn ban_class_set(&self) -> ClassSet {
        self.ban_classes.iter().copied().collect()
    }

    /// Checks values serde cannot; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        let s = &self.scoring;
        let checks = [
            (s.threshold == 0, "waf.scoring.threshold must be at least 1"),
            (
                s.window.is_zero(),
                "waf.scoring.window must be longer than 0s",
            ),
            (s.ban.is_zero(), "waf.scoring.ban must be longer than 0s"),
            (
                s.ban_factor == 0,
                "waf.scoring.ban_factor must be at least 1",
            ),
            (
                s.max_tracked_ips == 0,
                "waf.scoring.max_tracked_ips must be at least 1",
            ),
            (
                s.max_tracked_ips > 10_000_000,
                "waf.scoring.max_tracked_ips above 10000000 is not supported",
            ),
            (
                self.follow.max_line_bytes < 1024,
                "waf.follow.max_line_bytes must be at least 1024",
            ),
            (
                self.follow.poll_interval.is_zero(),
                "waf.follow.poll_interval must be longer than 0s",
            ),
        ];
        if let Some((_, msg)) = checks.iter().find(|(bad, _)| *bad) {
            return Err((*msg).to_owned());
        }
        let weight = |w: f32| w.is_finite() && (0.0..=MAX_WEIGHT).contains(&w);
        if !weight(s.blocked_factor) || s.blocked_factor < 1.0 {
            return Err(format!(
                "waf.scoring.blocked_factor must be between 1 and {MAX_WEIGHT}, not {}",
                s.blocked_factor
            ));
        }
        if !s.new_class_points.is_finite() || s.new_class_points < 0.0 {
            return Err(format!(
                "waf.scoring.new_class_points must be 0 or more, not {}",
                s.new_class_points
            ));
        }
        match s.rule_weights.iter().find(|(_, w)| !weight(**w)) {
            Some((id, w)) => Err(format!(
                "waf.scoring.rule_weights.{id} must be between 0 and {MAX_WEIGHT}, not {w}"
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let mut cfg = WafConfig::default();
        cfg.scoring.threshold = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .contains("waf.scoring.threshold")
        );
        let mut cfg = WafConfig::default();
        cfg.scoring.blocked_factor = 0.5;
        assert!(
            cfg.validate()
                .unwrap_err()
                .contains("waf.scoring.blocked_factor")
        );
    }
}
