//! parse → classify → client IP → score, for one line at a time. Shared by the live stage,
//! `youwatch-agent replay` and the benchmark, so all three decide exactly alike.

use std::{net::IpAddr, time::Duration};

use super::{
    WafConfig,
    classify::{Classifier, Verdict},
    client_ip::{self, Client, ClientIpPolicy, Protection},
    entry::{BadLine, Entry, Parser},
    json,
    metrics::{DecisionKind, WafMetrics},
    score::{Added, Evidence, Score, Scorer},
};

/// What happened to one entry's client.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Decision {
    /// No ban class in the entry: nothing counted.
    Pass,
    /// A ban class, but the client may never be banned.
    Protected(IpAddr, Protection),
    /// A ban class, but no valid client address.
    Unattributable,
    /// Counted against the client: what it did and the points it added.
    Scored(IpAddr, Score, Added),
}

impl Decision {
    pub fn kind(&self) -> DecisionKind {
        match self {
            Decision::Pass => DecisionKind::Pass,
            Decision::Protected(..) => DecisionKind::Protected,
            Decision::Unattributable => DecisionKind::Unattributable,
            Decision::Scored(_, Score::Counted { .. }, _) => DecisionKind::Counted,
            Decision::Scored(_, Score::Ban { .. }, _) => DecisionKind::Ban,
            Decision::Scored(_, Score::AlreadyBanned { .. }, _) => DecisionKind::AlreadyBanned,
        }
    }

    /// The ban this entry caused, if any.
    pub fn ban(&self) -> Option<(IpAddr, Duration)> {
        match *self {
            Decision::Scored(ip, Score::Ban { ttl, .. }, _) => Some((ip, ttl)),
            _ => None,
        }
    }

    /// The client the decision is about, when resolved.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Decision::Protected(ip, _) | Decision::Scored(ip, ..) => Some(ip),
            _ => None,
        }
    }
}

pub struct Outcome<'a> {
    pub entry: Entry<'a>,
    pub verdict: Verdict,
    pub decision: Decision,
    /// The entry's time (Unix seconds).
    pub time: u64,
}

pub struct Pipeline {
    parser: Parser,
    classifier: Classifier,
    policy: ClientIpPolicy,
    scorer: Scorer,
    metrics: WafMetrics,
    /// Bad-line kinds already logged (each is logged once, then only counted).
    logged: u32,
    /// The last `time_stamp` text and its value: consecutive entries mostly share a second.
    stamp: Vec<u8>,
    stamp_time: Option<u64>,
}

impl Pipeline {
    pub fn new(cfg: &WafConfig, metrics: WafMetrics) -> Pipeline {
        Pipeline {
            parser: Parser::new(),
            classifier: Classifier::from_config(cfg),
            policy: ClientIpPolicy::from_config(&cfg.client_ip),
            scorer: Scorer::new(cfg.scoring.clone()),
            metrics,
            logged: 0,
            stamp: Vec::new(),
            stamp_time: None,
        }
    }

    pub fn metrics(&self) -> &WafMetrics {
        &self.metrics
    }

    /// Decides one line; `now` (Unix seconds) is used when the entry carries no time. A bad
    /// line is counted (and logged the first time its kind is seen).
    pub fn process<'a>(&'a mut self, line: &'a [u8], now: u64) -> Result<Outcome<'a>, BadLine> {
        // The client's scoring state is fetched from memory while the line is parsed.
        let scorer = &self.scorer;
        let mut peer = None;
        let entry = match self.parser.parse_with(line, |raw| {
            peer = client_ip::parse_ip(raw);
            if let Some(ip) = peer {
                scorer.prefetch(ip);
            }
        }) {
            Ok(entry) => entry,
            Err(kind) => {
                self.metrics.bad_line(kind).inc();
                let bit = 1 << kind as u32;
                if self.logged & bit == 0 {
                    self.logged |= bit;
                    tracing::warn!(
                        kind = kind.as_str(),
                        line = %json::display(line, 160),
                        "audit-log line is not an entry; further lines of this kind are only counted (metric youwatch_waf_bad_lines)"
                    );
                }
                return Err(kind);
            }
        };
        self.metrics.entries.inc();
        let verdict = self.classifier.classify(&entry);
        for class in verdict.classes.iter() {
            self.metrics.class(class).inc();
        }
        if verdict.blocked {
            self.metrics.blocked.inc();
        }
        let stamp = entry.time_stamp();
        let time = if !stamp.is_empty() && stamp == self.stamp.as_slice() {
            self.stamp_time
        } else {
            let t = entry.unix_time();
            self.stamp.clear();
            self.stamp.extend_from_slice(&stamp[..stamp.len().min(64)]);
            self.stamp_time = t;
            t
        }
        .unwrap_or(now);
        let decision = if verdict.ban_classes.is_empty() {
            Decision::Pass
        } else {
            match self.policy.resolve_parsed(peer, entry.forwarded_for()) {
                Client::Candidate(ip) => {
                    let evictions = self.scorer.evictions();
                    let evidence = Evidence {
                        points: verdict.points,
                        blocked: verdict.blocked,
                        classes: verdict.evidence,
                    };
                    let (score, added) = self.scorer.record(ip, evidence, time);
                    if self.scorer.evictions() != evictions {
                        self.metrics.evicted_ips.inc();
                    }
                    self.metrics.tracked_ips.set(self.scorer.tracked() as i64);
                    Decision::Scored(ip, score, added)
                }
                Client::Protected(ip, why) => Decision::Protected(ip, why),
                Client::Unattributable => Decision::Unattributable,
            }
        };
        self.metrics.decision(decision.kind()).inc();
        Ok(Outcome {
            entry,
            verdict,
            decision,
            time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detection::{Origin, Subject},
        waf::{config::Report, detect},
    };

    /// A Coraza entry behind a trusted proxy, repeated until the client is banned.
    #[test]
    fn forwarded_attacker_is_banned_with_a_detection() {
        let line = br#"{"transaction":{"unix_timestamp":1700000000,"id":"u1","client_ip":"10.0.0.2","request":{"method":"GET","uri":"/?q=<script>","headers":{"Host":["Shop.Example:443"],"X-Forwarded-For":["203.0.113.50, 10.0.0.9"]}},"response":{"status":403},"producer":{"rule_engine":"On"},"is_interrupted":true},"messages":[{"message":"m","data":{"id":941100,"msg":"XSS Attack Detected via libinjection","severity":2,"tags":["attack-xss"]}}]}"#;
        let mut cfg = WafConfig::default();
        cfg.client_ip.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        let mut p = Pipeline::new(&cfg, WafMetrics::default());
        let mut bans = Vec::new();
        for _ in 0..4 {
            let o = p.process(line, 0).unwrap();
            assert_eq!(o.time, 1_700_000_000);
            if let Some(d) = detect::detection(&o, Report::Bans) {
                bans.push(d);
            }
        }
        assert_eq!(bans.len(), 1, "one ban, then already banned");
        let d = &bans[0];
        assert_eq!(d.origin, Origin::Waf);
        assert_eq!(
            d.subject,
            Subject::Attacker {
                ip: "203.0.113.50".parse().unwrap(),
                host: Some("shop.example".into()),
                ban_for: Some(cfg.scoring.ban),
            }
        );
        assert!(
            d.output.contains("941100") && d.output.contains("xss"),
            "{}",
            d.output
        );
        assert_eq!(p.metrics().entries.get(), 4);
    }

    #[test]
    fn bad_lines_are_counted_not_fatal() {
        let mut p = Pipeline::new(&WafConfig::default(), WafMetrics::default());
        for line in [&b"garbage"[..], b"{\"transaction\":", b"{}", b"\xff\x00{"] {
            assert!(p.process(line, 0).is_err());
        }
        assert_eq!(p.metrics().bad_line(BadLine::NotJson).get(), 2);
        assert_eq!(p.metrics().bad_line(BadLine::Truncated).get(), 1);
        assert_eq!(p.metrics().bad_line(BadLine::NoTransaction).get(), 1);
    }
}
