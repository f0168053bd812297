//! Each stage's section as read from the whole document: values, and errors that name the
//! file and the key. (Each stage checks its own section's values; reading the document is
//! the configuration's job, so these tests live here.)

use std::{path::Path, time::Duration};

use super::Config;
use crate::{
    enforce::EnforceMode,
    response::config::IntOrPercent,
    sensor::KernelLog,
    waf::{classify::Class, config::ScoringConfig},
};

#[test]
fn enforce_modes_read_from_yaml_with_off_unquoted() {
    let parse = |text: &str| Config::parse(text, Path::new("c.yaml")).map(|c| c.enforce.mode);
    assert_eq!(parse("enforce:\n  mode: off\n").unwrap(), EnforceMode::Off);
    assert_eq!(
        parse("enforce:\n  mode: \"off\"\n").unwrap(),
        EnforceMode::Off
    );
    assert_eq!(
        parse("enforce:\n  mode: enforce\n").unwrap(),
        EnforceMode::Enforce
    );
    assert_eq!(
        parse("enforce:\n  mode: monitor\n").unwrap(),
        EnforceMode::Monitor
    );
    let err = parse("enforce:\n  mode: enforcing\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.yaml") && err.contains("\"enforcing\""),
        "{err}"
    );
    let err = parse("enforce:\n  forbidden: [/bin/sh]\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a path"), "{err}");
}

#[test]
fn kernel_log_levels_read_from_yaml_with_off_unquoted() {
    let parse = |text: &str| Config::parse(text, Path::new("c.yaml")).map(|c| c.sensor.kernel_log);
    assert_eq!(
        parse("sensor:\n  kernel_log: off\n").unwrap(),
        KernelLog::Off
    );
    assert_eq!(
        parse("sensor:\n  kernel_log: \"off\"\n").unwrap(),
        KernelLog::Off
    );
    assert_eq!(
        parse("sensor:\n  kernel_log: debug\n").unwrap(),
        KernelLog::Debug
    );
    let err = parse("sensor:\n  kernel_log: verbose\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("c.yaml") && err.contains("\"verbose\""),
        "{err}"
    );
}

#[test]
fn response_int_or_percent() {
    let parse = |y: &str| {
        Config::parse(
            &format!("response:\n  delete_pod:\n    min_available: {y}\n"),
            Path::new("t.yaml"),
        )
        .map(|c| c.response.delete_pod.min_available)
    };
    assert_eq!(parse("2").unwrap(), IntOrPercent::Int(2));
    assert_eq!(parse("\"50%\"").unwrap(), IntOrPercent::Percent(50));
    let err = parse("\"150%\"").unwrap_err().to_string();
    assert!(err.contains("150%"), "{err}");
}

#[test]
fn waf_settings_parse_from_yaml() {
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
fn waf_bad_values_are_named() {
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
    let yaml = "waf:\n  scoring:\n    rule_weights: {942100: -1, 932100: 0}\n";
    let cfg = Config::parse(yaml, Path::new("t.yaml")).unwrap().waf;
    assert_eq!(cfg.scoring.rule_weights.len(), 2, "the list is replaced");
    assert_eq!(
        cfg.validate().unwrap_err(),
        "waf.scoring.rule_weights.942100 must be between 0 and 100, not -1"
    );
}

#[test]
fn correlation_settings_parse_and_bad_ones_are_named() {
    let yaml =
        "correlation:\n  window: 2m\n  ban:\n    max_ips: 1\n  cross_node:\n    read: false\n";
    let cfg = Config::parse(yaml, Path::new("t.yaml"))
        .unwrap()
        .correlation;
    assert_eq!(cfg.window, Duration::from_secs(120));
    assert_eq!(cfg.ban.max_ips, 1);
    assert!(!cfg.cross_node.read && cfg.cross_node.publish);
    cfg.validate().unwrap();
    let err = Config::parse("correlation:\n  windw: 1m\n", Path::new("t.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("windw"), "{err}");
}
