//! The change to one Ingress's annotations for a batch of operations: pure (annotations in,
//! annotation changes and one verdict per operation out), so the coalesced patch, the
//! client dry-run plan and the CLI compute exactly the same thing.
//!
//! The denylist keeps every entry a user wrote; the agent's entries are those keyed in its
//! ledger. Adding is refused when the user's list or the ledger is malformed (never make a
//! broken list worse) or when the list is full (`deny_ip.max_entries`); removing (expiry,
//! `unban`) is always allowed and leaves the user's entries as written. A longer ban of a
//! denied address extends its ledger entry only: the denylist does not change, so nginx
//! does not reload. The quarantine sets the allowlist to the deny-all source and records
//! the user's value; lifting it restores that value, unless the user changed the allowlist
//! meanwhile (theirs is kept).

use std::{collections::BTreeMap, time::SystemTime};

use ipnet::IpNet;

use super::{
    ledger::{Denied, DenyLedger, Quarantined},
    source_list::SourceList,
};

/// The annotation names and limits, from config.
#[derive(Clone, Debug)]
pub struct Names {
    pub denylist: String,
    pub deny_ledger: String,
    pub max_entries: usize,
    pub allowlist: String,
    pub quarantine_ledger: String,
    /// The allowlist value during a quarantine.
    pub deny_all: String,
}

impl Names {
    pub fn new(config: &crate::response::ResponseConfig) -> Names {
        Names {
            denylist: config.deny_ip.annotation.clone(),
            deny_ledger: config.deny_ip.ledger_annotation.clone(),
            max_entries: config.deny_ip.max_entries,
            allowlist: config.quarantine.annotation.clone(),
            quarantine_ledger: config.quarantine.ledger_annotation.clone(),
            deny_all: config.quarantine.deny_all_source.to_string(),
        }
    }
}

/// One thing to do to an Ingress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Deny an address (or extend its ban).
    Deny { net: IpNet, entry: Denied },
    /// Quarantine the Ingress (or extend it); `record.previous` is filled in here.
    Quarantine(Quarantined),
    /// Remove what expired at this time: bans, and a quarantine.
    Expire(SystemTime),
    /// Remove the agent's ban of this address.
    Unban(IpNet),
    /// Lift the quarantine.
    Release,
}

/// Why an operation was refused (also the metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The user's list holds entries nginx rejects.
    MalformedList,
    /// The agent's own record cannot be read.
    MalformedLedger,
    /// `deny_ip.max_entries` reached.
    Full,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::MalformedList => "malformed_list",
            Refusal::MalformedLedger => "malformed_ledger",
            Refusal::Full => "full",
        }
    }
}

/// What became of one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Written (`extended`: the address was denied already, until earlier).
    Denied {
        extended: bool,
    },
    /// Already denied at least as long, or by a user's entry; nothing written for it.
    AlreadyDenied(String),
    Quarantined {
        extended: bool,
    },
    AlreadyQuarantined(String),
    Refused {
        why: Refusal,
        detail: String,
    },
    /// Undone: these bans removed, and the quarantine lifted (with the restored value).
    Removed {
        released: Vec<(IpNet, Denied)>,
        lifted: Option<Lifted>,
    },
    /// Nothing of the agent's to remove.
    NothingToRemove,
}

/// A lifted quarantine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lifted {
    pub record: Quarantined,
    /// The allowlist after lifting (`None`: no allowlist).
    pub allowlist: Option<String>,
}

/// Annotation changes (`None`: remove the annotation) and a verdict per operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Edit {
    pub changes: BTreeMap<String, Option<String>>,
    pub verdicts: Vec<Verdict>,
}

/// The annotations as read, and what the batch does to them.
struct State<'a> {
    names: &'a Names,
    list: SourceList,
    ledger: Result<DenyLedger, String>,
    quarantine: Result<Option<Quarantined>, String>,
    allowlist: Option<String>,
    list_changed: bool,
    ledger_changed: bool,
    quarantine_changed: bool,
}

/// Applies `ops`, in order, to `annotations`.
pub fn edit(annotations: &BTreeMap<String, String>, names: &Names, ops: &[Op]) -> Edit {
    let get = |k: &String| annotations.get(k).map(String::as_str);
    let mut s = State {
        names,
        list: SourceList::parse(get(&names.denylist).unwrap_or("")),
        ledger: DenyLedger::parse(get(&names.deny_ledger)),
        quarantine: Quarantined::parse(get(&names.quarantine_ledger)),
        allowlist: get(&names.allowlist).map(str::to_owned),
        list_changed: false,
        ledger_changed: false,
        quarantine_changed: false,
    };
    let verdicts = ops.iter().map(|op| s.apply(op)).collect();
    let mut changes = BTreeMap::new();
    if s.list_changed {
        changes.insert(names.denylist.clone(), s.list.render());
    }
    if s.ledger_changed
        && let Ok(ledger) = &s.ledger
    {
        changes.insert(names.deny_ledger.clone(), ledger.render());
    }
    if s.quarantine_changed
        && let Ok(q) = &s.quarantine
    {
        changes.insert(names.allowlist.clone(), s.allowlist.clone());
        changes.insert(
            names.quarantine_ledger.clone(),
            q.as_ref().map(Quarantined::render),
        );
    }
    Edit { changes, verdicts }
}

impl State<'_> {
    fn apply(&mut self, op: &Op) -> Verdict {
        match op {
            Op::Deny { net, entry } => self.deny(*net, entry),
            Op::Quarantine(record) => self.quarantine(record),
            Op::Expire(now) => {
                let nets: Vec<IpNet> = match &self.ledger {
                    Ok(l) => l
                        .entries
                        .iter()
                        .filter(|(_, d)| d.until <= *now)
                        .map(|(n, _)| *n)
                        .collect(),
                    Err(_) => Vec::new(),
                };
                let lift = matches!(&self.quarantine, Ok(Some(q)) if q.until <= *now);
                self.remove(&nets, lift)
            }
            Op::Unban(net) => self.remove(&[*net], false),
            Op::Release => self.remove(&[], true),
        }
    }

    fn deny(&mut self, net: IpNet, entry: &Denied) -> Verdict {
        let names = self.names;
        let ledger = match &mut self.ledger {
            Ok(l) => l,
            Err(e) => return unreadable(&names.deny_ledger, e, "it lists the agent's bans"),
        };
        let malformed = self.list.malformed();
        if !malformed.is_empty() {
            return Verdict::Refused {
                why: Refusal::MalformedList,
                detail: format!(
                    "annotation {} holds entries nginx rejects ({}), so nginx already answers 503 on this Ingress; the agent adds nothing until they are fixed",
                    names.denylist,
                    malformed
                        .iter()
                        .map(|m| format!("{m:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
        }
        let ours_in_list = self.list.contains(&net);
        if let Some(held) = ledger.entries.get_mut(&net)
            && ours_in_list
        {
            if entry.until <= held.until {
                return Verdict::AlreadyDenied(format!(
                    "{net} is denied until {}",
                    super::ledger::format_time(held.until)
                ));
            }
            *held = entry.clone();
            self.ledger_changed = true;
            return Verdict::Denied { extended: true };
        }
        if let Some(user) = self.list.covering(&net, |n| ledger.entries.contains_key(n)) {
            return Verdict::AlreadyDenied(format!(
                "{net} is denied by the entry {user:?} of annotation {}",
                names.denylist
            ));
        }
        if self.list.len() >= names.max_entries {
            return Verdict::Refused {
                why: Refusal::Full,
                detail: format!(
                    "annotation {} holds {} entries (response.deny_ip.max_entries {})",
                    names.denylist,
                    self.list.len(),
                    names.max_entries
                ),
            };
        }
        // A ledger entry without its list entry: a user took the address out by hand; a new
        // decision puts it back.
        self.list.insert(net);
        ledger.entries.insert(net, entry.clone());
        self.list_changed = true;
        self.ledger_changed = true;
        Verdict::Denied { extended: false }
    }

    fn quarantine(&mut self, record: &Quarantined) -> Verdict {
        let names = self.names;
        let current = match &mut self.quarantine {
            Ok(q) => q,
            Err(e) => {
                return unreadable(
                    &names.quarantine_ledger,
                    e,
                    "it holds the allowlist to restore",
                );
            }
        };
        let deny_all = Some(names.deny_all.as_str());
        match current {
            Some(held) if self.allowlist.as_deref() == deny_all => {
                if record.until <= held.until {
                    return Verdict::AlreadyQuarantined(format!(
                        "quarantined until {}",
                        super::ledger::format_time(held.until)
                    ));
                }
                held.until = record.until;
                held.reason = record.reason.clone();
                held.node = record.node.clone();
                self.quarantine_changed = true;
                Verdict::Quarantined { extended: true }
            }
            // Recorded, but a user changed the allowlist since: deny all again, keeping the
            // value recorded first.
            Some(held) => {
                held.until = held.until.max(record.until);
                self.allowlist = Some(names.deny_all.clone());
                self.quarantine_changed = true;
                Verdict::Quarantined { extended: false }
            }
            None => {
                *current = Some(Quarantined {
                    previous: self.allowlist.clone(),
                    ..record.clone()
                });
                self.allowlist = Some(names.deny_all.clone());
                self.quarantine_changed = true;
                Verdict::Quarantined { extended: false }
            }
        }
    }

    /// Removes the agent's bans of `nets` and, with `lift`, its quarantine.
    fn remove(&mut self, nets: &[IpNet], lift: bool) -> Verdict {
        let mut released = Vec::new();
        if let Ok(ledger) = &mut self.ledger {
            for net in nets {
                if let Some(denied) = ledger.entries.remove(net) {
                    self.list_changed |= self.list.remove(net);
                    self.ledger_changed = true;
                    released.push((*net, denied));
                }
            }
        }
        let mut lifted = None;
        if lift
            && let Ok(q) = &mut self.quarantine
            && let Some(record) = q.take()
        {
            // Restore only what the agent set: a value the user wrote since stays.
            if self.allowlist.as_deref() == Some(self.names.deny_all.as_str()) {
                self.allowlist = record.previous.clone();
            }
            self.quarantine_changed = true;
            lifted = Some(Lifted {
                record,
                allowlist: self.allowlist.clone(),
            });
        }
        if released.is_empty() && lifted.is_none() {
            Verdict::NothingToRemove
        } else {
            Verdict::Removed { released, lifted }
        }
    }
}

/// The refusal to add to an Ingress whose record of the agent's own cannot be read.
fn unreadable(annotation: &str, error: &str, holds: &str) -> Verdict {
    Verdict::Refused {
        why: Refusal::MalformedLedger,
        detail: format!("annotation {annotation} is {error}; fix or delete it ({holds})"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::response::ResponseConfig;

    fn names() -> Names {
        let mut n = Names::new(&ResponseConfig::default());
        n.max_entries = 4;
        n
    }

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn deny(ip: &str, until: u64) -> Op {
        Op::Deny {
            net: format!("{ip}/32").parse().unwrap(),
            entry: Denied {
                until: at(until),
                offense: 1,
                reason: "r".into(),
                node: "node-a".into(),
            },
        }
    }

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// The annotations after applying `edit` to `before`.
    fn after(before: &BTreeMap<String, String>, edit: &Edit) -> BTreeMap<String, String> {
        let mut out = before.clone();
        for (k, v) in &edit.changes {
            match v {
                Some(v) => out.insert(k.clone(), v.clone()),
                None => out.remove(k),
            };
        }
        out
    }

    const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";
    const LEDGER: &str = "youwatch.dev/denied-sources";
    const ALLOW: &str = "nginx.ingress.kubernetes.io/allowlist-source-range";
    const QUARANTINE: &str = "youwatch.dev/quarantine";

    #[test]
    fn merges_with_the_users_entries_and_removes_only_ours() {
        let n = names();
        let before = annotations(&[(DENY, "198.51.100.0/24, 1.2.3.4")]);
        let e = edit(
            &before,
            &n,
            &[deny("203.0.113.9", 100), deny("192.0.2.5", 200)],
        );
        assert_eq!(e.verdicts, vec![Verdict::Denied { extended: false }; 2]);
        let mid = after(&before, &e);
        assert_eq!(
            mid[DENY],
            "1.2.3.4,192.0.2.5/32,198.51.100.0/24,203.0.113.9/32"
        );

        let e = edit(&mid, &n, &[Op::Expire(at(150))]);
        let Verdict::Removed {
            released,
            lifted: None,
        } = &e.verdicts[0]
        else {
            panic!("{e:?}")
        };
        assert_eq!(released[0].0.to_string(), "203.0.113.9/32");
        let end = after(&mid, &e);
        assert_eq!(end[DENY], "1.2.3.4,192.0.2.5/32,198.51.100.0/24");
        let e = edit(&end, &n, &[Op::Unban("192.0.2.5/32".parse().unwrap())]);
        let end = after(&end, &e);
        assert_eq!(
            end[DENY], "1.2.3.4,198.51.100.0/24",
            "the user's text is kept"
        );
        assert!(!end.contains_key(LEDGER), "an empty ledger is removed");
        // The user's own 1.2.3.4 is not the agent's to remove.
        let e = edit(&end, &n, &[Op::Unban("1.2.3.4/32".parse().unwrap())]);
        assert_eq!(e.verdicts, vec![Verdict::NothingToRemove]);
        assert!(e.changes.is_empty());
    }

    #[test]
    fn a_longer_ban_extends_the_ledger_only_and_a_shorter_changes_nothing() {
        let n = names();
        let start = after(
            &BTreeMap::new(),
            &edit(&BTreeMap::new(), &n, &[deny("203.0.113.9", 100)]),
        );
        let e = edit(
            &start,
            &n,
            &[deny("203.0.113.9", 100), deny("203.0.113.9", 50)],
        );
        assert!(matches!(e.verdicts[0], Verdict::AlreadyDenied(_)));
        assert!(e.changes.is_empty());
        let e = edit(&start, &n, &[deny("203.0.113.9", 400)]);
        assert_eq!(e.verdicts, vec![Verdict::Denied { extended: true }]);
        assert_eq!(
            e.changes.keys().collect::<Vec<_>>(),
            vec![LEDGER],
            "no nginx reload"
        );
        assert!(
            e.changes[LEDGER]
                .as_ref()
                .unwrap()
                .contains("1970-01-01T00:06:40Z")
        );
    }

    #[test]
    fn a_users_range_already_denies() {
        let before = annotations(&[(DENY, "203.0.113.0/24")]);
        let e = edit(&before, &names(), &[deny("203.0.113.9", 100)]);
        assert!(
            matches!(&e.verdicts[0], Verdict::AlreadyDenied(w) if w.contains("203.0.113.0/24"))
        );
        assert!(e.changes.is_empty());
    }

    #[test]
    fn never_makes_a_malformed_list_worse_but_still_expires() {
        let n = names();
        let before = annotations(&[
            (DENY, "1.2.3.4,not-an-ip,203.0.113.9/32"),
            (
                LEDGER,
                r#"{"203.0.113.9/32":{"until":"1970-01-01T00:01:40Z","offense":1,"reason":"r","node":"x"}}"#,
            ),
        ]);
        let e = edit(&before, &n, &[deny("192.0.2.1", 100)]);
        assert!(
            matches!(&e.verdicts[0], Verdict::Refused { why: Refusal::MalformedList, detail } if detail.contains("\"not-an-ip\"") && detail.contains(DENY))
        );
        assert!(e.changes.is_empty());
        let e = edit(&before, &n, &[Op::Expire(at(100))]);
        assert_eq!(after(&before, &e)[DENY], "1.2.3.4,not-an-ip");
        let bad = annotations(&[(LEDGER, "{")]);
        let e = edit(&bad, &n, &[deny("192.0.2.1", 100), Op::Expire(at(1000))]);
        assert!(
            matches!(&e.verdicts[0], Verdict::Refused { why: Refusal::MalformedLedger, detail } if detail.contains(LEDGER))
        );
        assert_eq!(e.verdicts[1], Verdict::NothingToRemove);
        assert!(e.changes.is_empty());
    }

    #[test]
    fn caps_the_list() {
        let n = names();
        let before = annotations(&[(DENY, "1.1.1.1,1.1.1.2")]);
        let ops: Vec<Op> = (1..=4)
            .map(|i| deny(&format!("203.0.113.{i}"), 100))
            .collect();
        let e = edit(&before, &n, &ops);
        assert_eq!(e.verdicts[1], Verdict::Denied { extended: false });
        assert!(matches!(
            &e.verdicts[2],
            Verdict::Refused {
                why: Refusal::Full,
                ..
            }
        ));
        assert_eq!(after(&before, &e)[DENY].split(',').count(), 4);
    }

    #[test]
    fn quarantine_keeps_and_restores_the_users_value_or_its_absence() {
        let n = names();
        let record = |until| {
            Op::Quarantine(Quarantined {
                previous: None,
                until: at(until),
                reason: "r".into(),
                node: "node-a".into(),
            })
        };
        for user in [Some("10.0.0.0/8, 192.168.0.0/16"), None] {
            let before = match user {
                Some(v) => annotations(&[(ALLOW, v), ("other", "x")]),
                None => annotations(&[("other", "x")]),
            };
            let e = edit(&before, &n, &[record(100)]);
            assert_eq!(e.verdicts, vec![Verdict::Quarantined { extended: false }]);
            let mid = after(&before, &e);
            assert_eq!(mid[ALLOW], "192.0.2.1/32");
            let e = edit(&mid, &n, &[record(50)]);
            assert!(matches!(e.verdicts[0], Verdict::AlreadyQuarantined(_)));
            let e = edit(&mid, &n, &[Op::Expire(at(99))]);
            assert_eq!(e.verdicts, vec![Verdict::NothingToRemove]);
            let e = edit(&mid, &n, &[Op::Expire(at(100))]);
            assert_eq!(after(&mid, &e), before, "restored exactly");
        }
        // A value the user wrote during the quarantine is kept.
        let mid = after(
            &BTreeMap::new(),
            &edit(&BTreeMap::new(), &n, &[record(100)]),
        );
        let mut changed = mid.clone();
        changed.insert(ALLOW.into(), "10.9.0.0/16".into());
        let e = edit(&changed, &n, &[Op::Release]);
        let end = after(&changed, &e);
        assert_eq!(end[ALLOW], "10.9.0.0/16");
        assert!(!end.contains_key(QUARANTINE));
    }
}
