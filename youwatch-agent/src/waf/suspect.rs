//! A decided entry → a [`Suspicion`] for the correlation: every entry with a CRS hit, whether
//! or not it counts against its client (low-confidence classes and detection-only entries
//! are exactly the requests that get through).

use super::{
    classify::{is_evaluation, message_class},
    client_ip::{Client, ClientIpPolicy},
    detect::host_name,
    json::{display, unescape},
    pipeline::{Decision, Outcome},
};
use crate::correlate::suspicion::{
    MAX_ID, MAX_METHOD, MAX_RULES, MAX_URI, Suspicion, request_path,
};

/// The suspicion `o` is, if any. `now` (Unix seconds) caps entry times from the future.
pub fn suspicion(o: &Outcome<'_>, policy: &ClientIpPolicy, now: u64) -> Option<Suspicion> {
    let v = &o.verdict;
    if v.classes.is_empty() {
        return None;
    }
    let e = &o.entry;
    let (ip, protected) = match o.decision {
        Decision::Scored(ip, ..) => (ip, false),
        Decision::Protected(ip, _) => (ip, true),
        Decision::Unattributable => return None,
        // No ban class: the scorer did not resolve the client.
        Decision::Pass => match policy.resolve(e.client_ip(), e.forwarded_for()) {
            Client::Candidate(ip) => (ip, false),
            Client::Protected(ip, _) => (ip, true),
            Client::Unattributable => return None,
        },
    };
    let messages = e.messages();
    let main = v.main_message.into_iter();
    let mut rule_ids: Vec<u32> = Vec::with_capacity(MAX_RULES);
    for i in main.chain(0..messages.len()) {
        let m = &messages[i];
        let Some(id) = m.rule_id else { continue };
        if rule_ids.len() == MAX_RULES {
            break;
        }
        if !is_evaluation(id) && message_class(e, m).is_some() && !rule_ids.contains(&id) {
            rule_ids.push(id);
        }
    }
    Some(Suspicion {
        ip,
        protected,
        time: o.time.min(now),
        host: host_name(e.host()),
        method: text(e.method(), MAX_METHOD),
        uri: text(e.uri(), MAX_URI),
        path: request_path(&unescape(e.uri())),
        rule_ids,
        classes: v.classes,
        strong: v.evidence,
        blocked: v.blocked,
        score: v.score,
        unique_id: text(e.unique_id(), MAX_ID),
    })
}

/// [`display`], holding no more memory than its text (it is kept for minutes).
fn text(raw: &[u8], max: usize) -> String {
    let mut s = display(raw, max);
    s.shrink_to_fit();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::{
        WafConfig,
        classify::{Class, ClassSet},
        metrics::WafMetrics,
        pipeline::Pipeline,
    };

    fn suspect(line: &[u8], cfg: &WafConfig) -> Option<Suspicion> {
        let mut p = Pipeline::new(cfg, WafMetrics::default());
        let policy = ClientIpPolicy::from_config(&cfg.client_ip);
        let o = p.process(line, 1_700_000_100).unwrap();
        suspicion(&o, &policy, 1_700_000_100)
    }

    #[test]
    fn a_detection_only_rce_request() {
        let line = br#"{"transaction":{"client_ip":"203.0.113.9","time_stamp":"Tue Nov 14 22:13:20 2023","unique_id":"u-1","request":{"method":"GET","uri":"/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd","headers":{"Host":"Shop.Example:443"}},"response":{"http_code":200},"producer":{"secrules_engine":"DetectionOnly"},"messages":[{"message":"Remote Command Execution: Unix Shell Code Found","details":{"ruleId":"932160","severity":"2","tags":["attack-rce"]}},{"message":"OS File Access Attempt","details":{"ruleId":"930120","severity":"2","tags":["attack-lfi"]}},{"message":"Inbound Anomaly Score Exceeded (Total Score: 10)","details":{"ruleId":"949110","severity":"2"}}]}}"#;
        let s = suspect(line, &WafConfig::default()).unwrap();
        assert_eq!(s.ip.to_string(), "203.0.113.9");
        assert!(!s.protected && !s.blocked);
        assert_eq!(s.time, 1_700_000_000);
        assert_eq!(s.host.as_deref(), Some("shop.example"));
        assert_eq!(s.path, "/ping");
        assert_eq!(s.uri, "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd");
        assert_eq!(s.rule_ids, [932160, 930120]);
        assert_eq!(
            s.classes,
            [Class::Rce, Class::Lfi].into_iter().collect::<ClassSet>()
        );
        assert!(s.strong_attack());
        assert_eq!(s.unique_id, "u-1");
    }

    #[test]
    fn a_suspicion_is_bounded_whatever_the_request() {
        let wide = "\u{1F600}".repeat(5000);
        let messages: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"details":{{"ruleId":"9321{i:02}","severity":"2","tags":["attack-rce"]}}}}"#))
            .collect();
        let line = format!(
            r#"{{"transaction":{{"client_ip":"203.0.113.9","unique_id":"{wide}","request":{{"method":"{wide}","uri":"/{wide}?{wide}","headers":{{"Host":"{host}"}}}},"messages":[{}]}}}}"#,
            messages.join(","),
            host = "a".repeat(253),
        );
        let s = suspect(line.as_bytes(), &WafConfig::default()).unwrap();
        let heap = s.method.capacity()
            + s.uri.capacity()
            + s.unique_id.capacity()
            + s.host.as_ref().map_or(0, String::capacity)
            + s.rule_ids.capacity() * 4;
        // The routing path is dropped once routed: what the log keeps is at most 1.6 kB.
        let kept = std::mem::size_of::<Suspicion>() + heap;
        assert!(kept <= 1600, "{kept} bytes");
        assert!(s.path.len() <= crate::correlate::suspicion::MAX_PATH);
        assert_eq!(s.rule_ids.len(), MAX_RULES);
    }

    #[test]
    fn low_confidence_and_protected_clients_are_suspicions_too() {
        // A protocol anomaly alone: no ban class, the client resolved all the same.
        let line = br#"{"transaction":{"client_ip":"10.0.0.2","request":{"method":"GET","uri":"/","headers":{"Host":"1.2.3.4","X-Forwarded-For":"198.51.100.7"}},"messages":[{"details":{"ruleId":"920350","severity":"4","tags":["attack-protocol"]}}]}}"#;
        let mut cfg = WafConfig::default();
        cfg.client_ip.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let s = suspect(line, &cfg).unwrap();
        assert_eq!(s.ip.to_string(), "198.51.100.7");
        assert!(!s.strong_attack());
        assert_eq!(s.time, 1_700_000_100, "no time in the entry: now");
        cfg.client_ip.allowlist = vec!["198.51.100.0/24".parse().unwrap()];
        assert!(suspect(line, &cfg).unwrap().protected);
        // No CRS hit at all: nothing.
        let clean =
            br#"{"transaction":{"client_ip":"203.0.113.9","request":{"uri":"/"},"messages":[]}}"#;
        assert_eq!(suspect(clean, &cfg), None);
    }
}
