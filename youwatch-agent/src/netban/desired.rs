//! From the ledger to what this node's kernel should hold: every IPBan not expired, parsed,
//! allowed by the [guard](super::guard), one entry per range (the latest expiry when several
//! objects name the same range).

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use ipnet::IpNet;

use super::{crd::IpBan, guard::KernelGuard, kernel::table::normalize};

/// A range to hold, until when, and the object that says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub until: SystemTime,
    pub name: String,
}

/// An IPBan this node does not enforce, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    /// Metric label.
    pub reason: &'static str,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct Desired {
    pub entries: BTreeMap<IpNet, Wanted>,
    pub skipped: Vec<Skipped>,
}

impl Desired {
    /// The earliest expiry among the entries.
    pub fn next_expiry(&self) -> Option<SystemTime> {
        self.entries.values().map(|w| w.until).min()
    }
}

pub fn desired(bans: &[Arc<IpBan>], now: SystemTime, guard: &KernelGuard) -> Desired {
    let mut out = Desired::default();
    for ban in bans {
        let name = ban.name().to_owned();
        let (net, until) = match ban.parsed() {
            Ok(parsed) => parsed,
            Err(why) => {
                out.skipped.push(Skipped {
                    name,
                    reason: "invalid",
                    why,
                });
                continue;
            }
        };
        if until <= now {
            continue;
        }
        let net = normalize(net);
        if let Err(refusal) = guard.check(&net) {
            out.skipped.push(Skipped {
                name,
                reason: refusal.reason(),
                why: refusal.to_string(),
            });
            continue;
        }
        let wanted = out.entries.entry(net).or_insert(Wanted {
            until,
            name: name.clone(),
        });
        if until > wanted.until {
            *wanted = Wanted { until, name };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::netban::crd::{IpBanSpec, spec};

    fn ban(name: &str, address: &str, expires: u64) -> Arc<IpBan> {
        let net = crate::netban::crd::parse_address(address)
            .unwrap_or_else(|_| "0.0.0.0/0".parse().unwrap());
        let mut s: IpBanSpec = spec(
            &net,
            UNIX_EPOCH + Duration::from_secs(expires),
            "r",
            "",
            "n",
            1,
            None,
        );
        s.address = address.into();
        Arc::new(IpBan::new(name.into(), s))
    }

    #[test]
    fn keeps_what_is_in_force_and_allowed() {
        let guard = KernelGuard {
            allowlist: vec!["10.0.0.0/8".parse().unwrap()],
            ..KernelGuard::default()
        };
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let d = desired(
            &[
                ban("a", "203.0.113.9", 2000),
                ban("a-longer", "203.0.113.9/32", 3000),
                ban("expired", "198.51.100.1", 1000),
                ban("range", "198.51.100.7/24", 1500),
                ban("inside", "10.1.2.3", 2000),
                ban("bad", "nope", 2000),
            ],
            now,
            &guard,
        );
        let entries: Vec<(String, u64, &str)> = d
            .entries
            .iter()
            .map(|(n, w)| {
                let secs = w.until.duration_since(UNIX_EPOCH).unwrap().as_secs();
                (n.to_string(), secs, w.name.as_str())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("198.51.100.0/24".to_owned(), 1500, "range"),
                ("203.0.113.9/32".to_owned(), 3000, "a-longer"),
            ]
        );
        let skipped: Vec<(&str, &str)> = d
            .skipped
            .iter()
            .map(|s| (s.name.as_str(), s.reason))
            .collect();
        assert_eq!(skipped, [("inside", "allowlist"), ("bad", "invalid")]);
        assert_eq!(
            d.next_expiry(),
            Some(UNIX_EPOCH + Duration::from_secs(1500))
        );
    }
}
