//! A decided entry → a `Detection` for the response stage.

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::{
    config::Report,
    json::display,
    pipeline::{Decision, Outcome},
    score::Score,
};
use crate::detection::{Detection, Origin, Priority, Subject};

pub const RULE_BAN: &str = "WAF attacker to ban";
pub const RULE_ATTACK: &str = "WAF attack";

/// The detection an outcome is worth under `report`, if any.
pub fn detection(o: &Outcome<'_>, report: Report) -> Option<Detection> {
    let (rule, priority, ban) = match o.decision {
        Decision::Scored(_, Score::Ban { ttl, offense }, _) => {
            (RULE_BAN, Priority::Critical, Some((ttl, offense)))
        }
        Decision::Pass => return None,
        _ if report == Report::Attacks => (RULE_ATTACK, Priority::Warning, None),
        _ => return None,
    };
    let e = &o.entry;
    let v = &o.verdict;
    let host = host_name(e.host());
    let main = v.main_message.map(|i| e.messages()[i]);
    let rule_id = main.and_then(|m| m.rule_id);
    let msg = main.map(|m| display(e.msg(&m), 200)).unwrap_or_default();
    let uri = display(e.uri(), 200);
    let method = display(e.method(), 16);
    let ip = o.decision.ip();
    let ip_text = ip.map_or_else(|| display(e.client_ip(), 45), |ip| ip.to_string());
    let classes = v.ban_classes.join(",");
    let mut output = match ban {
        Some((ttl, offense)) => format!(
            "WAF attacker {ip_text} to ban for {} (offense {offense}): {classes} score {}",
            humantime::format_duration(ttl),
            v.score
        ),
        None => format!("WAF attack from {ip_text}: {classes} score {}", v.score),
    };
    if let Some(h) = &host {
        output.push_str(&format!(" on host {h}"));
    }
    output.push_str(&format!(
        "; {method} {uri} matched {} {msg} ({})",
        rule_id.map_or_else(|| "?".to_owned(), |id| id.to_string()),
        if v.blocked {
            "blocked"
        } else {
            "detection only"
        }
    ));
    let mut fields = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        fields.insert(k.to_owned(), v);
    };
    put("waf.client_ip", Value::from(ip_text));
    put("waf.host", host.clone().map_or(Value::Null, Value::from));
    put("waf.classes", Value::from(classes));
    put("waf.score", Value::from(v.score));
    if let Decision::Scored(_, _, added) = o.decision {
        // What this entry added to the client's bucket (the score is the WAF's own total).
        put("waf.points", Value::from(added.points + added.new_class));
    }
    put("waf.blocked", Value::from(v.blocked));
    put("waf.rule_id", rule_id.map_or(Value::Null, Value::from));
    put("waf.msg", Value::from(msg));
    put("waf.method", Value::from(method));
    put("waf.uri", Value::from(uri));
    put("waf.unique_id", Value::from(display(e.unique_id(), 64)));
    if let Some((ttl, offense)) = ban {
        put("waf.ban_secs", Value::from(ttl.as_secs()));
        put("waf.offense", Value::from(offense));
    }
    let mut tags = vec!["waf".to_owned()];
    tags.extend(v.ban_classes.iter().map(|c| c.as_str().to_owned()));
    Some(Detection {
        time: UNIX_EPOCH + Duration::from_secs(o.time),
        origin: Origin::Waf,
        rule: rule.to_owned(),
        priority,
        output,
        tags,
        output_fields: fields,
        subject: match ip {
            Some(ip) => Subject::Attacker {
                ip,
                host,
                ban_for: ban.map(|(ttl, _)| ttl),
            },
            None => Subject::None,
        },
    })
}

/// The `Host` header as a host name: lower-cased, port removed; `None` unless it is a plain
/// DNS name (it is attacker-chosen and will be matched against Ingress hosts).
pub fn host_name(raw: &[u8]) -> Option<String> {
    let host = match memchr::memrchr(b':', raw) {
        Some(i) if raw[i + 1..].iter().all(u8::is_ascii_digit) => &raw[..i],
        _ => raw,
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.');
    ok.then(|| String::from_utf8_lossy(host).to_ascii_lowercase())
}

/// Wall-clock seconds, for entries that carry no time.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_only() {
        assert_eq!(
            host_name(b"Shop.Example:8443").as_deref(),
            Some("shop.example")
        );
        assert_eq!(host_name(b"127.0.0.1:18080").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name(b"evil\\\" x"), None);
        assert_eq!(host_name(b"[::1]:80"), None);
        assert_eq!(host_name(b""), None);
    }
}
