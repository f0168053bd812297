//! An entry's attack classes (OWASP CRS taxonomy), inbound anomaly score and whether the WAF
//! blocked it.
//!
//! Tags *and* rule ids: libmodsecurity 3.0.x logs some rules with an empty tag list (942100,
//! SQLi via libinjection, is one), so a message without a known `attack-*` tag is classed by
//! its rule-id range. The anomaly score is read from 949110's message ("Total Score: N");
//! without it (detection-only below the threshold) it is the CRS sum of severities.

use serde::{Deserialize, Serialize};

use super::{
    WafConfig,
    entry::{Engine, Entry, Message},
};

/// CRS attack classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// 942, `attack-sqli`.
    Sqli,
    /// 941, `attack-xss`.
    Xss,
    /// 932, `attack-rce`.
    Rce,
    /// 930, `attack-lfi`.
    Lfi,
    /// 931, `attack-rfi`.
    Rfi,
    /// 933, `attack-injection-php`.
    Php,
    /// 934, `attack-injection-nodejs` / `attack-injection-generic`.
    Injection,
    /// 944, `attack-java`.
    Java,
    /// 943, `attack-fixation`.
    Fixation,
    /// 913, `attack-reputation-scanner` / `-crawler` / `-scripting`.
    Scanner,
    /// 912, `attack-dos`.
    Dos,
    /// 910, `attack-reputation-ip`.
    Reputation,
    /// 911, 920, 921, 922, `attack-protocol`: malformed or unusual requests, which browsers and
    /// broken clients send too.
    Protocol,
    /// `attack-generic`.
    Generic,
    /// 950–956, `attack-disclosure`: the *response* leaked something.
    Leakage,
    /// A rule outside the CRS ranges without a known tag.
    Other,
}

impl Class {
    pub const ALL: [Class; 16] = [
        Class::Sqli,
        Class::Xss,
        Class::Rce,
        Class::Lfi,
        Class::Rfi,
        Class::Php,
        Class::Injection,
        Class::Java,
        Class::Fixation,
        Class::Scanner,
        Class::Dos,
        Class::Reputation,
        Class::Protocol,
        Class::Generic,
        Class::Leakage,
        Class::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Sqli => "sqli",
            Class::Xss => "xss",
            Class::Rce => "rce",
            Class::Lfi => "lfi",
            Class::Rfi => "rfi",
            Class::Php => "php",
            Class::Injection => "injection",
            Class::Java => "java",
            Class::Fixation => "fixation",
            Class::Scanner => "scanner",
            Class::Dos => "dos",
            Class::Reputation => "reputation",
            Class::Protocol => "protocol",
            Class::Generic => "generic",
            Class::Leakage => "leakage",
            Class::Other => "other",
        }
    }

    /// Attacks a benign client does not send by accident. Not: protocol anomalies (broken
    /// clients), generic, leakage (the response's fault), dos and reputation (not about the
    /// request's content), other.
    pub fn bans_by_default(self) -> bool {
        !matches!(
            self,
            Class::Dos
                | Class::Reputation
                | Class::Protocol
                | Class::Generic
                | Class::Leakage
                | Class::Other
        )
    }

    /// The class a CRS `attack-*` tag names.
    pub fn from_tag(tag: &[u8]) -> Option<Class> {
        let rest = tag.strip_prefix(b"attack-")?;
        Some(match rest {
            b"sqli" => Class::Sqli,
            b"xss" => Class::Xss,
            b"rce" => Class::Rce,
            b"lfi" => Class::Lfi,
            b"rfi" => Class::Rfi,
            b"injection-php" => Class::Php,
            b"injection-nodejs" | b"injection-generic" | b"nodejs" => Class::Injection,
            b"java" | b"injection-java" => Class::Java,
            b"fixation" => Class::Fixation,
            b"reputation-scanner" | b"reputation-crawler" | b"reputation-scripting" => {
                Class::Scanner
            }
            b"dos" => Class::Dos,
            b"reputation-ip" => Class::Reputation,
            b"protocol" | b"multipart-header" | b"deprecated-header" | b"request-smuggling" => {
                Class::Protocol
            }
            b"generic" => Class::Generic,
            b"disclosure" => Class::Leakage,
            _ => return None,
        })
    }

    /// The class of a CRS rule id range; `None` outside the attack ranges (initialisation,
    /// exclusions, blocking evaluation, correlation, custom rules).
    pub fn from_rule_id(id: u32) -> Option<Class> {
        Some(match id / 1000 {
            910 => Class::Reputation,
            911 | 920 | 921 | 922 => Class::Protocol,
            912 => Class::Dos,
            913 => Class::Scanner,
            930 => Class::Lfi,
            931 => Class::Rfi,
            932 => Class::Rce,
            933 => Class::Php,
            934 => Class::Injection,
            941 => Class::Xss,
            942 => Class::Sqli,
            943 => Class::Fixation,
            944 => Class::Java,
            950..=956 => Class::Leakage,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClassSet(u32);

impl ClassSet {
    pub const EMPTY: ClassSet = ClassSet(0);

    pub fn insert(&mut self, c: Class) {
        self.0 |= 1 << c as u32;
    }

    pub fn contains(self, c: Class) -> bool {
        self.0 & (1 << c as u32) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn intersection(self, other: ClassSet) -> ClassSet {
        ClassSet(self.0 & other.0)
    }

    pub fn union(self, other: ClassSet) -> ClassSet {
        ClassSet(self.0 | other.0)
    }

    /// The classes of `self` not in `other`.
    pub fn difference(self, other: ClassSet) -> ClassSet {
        ClassSet(self.0 & !other.0)
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = Class> {
        Class::ALL.into_iter().filter(move |c| self.contains(*c))
    }

    /// `sqli,xss`.
    pub fn join(self, sep: &str) -> String {
        self.iter().map(Class::as_str).collect::<Vec<_>>().join(sep)
    }
}

impl FromIterator<Class> for ClassSet {
    fn from_iter<I: IntoIterator<Item = Class>>(iter: I) -> ClassSet {
        let mut set = ClassSet::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

/// What the classifier says about one entry.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Verdict {
    pub classes: ClassSet,
    /// The classes of the rules that count against the client (ban classes, weight > 0).
    pub ban_classes: ClassSet,
    /// The ban classes shown by a rule of weight ≥ 1 (a weak rule alone shows none).
    pub evidence: ClassSet,
    /// What the entry's own attack rules are worth: severity points × rule weight, summed
    /// over the counted rules, each rule once (at least 1 when any counts).
    pub points: f32,
    /// Severity points of the entry's other classed rules (other classes riding along,
    /// weight 0, repeats): not counted.
    pub ignored: u32,
    /// Inbound anomaly score.
    pub score: u32,
    /// The score was read from the WAF's own evaluation (949110), not summed by us.
    pub score_from_waf: bool,
    /// The WAF blocked the request (vs detection-only).
    pub blocked: bool,
    /// Index of the counted message worth most (for reports), else of the first classed one.
    pub main_message: Option<usize>,
}

/// What one message of an entry adds, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Contribution {
    pub rule_id: Option<u32>,
    pub class: Class,
    /// CRS anomaly points of its severity (critical 5, error 4, warning 3, notice 2).
    pub severity_points: u32,
    /// Its `rule_weights` weight (1 when unlisted).
    pub weight: f32,
    pub count: Count,
}

/// Whether a message counts against its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Counted,
    /// Its class is not in `ban_classes`.
    NotBanClass,
    /// `rule_weights` gives it 0.
    ZeroWeight,
    /// The same rule already counted in this entry (it matched several variables).
    Repeated,
}

impl Contribution {
    /// The points it adds (0 unless counted).
    pub fn points(&self) -> f32 {
        match self.count {
            Count::Counted => self.severity_points as f32 * self.weight,
            _ => 0.0,
        }
    }
}

pub struct Classifier {
    ban_classes: ClassSet,
    /// Rule id → weight, sorted by id.
    weights: Vec<(u32, f32)>,
}

/// 949110: inbound blocking evaluation; 980130: CRS 3 inbound correlation.
const INBOUND_EVALUATION: [u32; 2] = [949110, 980130];

/// The WAF's own verdict on the request's score (not a rule the request matched).
pub fn is_evaluation(rule_id: u32) -> bool {
    INBOUND_EVALUATION.contains(&rule_id)
}

impl Classifier {
    /// Every rule of `ban_classes` counts with weight 1.
    pub fn new(ban_classes: ClassSet) -> Classifier {
        Classifier {
            ban_classes,
            weights: Vec::new(),
        }
    }

    /// The classifier of a `waf:` configuration: its ban classes and rule weights.
    pub fn from_config(cfg: &WafConfig) -> Classifier {
        Classifier {
            ban_classes: cfg.ban_class_set(),
            weights: cfg
                .scoring
                .rule_weights
                .iter()
                .map(|(&id, &w)| (id, w))
                .collect(),
        }
    }

    fn weight(&self, rule_id: Option<u32>) -> f32 {
        rule_id
            .and_then(|id| {
                self.weights
                    .binary_search_by_key(&id, |&(id, _)| id)
                    .ok()
                    .map(|i| self.weights[i].1)
            })
            .unwrap_or(1.0)
    }

    pub fn classify(&self, e: &Entry<'_>) -> Verdict {
        let mut v = Verdict {
            classes: ClassSet::EMPTY,
            ban_classes: ClassSet::EMPTY,
            evidence: ClassSet::EMPTY,
            points: 0.0,
            ignored: 0,
            score: 0,
            score_from_waf: false,
            blocked: false,
            main_message: None,
        };
        let mut summed = 0u32;
        let mut waf_score = None;
        let mut main_points = -1.0;
        for (i, m) in e.messages().iter().enumerate() {
            if let Some(score) = self.evaluation_score(e, m) {
                waf_score = Some(waf_score.unwrap_or(0).max(score));
                continue;
            }
            let Some(c) = self.contribution(e, i) else {
                continue;
            };
            v.classes.insert(c.class);
            summed = summed.saturating_add(c.severity_points);
            let points = c.points();
            if c.count == Count::Counted {
                v.ban_classes.insert(c.class);
                if c.weight >= 1.0 {
                    v.evidence.insert(c.class);
                }
                v.points += points;
            } else {
                v.ignored = v.ignored.saturating_add(c.severity_points);
            }
            // The counted message worth most; the first classed one until one counts.
            let rank = if c.count == Count::Counted {
                points
            } else {
                -0.5
            };
            if rank > main_points {
                main_points = rank;
                v.main_message = Some(i);
            }
        }
        if !v.ban_classes.is_empty() {
            v.points = v.points.max(1.0);
        }
        v.blocked = match e.interrupted() {
            Some(interrupted) => interrupted,
            None => e.engine() == Engine::On && (waf_score.is_some() || e.status() == Some(403)),
        };
        v.score = waf_score.unwrap_or(summed);
        v.score_from_waf = waf_score.is_some();
        v
    }

    /// What message `i` of `e` adds; `None` for the WAF's own bookkeeping (the anomaly
    /// evaluation, initialisation rules).
    pub fn contribution(&self, e: &Entry<'_>, i: usize) -> Option<Contribution> {
        let messages = e.messages();
        let m = &messages[i];
        if m.rule_id.is_some_and(|id| INBOUND_EVALUATION.contains(&id)) {
            return None;
        }
        let class = message_class(e, m)?;
        let severity_points = severity_points(m.severity);
        let (weight, count) = if !self.ban_classes.contains(class) {
            (1.0, Count::NotBanClass)
        } else {
            let weight = self.weight(m.rule_id);
            let count = if weight <= 0.0 {
                Count::ZeroWeight
            } else if m.rule_id.is_some() && messages[..i].iter().any(|p| p.rule_id == m.rule_id) {
                Count::Repeated
            } else {
                Count::Counted
            };
            (weight, count)
        };
        Some(Contribution {
            rule_id: m.rule_id,
            class,
            severity_points,
            weight,
            count,
        })
    }

    /// The total of an inbound anomaly evaluation message, `None` for other messages.
    fn evaluation_score(&self, e: &Entry<'_>, m: &Message) -> Option<u32> {
        let id = m.rule_id?;
        if !INBOUND_EVALUATION.contains(&id) {
            return None;
        }
        let msg = e.msg(m);
        let at = [&b"Total Score: "[..], b"Total Inbound Score: "]
            .iter()
            .find_map(|p| memchr::memmem::find(msg, p).map(|i| i + p.len()))
            .unwrap_or(msg.len());
        let digits = msg[at..].iter().take_while(|c| c.is_ascii_digit()).count();
        Some(
            super::json::parse_u64(&msg[at..at + digits])
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(0),
        )
    }
}

/// A message's class: its `attack-*` tag, else its rule-id range, else `Other` for rules
/// outside CRS bookkeeping; `None` for CRS's own bookkeeping rules (9xx outside the ranges).
pub fn message_class(e: &Entry<'_>, m: &Message) -> Option<Class> {
    if let Some(class) = Class::from_tag(e.attack_tag(m)) {
        return Some(class);
    }
    match m.rule_id {
        Some(id) => Class::from_rule_id(id)
            .or_else(|| (!(900_000..1_000_000).contains(&id)).then_some(Class::Other)),
        None => Some(Class::Other),
    }
}

/// CRS anomaly points per severity (critical 5, error 4, warning 3, notice 2).
fn severity_points(severity: Option<u8>) -> u32 {
    match severity {
        Some(0..=2) => 5,
        Some(3) => 4,
        Some(4) => 3,
        Some(5) => 2,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::entry::Parser;

    fn verdict(line: &[u8]) -> Verdict {
        let ban: ClassSet = [Class::Sqli, Class::Xss, Class::Scanner]
            .into_iter()
            .collect();
        let mut p = Parser::new();
        let e = p.parse(line).unwrap();
        Classifier::new(ban).classify(&e)
    }

    #[test]
    fn empty_tags_fall_back_to_rule_range_and_score_is_read() {
        let v = verdict(br#"{"transaction":{"client_ip":"1.2.3.4","response":{"http_code":403},"producer":{"secrules_engine":"Enabled"},"messages":[{"message":"Host header is a numeric IP address","details":{"ruleId":"920350","severity":"4","tags":["attack-protocol"]}},{"message":"SQL Injection Attack Detected via libinjection","details":{"ruleId":"942100","severity":"2","tags":[]}},{"message":"Inbound Anomaly Score Exceeded (Total Score: 8)","details":{"ruleId":"949110","severity":"2","tags":["attack-generic"]}}]}}"#);
        assert_eq!(
            v.classes,
            [Class::Protocol, Class::Sqli].into_iter().collect()
        );
        assert_eq!(v.ban_classes, [Class::Sqli].into_iter().collect());
        assert_eq!((v.score, v.score_from_waf, v.blocked), (8, true, true));
        assert_eq!(v.main_message, Some(1));
    }

    #[test]
    fn only_the_attack_rules_count_weighted_once_each() {
        let line = br#"{"transaction":{"client_ip":"1.2.3.4","producer":{"secrules_engine":"Enabled"},"response":{"http_code":403},"messages":[{"details":{"ruleId":"920420","severity":"2","tags":["attack-protocol"]}},{"details":{"ruleId":"942190","severity":"2","tags":["attack-sqli"]}},{"details":{"ruleId":"942100","severity":"2","tags":[]}},{"details":{"ruleId":"942100","severity":"2","tags":[]}},{"details":{"ruleId":"932150","severity":"2","tags":["attack-rce"]}},{"message":"Inbound Anomaly Score Exceeded (Total Score: 25)","details":{"ruleId":"949110","severity":"2"}}]}}"#;
        let mut cfg = WafConfig::default();
        cfg.scoring.rule_weights = [(942100, 2.0), (942190, 0.5), (932150, 0.0)].into();
        let classifier = Classifier::from_config(&cfg);
        let mut p = Parser::new();
        let e = p.parse(line).unwrap();
        let v = classifier.classify(&e);
        // 942190 5 x 0.5 + 942100 5 x 2 (once); 920420 (protocol), the repeat and the
        // weight-0 932150 are ignored.
        assert_eq!((v.points, v.ignored, v.score), (12.5, 15, 25));
        assert_eq!(v.ban_classes, [Class::Sqli].into_iter().collect());
        assert_eq!(v.evidence, [Class::Sqli].into_iter().collect());
        assert_eq!(v.main_message, Some(2), "942100 is worth most");
        let counts: Vec<Count> = (0..e.messages().len())
            .filter_map(|i| classifier.contribution(&e, i))
            .map(|c| c.count)
            .collect();
        assert_eq!(
            counts,
            [
                Count::NotBanClass,
                Count::Counted,
                Count::Counted,
                Count::Repeated,
                Count::ZeroWeight
            ]
        );
    }

    #[test]
    fn weak_rules_alone_show_no_class() {
        let line = br#"{"transaction":{"client_ip":"1.2.3.4","messages":[{"details":{"ruleId":"932100","severity":"2","tags":["attack-rce"]}}]}}"#;
        let classifier = Classifier::from_config(&WafConfig::default());
        let mut p = Parser::new();
        let v = classifier.classify(&p.parse(line).unwrap());
        assert_eq!(v.ban_classes, [Class::Rce].into_iter().collect());
        assert!(v.evidence.is_empty());
        assert_eq!(v.points, 2.5);
    }

    #[test]
    fn detection_only_sums_severities() {
        let v = verdict(br#"{"transaction":{"client_ip":"1.2.3.4","producer":{"secrules_engine":"DetectionOnly"},"messages":[{"details":{"ruleId":"941100","severity":"2","tags":["attack-xss"]}},{"details":{"ruleId":"920350","severity":"4","tags":["attack-protocol"]}}]}}"#);
        assert_eq!((v.score, v.score_from_waf, v.blocked), (8, false, false));
    }

    #[test]
    fn crs4_evaluation_with_severity_zero_is_not_a_class() {
        let v = verdict(br#"{"transaction":{"client_ip":"1.2.3.4","messages":[{"message":"Inbound Anomaly Score Exceeded (Total Score: 5)","details":{"ruleId":"949110","severity":"0","tags":["anomaly-evaluation"]}},{"details":{"ruleId":"200002"}}]}}"#);
        assert_eq!(v.classes, [Class::Other].into_iter().collect());
        assert_eq!(v.score, 5);
    }
}
