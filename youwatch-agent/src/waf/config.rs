//! The `waf:` section. `config/default.yaml` documents each setting with its default.

use std::{path::PathBuf, time::Duration};

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
    /// Anomaly points that make a ban (a CRS critical match is 5).
    pub threshold: u32,
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
            window: Duration::from_secs(600),
            ban: Duration::from_secs(600),
            ban_factor: 4,
            max_ban: Duration::from_secs(7 * 24 * 3600),
            repeat_memory: Duration::from_secs(7 * 24 * 3600),
            max_tracked_ips: 100_000,
        }
    }
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
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, msg)) => Err((*msg).to_owned()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    #[test]
    fn settings_parse_from_yaml() {
        let yaml = "waf:\n  audit_log: /var/log/modsec/audit.json\n  ban_classes: [sqli, protocol]\n  scoring:\n    window: 90s\n    max_ban: 2h\n  client_ip:\n    trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\"]\n";
        let cfg = Config::parse(yaml, Path::new("t.yaml")).unwrap().waf;
        assert!(cfg.enabled());
        assert_eq!(cfg.ban_classes, [Class::Sqli, Class::Protocol]);
        assert_eq!(cfg.scoring.window, Duration::from_secs(90));
        assert_eq!(cfg.scoring.max_ban, Duration::from_secs(7200));
        assert_eq!(cfg.client_ip.trusted_proxies.len(), 2);
        assert_eq!(cfg.scoring.threshold, ScoringConfig::default().threshold);
        cfg.validate().unwrap();
    }

    #[test]
    fn bad_values_are_named() {
        for (yaml, needle) in [
            ("waf:\n  ban_classes: [sqlx]\n", "sqlx"),
            (
                "waf:\n  client_ip:\n    allowlist: [10.0.0.300/8]\n",
                "allowlist",
            ),
            ("waf:\n  scoring:\n    windw: 1m\n", "windw"),
        ] {
            let msg = Config::parse(yaml, Path::new("t.yaml"))
                .unwrap_err()
                .to_string();
            assert!(msg.contains(needle), "{yaml}: {msg}");
        }
        let mut cfg = WafConfig::default();
        cfg.scoring.threshold = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .contains("waf.scoring.threshold")
        );
    }
}
