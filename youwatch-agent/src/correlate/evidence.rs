//! Evidence for other nodes: the suspicious requests one node's WAF saw reach a Service, as
//! compact JSON in an annotation of an Event about that Service (see
//! `response::correlation::publish`).
//!
//! `{"v":1,"node":"node-a","items":[{"ip":"203.0.113.9","t":1700000000,"h":"shop.example",
//! "m":"GET","u":"/ping?host=;id","r":[932160],"c":["rce"],"s":["rce"],"b":false,"sc":5,
//! "id":"…"}]}` (`p`: a client the WAF never bans; `s`: the classes shown by reliable rules).
//!
//! Anyone allowed to create Events in the namespace can write such an annotation, so reading
//! is bounded and forgiving: at most [`MAX_TEXT`] bytes, [`MAX_PUBLISHED`] items, every string
//! cut to the bounds of a local [`Suspicion`], items that do not parse skipped.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{
    config::MAX_PUBLISHED,
    suspicion::{MAX_ID, MAX_METHOD, MAX_RULES, MAX_URI, Suspicion, bounded},
};
use crate::waf::{
    classify::{Class, ClassSet},
    detect::host_name,
};

/// The annotation holding the items.
pub const ANNOTATION: &str = "youwatch.dev/suspicions";
/// The label (value [`LABEL_VALUE`]) that marks evidence Events, and the one naming the
/// Service (Service names are valid label values), so a reader lists exactly one
/// Service's evidence.
pub const LABEL: &str = "youwatch.dev/evidence";
pub const LABEL_VALUE: &str = "waf";
pub const SERVICE_LABEL: &str = "youwatch.dev/service";
/// Longest annotation read.
pub const MAX_TEXT: usize = 64 * 1024;

const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u32,
    node: String,
    items: Vec<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    ip: IpAddr,
    #[serde(default, skip_serializing_if = "is_false")]
    p: bool,
    t: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    h: Option<String>,
    #[serde(default)]
    m: String,
    #[serde(default)]
    u: String,
    #[serde(default)]
    r: Vec<u32>,
    #[serde(default)]
    c: Vec<String>,
    #[serde(default)]
    s: Vec<String>,
    #[serde(default)]
    b: bool,
    #[serde(default)]
    sc: u32,
    #[serde(default)]
    id: String,
}

fn is_false(b: &bool) -> bool {
    !b
}

/// What one node published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub node: String,
    pub items: Vec<Suspicion>,
}

/// The annotation value for `items` seen by `node`.
pub fn encode<'a>(node: &str, items: impl IntoIterator<Item = &'a Suspicion>) -> String {
    let items = items
        .into_iter()
        .take(MAX_PUBLISHED)
        .filter_map(|s| {
            serde_json::to_value(Item {
                ip: s.ip,
                p: s.protected,
                t: s.time,
                h: s.host.clone(),
                m: s.method.clone(),
                u: s.uri.clone(),
                r: s.rule_ids.clone(),
                c: names(s.classes),
                s: names(s.strong),
                b: s.blocked,
                sc: s.score,
                id: s.unique_id.clone(),
            })
            .ok()
        })
        .collect();
    let wire = Wire {
        v: VERSION,
        node: node.to_owned(),
        items,
    };
    serde_json::to_string(&wire).unwrap_or_default()
}

/// The items of an annotation value; `None` when it is too long or not evidence at all.
pub fn decode(text: &str) -> Option<Published> {
    if text.len() > MAX_TEXT {
        return None;
    }
    let wire: Wire = serde_json::from_str(text).ok()?;
    if wire.v != VERSION {
        return None;
    }
    let items = wire
        .items
        .into_iter()
        .take(MAX_PUBLISHED)
        .filter_map(|v| serde_json::from_value::<Item>(v).ok())
        .map(|i| Suspicion {
            ip: i.ip,
            protected: i.p,
            time: i.t,
            host: i.h.and_then(|h| host_name(h.as_bytes())),
            method: bounded(&i.m, MAX_METHOD),
            uri: bounded(&i.u, MAX_URI * 4),
            path: String::new(),
            rule_ids: i.r.into_iter().take(MAX_RULES).collect(),
            classes: classes(&i.c),
            strong: classes(&i.s),
            blocked: i.b,
            score: i.sc,
            unique_id: bounded(&i.id, MAX_ID),
        })
        .collect();
    Some(Published {
        node: bounded(&wire.node, 253),
        items,
    })
}

fn names(set: ClassSet) -> Vec<String> {
    set.iter().map(|c| c.as_str().to_owned()).collect()
}

fn classes(names: &[String]) -> ClassSet {
    names
        .iter()
        .take(Class::ALL.len())
        .filter_map(|n| Class::ALL.into_iter().find(|c| c.as_str() == n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::correlate::log::tests::suspicion;

    #[test]
    fn round_trips_without_the_routing_path() {
        let mut s = suspicion("203.0.113.9", 1_700_000_000, Class::Rce);
        s.classes.insert(Class::Protocol);
        s.path.clear();
        let text = encode("node-a", [&s]);
        assert!(text.len() < 400, "{text}");
        let back = decode(&text).unwrap();
        assert_eq!(back.node, "node-a");
        assert_eq!(back.items, [s]);
    }

    #[test]
    fn untrusted_text_is_bounded_and_forgiven() {
        assert_eq!(decode("not json"), None);
        assert_eq!(decode(&"x".repeat(MAX_TEXT + 1)), None);
        assert_eq!(decode(r#"{"v":2,"node":"n","items":[]}"#), None);
        let long = "a".repeat(10_000);
        let text = format!(
            r#"{{"v":1,"node":"n","items":[{{"ip":"bad"}},{{"ip":"203.0.113.1","t":5,"u":"{long}","id":"{long}","c":["rce","nonsense"],"r":[1,2,3,4,5,6,7,8,9,10]}}]}}"#
        );
        let p = decode(&text).unwrap();
        assert_eq!(
            p.items.len(),
            1,
            "the item without a valid address is skipped"
        );
        let s = &p.items[0];
        assert!(s.uri.len() <= MAX_URI * 4 && s.unique_id.len() <= MAX_ID);
        assert_eq!(s.rule_ids.len(), MAX_RULES);
        assert_eq!(s.classes, [Class::Rce].into_iter().collect());
        let many = format!(
            r#"{{"v":1,"node":"n","items":[{}]}}"#,
            vec![r#"{"ip":"203.0.113.1","t":1}"#; 200].join(",")
        );
        assert_eq!(decode(&many).unwrap().items.len(), MAX_PUBLISHED);
    }
}
