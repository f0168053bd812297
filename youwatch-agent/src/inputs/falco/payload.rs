//! Falco alerts (the JSON of `json_output`/`http_output`/`file_output`) → `Detection`s.
//!
//! The payload is untrusted: every field is checked for type and size, the pod it names must
//! be a valid Kubernetes name (a detection can lead to deleting that pod), and anything wrong
//! is refused with a reason that names the alert and the field.

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::Value;

use crate::detection::{Detection, Origin, PodRef, Priority, Subject};

/// Limits on one alert.
pub const MAX_RULE_BYTES: usize = 1024;
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
pub const MAX_FIELDS: usize = 512;
pub const MAX_FIELD_KEY_BYTES: usize = 256;
pub const MAX_FIELD_VALUE_BYTES: usize = 16 * 1024;
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_BYTES: usize = 256;
pub const MAX_SHORT_BYTES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("expected a Falco alert (a JSON object) or a batch of them (an array), found {0}")]
    Shape(&'static str),
    #[error("an empty batch")]
    Empty,
    #[error("a batch of {count} alerts is more than the {max} allowed")]
    TooMany { count: usize, max: usize },
    #[error("{at}: {message}")]
    Invalid { at: String, message: String },
}

/// Parses one alert or a batch.
pub fn parse(body: &[u8], max_batch: usize) -> Result<Vec<Detection>, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    match value {
        Value::Object(_) => Ok(vec![detection(&value, "alert")?]),
        Value::Array(items) => {
            if items.is_empty() {
                return Err(PayloadError::Empty);
            }
            if items.len() > max_batch {
                return Err(PayloadError::TooMany {
                    count: items.len(),
                    max: max_batch,
                });
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| detection(v, &format!("alert[{i}]")))
                .collect()
        }
        other => Err(PayloadError::Shape(kind(&other))),
    }
}

/// One Falco alert.
pub fn detection(v: &Value, at: &str) -> Result<Detection, PayloadError> {
    let invalid = |message: String| PayloadError::Invalid {
        at: at.to_owned(),
        message,
    };
    let Value::Object(obj) = v else {
        return Err(invalid(format!("expected an object, found {}", kind(v))));
    };
    let string = |key: &str, max: usize, required: bool| -> Result<Option<&str>, PayloadError> {
        match obj.get(key) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(invalid(format!("'{key}' is missing"))),
            Some(Value::String(s)) if s.len() > max => {
                Err(invalid(format!("'{key}' is longer than {max} bytes")))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(invalid(format!(
                "'{key}' must be a string, found {}",
                kind(other)
            ))),
        }
    };
    let rule = string("rule", MAX_RULE_BYTES, true)?.unwrap_or_default();
    if rule.trim().is_empty() {
        return Err(invalid("'rule' is empty".into()));
    }
    let priority: Priority = string("priority", MAX_SHORT_BYTES, true)?
        .unwrap_or_default()
        .parse()
        .map_err(|e: crate::detection::UnknownPriority| invalid(format!("'priority': {e}")))?;
    let output = string("output", MAX_OUTPUT_BYTES, true)?.unwrap_or_default();
    let time_text = string("time", MAX_SHORT_BYTES, true)?.unwrap_or_default();
    let time = parse_time(time_text).ok_or_else(|| {
        invalid(format!(
            "'time' {time_text:?} is not an RFC 3339 time such as 2024-05-01T12:00:00.123456789Z"
        ))
    })?;
    let source = string("source", MAX_SHORT_BYTES, false)?;
    let tags = match obj.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_TAGS {
                return Err(invalid(format!("more than {MAX_TAGS} tags")));
            }
            items
                .iter()
                .map(|t| match t {
                    Value::String(s) if s.len() <= MAX_TAG_BYTES => Ok(s.clone()),
                    Value::String(_) => Err(invalid(format!(
                        "a tag is longer than {MAX_TAG_BYTES} bytes"
                    ))),
                    other => Err(invalid(format!(
                        "tags must be strings, found {}",
                        kind(other)
                    ))),
                })
                .collect::<Result<_, _>>()?
        }
        Some(other) => {
            return Err(invalid(format!(
                "'tags' must be an array, found {}",
                kind(other)
            )));
        }
    };
    let mut output_fields = BTreeMap::new();
    match obj.get("output_fields") {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            if fields.len() > MAX_FIELDS {
                return Err(invalid(format!("more than {MAX_FIELDS} output_fields")));
            }
            for (k, v) in fields {
                if k.len() > MAX_FIELD_KEY_BYTES {
                    return Err(invalid(format!(
                        "an output_fields key is longer than {MAX_FIELD_KEY_BYTES} bytes"
                    )));
                }
                match v {
                    Value::String(s) if s.len() > MAX_FIELD_VALUE_BYTES => {
                        return Err(invalid(format!(
                            "output_fields[{k:?}] is longer than {MAX_FIELD_VALUE_BYTES} bytes"
                        )));
                    }
                    Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
                    other => {
                        return Err(invalid(format!(
                            "output_fields[{k:?}] must be a string, number, boolean or null, found {}",
                            kind(other)
                        )));
                    }
                }
                output_fields.insert(k.clone(), v.clone());
            }
        }
        Some(other) => {
            return Err(invalid(format!(
                "'output_fields' must be an object, found {}",
                kind(other)
            )));
        }
    }
    if let Some(source) = source {
        // Kept so the alert is re-emitted with the source Falco gave it.
        output_fields
            .entry("evt.source".to_owned())
            .or_insert_with(|| Value::String(source.to_owned()));
    }
    let subject = subject(&output_fields).map_err(invalid)?;
    Ok(Detection {
        time,
        origin: Origin::Falco,
        rule: rule.to_owned(),
        priority,
        output: strip_falco_prefix(output, priority).to_owned(),
        tags,
        output_fields,
        subject,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::from(ts))
}

/// Falco's text starts with `HH:MM:SS.nnnnnnnnn: Priority ` (or an ISO 8601 time); the
/// detection keeps the message alone, and the alert writer adds the prefix back.
fn strip_falco_prefix(output: &str, priority: Priority) -> &str {
    let Some((head, rest)) = output.split_once(": ") else {
        return output;
    };
    let looks_like_time = !head.is_empty()
        && head.len() <= 40
        && head
            .bytes()
            .all(|b| b.is_ascii_digit() || b":.-+TZ ".contains(&b))
        && head.bytes().any(|b| b == b':');
    if !looks_like_time {
        return output;
    }
    rest.split_once(' ')
        .filter(|(p, _)| p.parse::<Priority>().ok() == Some(priority))
        .map_or(output, |(_, message)| message)
}

/// The pod the alert names (`k8s.ns.name`, `k8s.pod.name`, plus `k8s.pod.uid`,
/// `container.id`, `container.name` when present), validated as Kubernetes names.
fn subject(fields: &BTreeMap<String, Value>) -> Result<Subject, String> {
    let get = |key: &str| -> Option<&str> {
        match fields.get(key) {
            Some(Value::String(s)) if !s.is_empty() && s != "<NA>" && s != "host" => Some(s),
            _ => None,
        }
    };
    let (Some(namespace), Some(name)) = (get("k8s.ns.name"), get("k8s.pod.name")) else {
        return Ok(Subject::None);
    };
    if !is_dns_label(namespace) {
        return Err(format!(
            "output_fields[\"k8s.ns.name\"] {namespace:?} is not a Kubernetes namespace name"
        ));
    }
    if !is_dns_subdomain(name) {
        return Err(format!(
            "output_fields[\"k8s.pod.name\"] {name:?} is not a Kubernetes pod name"
        ));
    }
    let uid = match get("k8s.pod.uid").or_else(|| get("k8s.pod.id")) {
        Some(uid) if is_uid(uid) => Some(uid.to_owned()),
        Some(uid) => {
            return Err(format!(
                "output_fields[\"k8s.pod.uid\"] {uid:?} is not a pod UID"
            ));
        }
        None => None,
    };
    let container_id = match get("container.id") {
        Some(id) if id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(id.to_owned())
        }
        Some(id) => {
            return Err(format!(
                "output_fields[\"container.id\"] {id:?} is not a container id"
            ));
        }
        None => None,
    };
    let container_name = get("container.name")
        .filter(|n| n.len() <= 253)
        .map(str::to_owned);
    Ok(Subject::Pod(PodRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        uid,
        container_id,
        container_name,
        ..PodRef::default()
    }))
}

/// RFC 1123 label: namespaces.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain: pod names.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_uid(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"hostname":"node-1","output":"16:31:56.746609046: Notice A shell was spawned in a container with an attached terminal | user=root","output_fields":{"container.id":"3ad7b26ded6d","k8s.ns.name":"shop","k8s.pod.name":"juice-shop-6f7d9","proc.tty":34816,"user.loginuid":null},"priority":"Notice","rule":"Terminal shell in container","source":"syscall","tags":["container","shell"],"time":"2024-05-01T16:31:56.746609046Z","uuid":"x"}"#;

    #[test]
    fn falco_alert_becomes_a_detection() {
        let d = parse(ALERT.as_bytes(), 10).unwrap().remove(0);
        assert_eq!(d.rule, "Terminal shell in container");
        assert_eq!(d.priority, Priority::Notice);
        assert_eq!(d.origin, Origin::Falco);
        assert_eq!(
            d.output,
            "A shell was spawned in a container with an attached terminal | user=root"
        );
        assert_eq!(d.output_fields["evt.source"], "syscall");
        let Subject::Pod(p) = d.subject else { panic!() };
        assert_eq!(
            (p.namespace.as_str(), p.name.as_str()),
            ("shop", "juice-shop-6f7d9")
        );
        assert_eq!(p.container_id.as_deref(), Some("3ad7b26ded6d"));
        assert_eq!(
            d.time
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
            1_714_581_116_746_609_046
        );
    }

    #[test]
    fn batches_and_their_errors() {
        let batch = format!("[{ALERT},{ALERT}]");
        assert_eq!(parse(batch.as_bytes(), 10).unwrap().len(), 2);
        assert_eq!(
            parse(batch.as_bytes(), 1).unwrap_err(),
            PayloadError::TooMany { count: 2, max: 1 }
        );
        assert_eq!(parse(b"[]", 10).unwrap_err(), PayloadError::Empty);
        let bad = ALERT.replace("\"Notice\",\"rule\"", "\"Loud\",\"rule\"");
        let e = parse(format!("[{ALERT},{bad}]").as_bytes(), 10)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("alert[1]: 'priority'"), "{e}");
    }

    #[test]
    fn refuses_bad_fields() {
        let cases = [
            ("{", "not JSON"),
            ("42", "found a number"),
            (
                r#"{"rule":"r","priority":"Notice","output":"o"}"#,
                "'time' is missing",
            ),
            (
                r#"{"rule":"r","priority":"Notice","output":"o","time":"yesterday"}"#,
                "RFC 3339",
            ),
            (
                r#"{"rule":"","priority":"Notice","output":"o","time":"2024-05-01T00:00:00Z"}"#,
                "'rule' is empty",
            ),
            (
                r#"{"rule":"r","priority":"Notice","output":5,"time":"2024-05-01T00:00:00Z"}"#,
                "'output' must be a string",
            ),
            (
                r#"{"rule":"r","priority":"Notice","output":"o","time":"2024-05-01T00:00:00Z","output_fields":{"a":{"b":1}}}"#,
                "must be a string, number",
            ),
            (
                r#"{"rule":"r","priority":"Notice","output":"o","time":"2024-05-01T00:00:00Z","output_fields":{"k8s.ns.name":"shop","k8s.pod.name":"../etc"}}"#,
                "not a Kubernetes pod name",
            ),
            (
                r#"{"rule":"r","priority":"Notice","output":"o","time":"2024-05-01T00:00:00Z","tags":"x"}"#,
                "'tags' must be an array",
            ),
        ];
        for (body, want) in cases {
            let e = parse(body.as_bytes(), 10).unwrap_err().to_string();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    #[test]
    fn no_pod_when_fields_say_not_available() {
        let body = r#"{"rule":"r","priority":"Warning","output":"o","time":"2024-05-01T00:00:00Z","output_fields":{"k8s.ns.name":"<NA>","k8s.pod.name":null}}"#;
        assert_eq!(parse(body.as_bytes(), 1).unwrap()[0].subject, Subject::None);
    }

    #[test]
    fn prefix_is_stripped_only_when_it_is_falcos() {
        assert_eq!(
            strip_falco_prefix("12:00:00.1: Warning text", Priority::Warning),
            "text"
        );
        assert_eq!(
            strip_falco_prefix(
                "2024-05-01T12:00:00.123+0000: Warning text",
                Priority::Warning
            ),
            "text"
        );
        assert_eq!(
            strip_falco_prefix("note: Warning text", Priority::Warning),
            "note: Warning text"
        );
        assert_eq!(
            strip_falco_prefix("12:00:00: Notice text", Priority::Warning),
            "12:00:00: Notice text"
        );
    }
}
