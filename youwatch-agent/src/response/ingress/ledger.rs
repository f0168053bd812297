//! The agent's own annotations on an Ingress — the ban ledger and the quarantine record —
//! so that expiry, `unban` and `release` undo only what the agent did, whichever agent did
//! it, after any restart.
//!
//! Ban ledger (`deny_ip.ledger_annotation`), one JSON object keyed by the denied address:
//! `{"203.0.113.9/32":{"until":"2026-12-01T13:00:00Z","offense":2,"reason":"WAF attacker to
//! ban","node":"node-a"}}`. Quarantine record (`quarantine.ledger_annotation`):
//! `{"previous":"10.0.0.0/8","until":"...","reason":"...","node":"node-a"}`, `previous`
//! null when the user had no allowlist. Times are RFC 3339 (readable in `kubectl get -o
//! yaml`), whole seconds.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest reason kept in a record (an object's annotations total 256 KiB at most).
const MAX_REASON: usize = 64;

/// One denied address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Denied {
    #[serde(with = "rfc3339")]
    pub until: SystemTime,
    #[serde(default)]
    pub offense: u32,
    #[serde(default)]
    pub reason: String,
    /// The node whose agent decided it.
    #[serde(default)]
    pub node: String,
}

/// A quarantine in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// The user's allowlist before, restored after; `None`: there was none.
    pub previous: Option<String>,
    #[serde(with = "rfc3339")]
    pub until: SystemTime,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub node: String,
}

/// The agent's denied addresses on one Ingress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyLedger {
    pub entries: BTreeMap<IpNet, Denied>,
}

impl DenyLedger {
    /// Parses the annotation; a value that is not a ledger is an error naming the problem.
    pub fn parse(value: Option<&str>) -> Result<DenyLedger, String> {
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return Ok(DenyLedger::default());
        };
        let raw: BTreeMap<String, Denied> =
            serde_json::from_str(value).map_err(|e| format!("not a ban ledger: {e}"))?;
        let mut entries = BTreeMap::new();
        for (key, denied) in raw {
            let net = super::address::parse_single(&key)?;
            entries.insert(net, denied);
        }
        Ok(DenyLedger { entries })
    }

    /// The annotation value; `None` when empty (the annotation is removed).
    pub fn render(&self) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let raw: BTreeMap<String, &Denied> = self
            .entries
            .iter()
            .map(|(net, d)| (net.to_string(), d))
            .collect();
        Some(serde_json::to_string(&raw).expect("a ledger serialises"))
    }

    /// The earliest expiry, if any.
    pub fn next_expiry(&self) -> Option<SystemTime> {
        self.entries.values().map(|d| d.until).min()
    }
}

impl Quarantined {
    pub fn parse(value: Option<&str>) -> Result<Option<Quarantined>, String> {
        match value.filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => serde_json::from_str(v)
                .map(Some)
                .map_err(|e| format!("not a quarantine record: {e}")),
        }
    }

    pub fn render(&self) -> String {
        serde_json::to_string(self).expect("a quarantine record serialises")
    }
}

/// A reason short enough for a record, cut on a char boundary.
pub fn short_reason(text: &str) -> String {
    super::super::action::truncate(text, MAX_REASON)
}

/// `t` rounded up to whole seconds (what a record keeps: a ban lasts at least as decided).
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// A time as RFC 3339 text, e.g. `2026-12-01T13:00:00Z`.
pub fn format_time(t: SystemTime) -> String {
    let secs = i64::try_from(super::super::action::epoch_secs(t)).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(secs)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

/// An RFC 3339 time (`2026-12-01T13:00:00Z`), whole seconds; the error quotes the text.
pub fn parse_time(text: &str) -> Result<SystemTime, String> {
    let ts: jiff::Timestamp = text
        .parse()
        .map_err(|e| format!("{text:?} is not an RFC 3339 time: {e}"))?;
    let secs = u64::try_from(ts.as_second()).unwrap_or(0);
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

mod rfc3339 {
    use std::time::SystemTime;

    use super::*;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        parse_time(&text).map_err(|e| serde::de::Error::custom(format!("until {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn round_trips_with_readable_times() {
        let mut l = DenyLedger::default();
        l.entries.insert(
            "203.0.113.9/32".parse().unwrap(),
            Denied {
                until: at(1_800_000_000),
                offense: 2,
                reason: "WAF attacker to ban".into(),
                node: "node-a".into(),
            },
        );
        let text = l.render().unwrap();
        assert_eq!(
            text,
            r#"{"203.0.113.9/32":{"until":"2027-01-15T08:00:00Z","offense":2,"reason":"WAF attacker to ban","node":"node-a"}}"#
        );
        assert_eq!(DenyLedger::parse(Some(&text)).unwrap(), l);
        assert_eq!(l.next_expiry(), Some(at(1_800_000_000)));
        assert_eq!(DenyLedger::parse(None).unwrap(), DenyLedger::default());
    }

    #[test]
    fn a_bad_ledger_is_an_error_naming_the_problem() {
        assert!(
            DenyLedger::parse(Some("nope"))
                .unwrap_err()
                .contains("ban ledger")
        );
        let err = DenyLedger::parse(Some(r#"{"10.0.0.0/8":{"until":"2027-01-15T08:00:00Z"}}"#))
            .unwrap_err();
        assert!(err.contains("range"), "{err}");
        let err = DenyLedger::parse(Some(r#"{"1.2.3.4":{"until":"soon"}}"#)).unwrap_err();
        assert!(err.contains("soon"), "{err}");
    }

    #[test]
    fn quarantine_record_keeps_the_absence_of_a_value() {
        let q = Quarantined {
            previous: None,
            until: at(1_800_000_000),
            reason: "x".into(),
            node: "n".into(),
        };
        let text = q.render();
        assert!(text.contains(r#""previous":null"#), "{text}");
        assert_eq!(Quarantined::parse(Some(&text)).unwrap(), Some(q));
        assert!(short_reason(&"é".repeat(100)).ends_with('…'));
    }
}
