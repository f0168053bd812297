//! Per client, why `replay` would or would not ban it — the score path a user tunes with:
//! the entries counted and their classes, the points each rule added (severity × weight ×
//! blocked factor), the points ignored (rules of other classes riding along, weight 0,
//! repeats), points for new classes, and the bucket's peak against the threshold.
//!
//! Clients are keyed by attacker-chosen addresses, so the table is bounded
//! ([`MAX_CLIENTS`]); clients beyond it are only counted.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::IpAddr,
    time::{Duration, UNIX_EPOCH},
};

use super::{
    WafConfig,
    classify::{Class, ClassSet, Classifier, Count},
    client_ip::Protection,
    pipeline::{Decision, Outcome},
    score::Score,
};

/// Clients whose path is kept.
pub const MAX_CLIENTS: usize = 10_000;
/// Rules itemised per client (counted, and ignored); the rest are summed as "other rules".
const MAX_RULES: usize = 8;

pub struct ScorePaths {
    classifier: Classifier,
    threshold: u32,
    window: Duration,
    blocked_factor: f32,
    clients: HashMap<IpAddr, ClientPath>,
    /// Clients seen after the table was full.
    untracked: u64,
}

#[derive(Default)]
struct ClientPath {
    /// Entries with a ban class, and how many of them the WAF blocked.
    entries: u32,
    blocked: u32,
    /// Entries while an earlier ban still ran (they add nothing).
    while_banned: u32,
    protected: Option<Protection>,
    classes: ClassSet,
    /// Classes shown by rules of weight ≥ 1.
    evidence: ClassSet,
    new_class: f64,
    /// The highest the bucket got.
    peak: f32,
    /// First ban: time, length, offense, and which of the client's entries caused it.
    first_ban: Option<(u64, Duration, u32, u32)>,
    bans: u32,
    counted: Vec<Tally>,
    ignored: Vec<Tally>,
    other_counted: f64,
    other_ignored: f64,
}

/// One rule's share of a client's points.
struct Tally {
    rule_id: Option<u32>,
    class: Class,
    severity_points: u32,
    weight: f32,
    count: Count,
    entries: u32,
    blocked: u32,
    points: f64,
}

impl ScorePaths {
    pub fn new(cfg: &WafConfig) -> ScorePaths {
        ScorePaths {
            classifier: Classifier::from_config(cfg),
            threshold: cfg.scoring.threshold,
            window: cfg.scoring.window,
            blocked_factor: cfg.scoring.blocked_factor,
            clients: HashMap::new(),
            untracked: 0,
        }
    }

    /// Adds one decided entry (entries without a ban class are nobody's path).
    pub fn add(&mut self, o: &Outcome<'_>) {
        let (ip, scored, protected) = match o.decision {
            Decision::Scored(ip, score, added) => (ip, Some((score, added)), None),
            Decision::Protected(ip, why) => (ip, None, Some(why)),
            Decision::Pass | Decision::Unattributable => return,
        };
        let factor = if o.verdict.blocked {
            self.blocked_factor
        } else {
            1.0
        };
        let classifier = &self.classifier;
        let threshold = self.threshold;
        let Some(path) = client(&mut self.clients, &mut self.untracked, ip) else {
            return;
        };
        path.protected = path.protected.or(protected);
        path.entries += 1;
        path.blocked += u32::from(o.verdict.blocked);
        match scored {
            Some((Score::AlreadyBanned { .. }, _)) => {
                path.while_banned += 1;
                return;
            }
            Some((score, added)) => {
                path.new_class += f64::from(added.new_class);
                match score {
                    Score::Counted { level, .. } => path.peak = path.peak.max(level),
                    Score::Ban { ttl, offense } => {
                        path.peak = path.peak.max(threshold as f32);
                        path.bans += 1;
                        if path.first_ban.is_none() {
                            path.first_ban = Some((o.time, ttl, offense, path.entries));
                        }
                    }
                    Score::AlreadyBanned { .. } => {}
                }
            }
            None => {}
        }
        path.classes = path.classes.union(o.verdict.ban_classes);
        path.evidence = path.evidence.union(o.verdict.evidence);
        for i in 0..o.entry.messages().len() {
            if let Some(c) = classifier.contribution(&o.entry, i) {
                let points = match c.count {
                    Count::Counted => f64::from(c.points() * factor),
                    _ => f64::from(c.severity_points),
                };
                path.tally(c, o.verdict.blocked, points);
            }
        }
    }

    /// Text: banned clients first (in ban order), then the rest by peak; at most `limit`.
    pub fn render(&self, limit: usize) -> String {
        let mut s = String::new();
        let mut clients: Vec<(&IpAddr, &ClientPath)> = self.clients.iter().collect();
        clients.sort_by(|(a_ip, a), (b_ip, b)| {
            let key = |p: &ClientPath| (p.first_ban.is_none(), p.first_ban.map(|b| b.0));
            key(a)
                .cmp(&key(b))
                .then(b.peak.total_cmp(&a.peak))
                .then(a_ip.cmp(b_ip))
        });
        let _ = writeln!(
            s,
            "score paths ({} client(s) with a ban class; threshold {}, leaking {} per {}; blocked entries count {}x):",
            self.clients.len(),
            self.threshold,
            self.threshold,
            humantime::format_duration(self.window),
            self.blocked_factor
        );
        for (ip, path) in clients.iter().take(limit) {
            path.render(&mut s, ip, self.threshold);
        }
        if clients.len() > limit {
            let _ = writeln!(
                s,
                "  ... {} more client(s) (--clients N shows more)",
                clients.len() - limit
            );
        }
        if self.untracked > 0 {
            let _ = writeln!(
                s,
                "  ... and {} entries of clients beyond the first {MAX_CLIENTS}, not itemised",
                self.untracked
            );
        }
        s
    }
}

impl ClientPath {
    fn tally(&mut self, c: super::classify::Contribution, blocked: bool, points: f64) {
        let counted = c.count == Count::Counted;
        let (list, other) = if counted {
            (&mut self.counted, &mut self.other_counted)
        } else {
            (&mut self.ignored, &mut self.other_ignored)
        };
        let t = match list
            .iter_mut()
            .position(|t| t.rule_id == c.rule_id && t.count == c.count)
        {
            Some(i) => &mut list[i],
            None if list.len() < MAX_RULES => {
                list.push(Tally {
                    rule_id: c.rule_id,
                    class: c.class,
                    severity_points: c.severity_points,
                    weight: c.weight,
                    count: c.count,
                    entries: 0,
                    blocked: 0,
                    points: 0.0,
                });
                list.last_mut().expect("just pushed")
            }
            None => {
                *other += points;
                return;
            }
        };
        t.entries += 1;
        t.blocked += u32::from(blocked);
        t.points += points;
    }

    fn render(&self, s: &mut String, ip: &IpAddr, threshold: u32) {
        let verdict = match (self.protected, self.first_ban) {
            (Some(why), _) => format!("never banned ({})", why.as_str()),
            (None, Some((time, ttl, offense, entry))) => format!(
                "BANNED at {} for {} (offense {offense}) by its entry {entry}: the bucket reached {threshold}{}",
                time_text(time),
                humantime::format_duration(ttl),
                match self.bans {
                    1 => String::new(),
                    n => format!("; {n} bans in all"),
                }
            ),
            (None, None) => format!(
                "not banned: the bucket peaked at {:.1} of {threshold}",
                self.peak
            ),
        };
        let _ = writeln!(s, "  {ip}: {verdict}");
        let weak_only = self.classes.difference(self.evidence);
        let _ = writeln!(
            s,
            "    {} entr{} with a ban class ({} blocked{}); classes {}{}",
            self.entries,
            if self.entries == 1 { "y" } else { "ies" },
            self.blocked,
            match self.while_banned {
                0 => String::new(),
                n => format!(", {n} while already banned"),
            },
            self.classes.join(","),
            if weak_only.is_empty() {
                String::new()
            } else {
                format!(" ({} from weak rules only)", weak_only.join(","))
            }
        );
        let counted: f64 = self.counted.iter().map(|t| t.points).sum::<f64>() + self.other_counted;
        let _ = write!(s, "    counted {:.1}:", counted + self.new_class);
        for t in &self.counted {
            let _ = write!(
                s,
                " {} {} x{}{}: {} x weight {}{} = {:.1};",
                rule_text(t.rule_id),
                t.class,
                t.entries,
                if t.blocked > 0 {
                    format!(" ({} blocked)", t.blocked)
                } else {
                    String::new()
                },
                t.severity_points,
                t.weight,
                if t.blocked > 0 {
                    " x blocked factor"
                } else {
                    ""
                },
                t.points
            );
        }
        if self.other_counted > 0.0 {
            let _ = write!(s, " other rules {:.1};", self.other_counted);
        }
        if self.new_class > 0.0 {
            let _ = write!(s, " new classes {:.1};", self.new_class);
        }
        let _ = writeln!(s);
        let ignored: f64 = self.ignored.iter().map(|t| t.points).sum::<f64>() + self.other_ignored;
        let _ = write!(s, "    ignored {ignored:.0}");
        if !self.ignored.is_empty() {
            s.push(':');
        }
        for t in &self.ignored {
            let why = match t.count {
                Count::NotBanClass => "not a ban class",
                Count::ZeroWeight => "weight 0",
                Count::Repeated => "repeated in its entry",
                Count::Counted => "counted",
            };
            let _ = write!(
                s,
                " {} {} x{} ({why}) {:.0};",
                rule_text(t.rule_id),
                t.class,
                t.entries,
                t.points
            );
        }
        if self.other_ignored > 0.0 {
            let _ = write!(s, " other rules {:.0};", self.other_ignored);
        }
        let _ = writeln!(s);
    }
}

/// The client's path, created while there is room (else `untracked` counts it).
fn client<'a>(
    clients: &'a mut HashMap<IpAddr, ClientPath>,
    untracked: &mut u64,
    ip: IpAddr,
) -> Option<&'a mut ClientPath> {
    if !clients.contains_key(&ip) && clients.len() >= MAX_CLIENTS {
        *untracked += 1;
        return None;
    }
    Some(clients.entry(ip).or_default())
}

fn rule_text(id: Option<u32>) -> String {
    id.map_or_else(|| "rule ?".to_owned(), |id| id.to_string())
}

/// RFC 3339 time, to the second, of a Unix time.
pub fn time_text(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::{metrics::WafMetrics, pipeline::Pipeline};

    fn line(ip: &str, rules: &[(u32, &str)]) -> String {
        let messages: Vec<String> = rules
            .iter()
            .map(|(id, tag)| {
                format!(r#"{{"details":{{"ruleId":"{id}","severity":"2","tags":["{tag}"]}}}}"#)
            })
            .collect();
        format!(
            r#"{{"transaction":{{"client_ip":"{ip}","time_stamp":"Tue Dec  1 12:59:04 2026","producer":{{"secrules_engine":"Enabled"}},"response":{{"http_code":403}},"messages":[{},{{"message":"Inbound Anomaly Score Exceeded (Total Score: 10)","details":{{"ruleId":"949110","severity":"2"}}}}]}}}}"#,
            messages.join(",")
        )
    }

    #[test]
    fn says_why_each_client_was_or_was_not_banned() {
        let cfg = WafConfig::default();
        let mut pipeline = Pipeline::new(&cfg, WafMetrics::default());
        let mut paths = ScorePaths::new(&cfg);
        let lines = [
            line("203.0.113.7", &[(911100, "attack-generic"), (942100, "")]),
            line("203.0.113.7", &[(942100, "")]),
            line(
                "203.0.113.8",
                &[(911100, "attack-generic"), (942190, "attack-sqli")],
            ),
        ];
        for l in &lines {
            paths.add(&pipeline.process(l.as_bytes(), 0).unwrap());
        }
        let text = paths.render(10);
        let banned = text.find("203.0.113.7: BANNED").expect(&text);
        let spared = text
            .find("203.0.113.8: not banned: the bucket peaked at 5.0 of 20")
            .expect(&text);
        assert!(banned < spared, "banned first:\n{text}");
        for needle in [
            "2 entries with a ban class (2 blocked, 1 while already banned); classes sqli\n",
            "counted 20.0: 942100 sqli x1 (1 blocked): 5 x weight 2 x blocked factor = 20.0;",
            "ignored 5: 911100 generic x1 (not a ban class) 5;",
            "classes sqli (sqli from weak rules only)",
            "942190 sqli x1 (1 blocked): 5 x weight 0.5 x blocked factor = 5.0;",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        assert!(paths.render(1).contains("1 more client(s)"));
    }
}
