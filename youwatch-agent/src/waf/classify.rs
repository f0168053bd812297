//! An entry's attack classes (OWASP CRS taxonomy), inbound anomaly score and whether the WAF
//! blocked it.
//!
//! Tags *and* rule ids: libmodsecurity 3.0.x logs some rules with an empty tag list (942100,
//! SQLi via libinjection, is one), so a message without a known `attack-*` tag is classed by
//! its rule-id range. The anomaly score is read from 949110's message ("Total Score: N");
//! without it (detection-only below the threshold) it is the CRS sum of severities.

use serde::{Deserialize, Serialize};

use super::entry::{Engine, Entry, Message};

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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub classes: ClassSet,
    /// The classes that are ban reasons (configured).
    pub ban_classes: ClassSet,
    /// Inbound anomaly score.
    pub score: u32,
    /// The score was read from the WAF's own evaluation (949110), not summed by us.
    pub score_from_waf: bool,
    /// The WAF blocked the request (vs detection-only).
    pub blocked: bool,
    /// Index of the first message of a ban class (for reports), else of the first classed one.
    pub main_message: Option<usize>,
}

pub struct Classifier {
    ban_classes: ClassSet,
}

/// 949110: inbound blocking evaluation; 980130: CRS 3 inbound correlation.
const INBOUND_EVALUATION: [u32; 2] = [949110, 980130];

impl Classifier {
    pub fn new(ban_classes: ClassSet) -> Classifier {
        Classifier { ban_classes }
    }

    pub fn classify(&self, e: &Entry<'_>) -> Verdict {
        let mut classes = ClassSet::EMPTY;
        let mut summed = 0u32;
        let mut waf_score = None;
        let mut main = None;
        let mut main_bans = false;
        for (i, m) in e.messages().iter().enumerate() {
            if let Some(score) = self.evaluation_score(e, m) {
                waf_score = Some(waf_score.unwrap_or(0).max(score));
                continue;
            }
            let Some(class) = message_class(e, m) else {
                continue;
            };
            classes.insert(class);
            summed = summed.saturating_add(severity_points(m.severity));
            let bans = self.ban_classes.contains(class);
            if main.is_none() || (bans && !main_bans) {
                main = Some(i);
                main_bans = bans;
            }
        }
        let blocked = match e.interrupted() {
            Some(interrupted) => interrupted,
            None => e.engine() == Engine::On && (waf_score.is_some() || e.status() == Some(403)),
        };
        Verdict {
            classes,
            ban_classes: classes.intersection(self.ban_classes),
            score: waf_score.unwrap_or(summed),
            score_from_waf: waf_score.is_some(),
            blocked,
            main_message: main,
        }
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
