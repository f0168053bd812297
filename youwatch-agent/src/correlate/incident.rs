//! An [`Incident`]: a runtime detection in a pod and the suspicious requests that reached the
//! pod's Services before it, ranked, with the clients to ban. Rendered as an alert (Falco
//! JSON, `output_fields` holding the ranked candidates), a Kubernetes Event note, a dry-run
//! line, and the evidence of each ban.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};

use super::{
    rank::{BanPolicy, Candidate},
    suspicion::Workload,
};
use crate::detection::{Detection, Origin, PodRef, Priority, Subject};

/// The alert's rule name.
pub const RULE: &str = "YouWatch incident";

#[derive(Clone, Debug)]
pub struct Incident {
    /// The runtime detection (own rules or the Falco fallback).
    pub detection: Arc<Detection>,
    pub pod: PodRef,
    /// The Services selecting the pod: where requests had to go to reach it.
    pub services: Vec<Workload>,
    pub window: Duration,
    /// Most likely first, at most `max_candidates` (plus any chosen for a ban beyond).
    pub candidates: Vec<Candidate>,
    /// Candidates ranked below those kept.
    pub more: usize,
    /// Indexes into `candidates` of the ones whose clients are banned.
    pub ban: Vec<usize>,
    /// What could not be looked at (the pod's Services, another node's evidence).
    pub notes: Vec<String>,
}

impl Incident {
    /// Ranks `ranked` (already in order) for `detection`: keeps `max_candidates` and those
    /// `policy` bans.
    pub fn new(
        detection: Arc<Detection>,
        pod: PodRef,
        services: Vec<Workload>,
        window: Duration,
        ranked: Vec<Candidate>,
        max_candidates: usize,
        policy: &BanPolicy,
    ) -> Incident {
        let chosen = policy.choose(&ranked);
        let total = ranked.len();
        let mut candidates = Vec::new();
        let mut ban = Vec::new();
        for (i, c) in ranked.into_iter().enumerate() {
            let banned = chosen.contains(&i);
            if i < max_candidates || banned {
                if banned {
                    ban.push(candidates.len());
                }
                candidates.push(c);
            }
        }
        Incident {
            detection,
            pod,
            services,
            window,
            more: total - candidates.len(),
            candidates,
            ban,
            notes: Vec::new(),
        }
    }

    /// The detection's time, Unix seconds.
    pub fn at(&self) -> u64 {
        secs(self.detection.time)
    }

    fn pod_name(&self) -> String {
        format!("{}/{}", self.pod.namespace, self.pod.name)
    }

    fn service_names(&self) -> Vec<String> {
        self.services.iter().map(Workload::to_string).collect()
    }

    /// The clients banned, most likely first.
    pub fn banned(&self) -> impl Iterator<Item = &Candidate> {
        self.ban.iter().map(|&i| &self.candidates[i])
    }

    /// One sentence for people.
    pub fn summary(&self) -> String {
        let d = &self.detection;
        let mut s = format!("{} in pod {}", d.rule, self.pod_name());
        match self.candidates.first() {
            None => s.push_str(&format!(
                "; no suspicious request reached its Services ({}) in the {} before",
                self.service_names().join(", "),
                humantime::format_duration(self.window)
            )),
            Some(top) => {
                s.push_str(&format!(
                    " {} after {} to {}",
                    relative(self.at(), top.suspicion.time),
                    top.suspicion.summary(),
                    top.workload
                ));
                let others = self.candidates.len() - 1 + self.more;
                if others > 0 {
                    s.push_str(&format!("; {others} more candidate(s)"));
                }
            }
        }
        let banned: Vec<String> = self.banned().map(|c| c.suspicion.ip.to_string()).collect();
        if !banned.is_empty() {
            s.push_str(&format!("; banning {}", banned.join(", ")));
        }
        s
    }

    /// The incident as JSON: the alert's `output_fields` and the dry-run line.
    pub fn fields(&self) -> BTreeMap<String, Value> {
        let at = self.at();
        let candidates: Vec<Value> = self
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s = &c.suspicion;
                let banned = self.ban.contains(&i);
                json!({
                    "rank": i + 1,
                    "ip": s.ip.to_string(),
                    "time": rfc3339(s.time),
                    "seconds_before": at as i64 - s.time as i64,
                    "service": c.workload.to_string(),
                    "host": s.host,
                    "method": s.method,
                    "uri": s.uri,
                    "rule_ids": s.rule_ids,
                    "classes": s.classes.join(","),
                    "tier": s.tier().as_str(),
                    "blocked": s.blocked,
                    "unique_id": s.unique_id,
                    "seen_by": c.seen_by.as_deref().unwrap_or("this node"),
                    "ban": banned,
                })
            })
            .collect();
        let banned: Vec<String> = self.banned().map(|c| c.suspicion.ip.to_string()).collect();
        let d = &self.detection;
        [
            ("incident.rule", json!(d.rule)),
            ("incident.priority", json!(d.priority.as_str())),
            ("incident.pod", json!(self.pod_name())),
            ("k8s.ns.name", json!(self.pod.namespace)),
            ("k8s.pod.name", json!(self.pod.name)),
            ("incident.services", json!(self.service_names())),
            ("incident.window_secs", json!(self.window.as_secs())),
            ("incident.candidates", Value::Array(candidates)),
            ("incident.more_candidates", json!(self.more)),
            ("incident.ban", json!(banned)),
            ("incident.notes", json!(self.notes)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// The incident as an alert (`rule: "YouWatch incident"`), for the alert output only.
    pub fn alert(&self) -> Detection {
        let d = &self.detection;
        let priority = if self.candidates.is_empty() {
            d.priority
        } else {
            d.priority.min(Priority::Critical)
        };
        let mut tags = vec!["youwatch".to_owned(), "incident".to_owned()];
        tags.extend(d.tags.iter().cloned());
        Detection {
            time: SystemTime::now(),
            origin: Origin::Response,
            rule: RULE.into(),
            priority,
            output: format!("Incident: {}", self.summary()),
            tags,
            output_fields: self.fields(),
            subject: Subject::None,
        }
    }

    /// The note of the Event on the pod: the summary, then each candidate.
    pub fn event_note(&self) -> String {
        let mut note = format!("youwatch incident: {}.", self.summary());
        for (i, c) in self.candidates.iter().enumerate() {
            note.push_str(&format!(
                " {}. {} {} ({}{}).",
                i + 1,
                relative(self.at(), c.suspicion.time),
                c.suspicion.summary(),
                c.seen_by
                    .as_deref()
                    .map_or_else(|| "seen here".to_owned(), |n| format!("seen on {n}")),
                if self.ban.contains(&i) {
                    ", banned"
                } else {
                    ""
                }
            ));
        }
        note
    }

    /// The detection a ban of candidate `i` acts on: the runtime detection's rule, the
    /// request's WAF fields, the incident's pod (what the Event on the Ingress and the ban
    /// ledger's reason say).
    pub fn ban_detection(&self, i: usize, until: Duration) -> Detection {
        let d = &self.detection;
        let c = &self.candidates[i];
        let s = &c.suspicion;
        let fields: BTreeMap<String, Value> = [
            ("waf.client_ip", json!(s.ip.to_string())),
            ("waf.host", json!(s.host)),
            ("waf.classes", json!(s.classes.join(","))),
            ("waf.rule_id", json!(s.rule_ids.first())),
            ("waf.method", json!(s.method)),
            ("waf.uri", json!(s.uri)),
            ("waf.blocked", json!(s.blocked)),
            ("waf.unique_id", json!(s.unique_id)),
            ("incident.pod", json!(self.pod_name())),
            ("incident.rank", json!(i + 1)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Detection {
            time: d.time,
            origin: d.origin,
            rule: d.rule.clone(),
            priority: d.priority,
            output: format!(
                "incident: {} sent {} {} {} before {} in pod {} (candidate {} of {})",
                s.ip,
                s.method,
                s.uri,
                relative(self.at(), s.time),
                d.rule,
                self.pod_name(),
                i + 1,
                self.candidates.len() + self.more
            ),
            tags: vec!["youwatch".into(), "incident".into()],
            output_fields: fields,
            subject: Subject::Attacker {
                ip: s.ip,
                host: s.host.clone(),
                ban_for: Some(until),
            },
        }
    }
}

/// `12s`, or `at the same second`, or `2s later` (clocks apart).
fn relative(at: u64, time: u64) -> String {
    match at.cmp(&time) {
        std::cmp::Ordering::Greater => format!("{}s", at - time),
        std::cmp::Ordering::Equal => "0s".into(),
        std::cmp::Ordering::Less => format!("-{}s", time - at),
    }
}

fn rfc3339(secs: u64) -> String {
    jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(i64::MAX))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Whole seconds since the Unix epoch.
pub fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::log::tests::suspicion, waf::classify::Class};

    fn shell(at: u64) -> Arc<Detection> {
        Arc::new(Detection {
            time: UNIX_EPOCH + Duration::from_secs(at),
            origin: Origin::Rules,
            rule: "Shell spawned in Juice Shop pod".into(),
            priority: Priority::Critical,
            output: String::new(),
            tags: vec!["shell".into()],
            output_fields: BTreeMap::new(),
            subject: Subject::None,
        })
    }

    fn pod() -> PodRef {
        PodRef {
            namespace: "shop".into(),
            name: "juice-shop-1".into(),
            ..PodRef::default()
        }
    }

    fn workload() -> Workload {
        Workload {
            namespace: "shop".into(),
            service: "juice-shop".into(),
        }
    }

    fn candidates(list: &[(&str, Class)]) -> Vec<Candidate> {
        list.iter()
            .map(|(ip, class)| Candidate {
                suspicion: suspicion(ip, 1000, *class),
                workload: workload(),
                seen_by: None,
            })
            .collect()
    }

    #[test]
    fn keeps_the_top_and_every_banned_candidate() {
        let policy = BanPolicy {
            max_ips: 3,
            weak_rules: false,
        };
        let ranked = candidates(&[
            ("203.0.113.1", Class::Protocol),
            ("203.0.113.2", Class::Protocol),
            ("203.0.113.3", Class::Rce),
        ]);
        let i = Incident::new(
            shell(1012),
            pod(),
            vec![workload()],
            Duration::from_secs(60),
            ranked,
            1,
            &policy,
        );
        assert_eq!(i.candidates.len(), 2, "the top one and the banned one");
        assert_eq!(i.more, 1);
        assert_eq!(i.ban, [1]);
        let alert = i.alert();
        assert_eq!(alert.rule, RULE);
        let c = &alert.output_fields["incident.candidates"];
        assert_eq!(c[1]["ip"], "203.0.113.3");
        assert_eq!(c[1]["seconds_before"], 12);
        assert_eq!(c[1]["ban"], true);
        assert_eq!(alert.output_fields["incident.ban"], json!(["203.0.113.3"]));
        assert!(
            alert.output.contains("12s after 203.0.113.1"),
            "{}",
            alert.output
        );
        assert!(i.event_note().contains("2. 12s 203.0.113.3 GET /x?rce"));
        let ban = i.ban_detection(1, Duration::from_secs(2400));
        assert_eq!(ban.rule, "Shell spawned in Juice Shop pod");
        assert_eq!(ban.output_fields["waf.classes"], "rce");
        assert!(
            matches!(ban.subject, Subject::Attacker { ban_for: Some(d), .. } if d.as_secs() == 2400)
        );
    }

    #[test]
    fn no_candidates_says_where_it_looked() {
        let policy = BanPolicy {
            max_ips: 3,
            weak_rules: false,
        };
        let i = Incident::new(
            shell(1000),
            pod(),
            vec![workload()],
            Duration::from_secs(60),
            Vec::new(),
            10,
            &policy,
        );
        assert!(i.ban.is_empty());
        assert!(
            i.summary().ends_with(
                "no suspicious request reached its Services (shop/juice-shop) in the 1m before"
            ),
            "{}",
            i.summary()
        );
        assert_eq!(i.alert().priority, Priority::Critical);
    }
}
