//! A source-range annotation value (`denylist-source-range`, `allowlist-source-range`) as
//! ingress-nginx reads it: entries separated by commas, each trimmed, each an IP address or
//! a CIDR (Go's `net.ParseIP` / `net.ParseCIDR`: no leading zeros, no zones, host bits
//! allowed). One entry nginx cannot parse makes the location answer 503 to everyone, so
//! the agent validates every entry before writing and never adds to a list that already
//! holds a bad one.
//!
//! Entries keep the text the user wrote; the agent's own are written `a.b.c.d/32` or
//! `x::y/128`. A rendered list is sorted (addresses, then ranges of the same start, v4
//! before v6; unparseable entries last, as written).

use std::{cmp::Ordering, net::IpAddr};

use ipnet::IpNet;

/// One entry as written, and what it means (`None`: nginx rejects it).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    text: String,
    net: Option<IpNet>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceList {
    entries: Vec<Entry>,
}

impl SourceList {
    /// Parses an annotation value; an empty (or blank) value is an empty list.
    pub fn parse(value: &str) -> SourceList {
        if value.trim().is_empty() {
            return SourceList::default();
        }
        let entries = value
            .split(',')
            .map(|text| {
                let text = text.trim();
                Entry {
                    text: text.to_owned(),
                    net: parse_entry(text),
                }
            })
            .collect();
        SourceList { entries }
    }

    /// The entries nginx would reject, as written.
    pub fn malformed(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|e| e.net.is_none())
            .map(|e| e.text.as_str())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `net` is an entry (the same network, however written).
    pub fn contains(&self, net: &IpNet) -> bool {
        self.entries.iter().any(|e| e.net.as_ref() == Some(net))
    }

    /// The first entry, other than those `skip` says, whose range holds `net`'s address.
    pub fn covering(&self, net: &IpNet, skip: impl Fn(&IpNet) -> bool) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.net.is_some_and(|n| !skip(&n) && n.contains(&net.addr())))
            .map(|e| e.text.as_str())
    }

    /// Adds `net` (written in its normal form).
    pub fn insert(&mut self, net: IpNet) {
        self.entries.push(Entry {
            text: net.to_string(),
            net: Some(net),
        });
    }

    /// Removes every entry equal to `net`; whether there was one.
    pub fn remove(&mut self, net: &IpNet) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.net.as_ref() != Some(net));
        self.entries.len() != before
    }

    /// The annotation value, sorted; `None` when empty (the annotation is removed).
    pub fn render(&self) -> Option<String> {
        if self.entries.is_empty() {
            return None;
        }
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|a, b| match (&a.net, &b.net) {
            (Some(x), Some(y)) => order(x, y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        });
        let texts: Vec<&str> = entries.iter().map(|e| e.text.as_str()).collect();
        Some(texts.join(","))
    }
}

/// IPv4 before IPv6, by network address, then narrower first.
fn order(a: &IpNet, b: &IpNet) -> Ordering {
    let family = |n: &IpNet| matches!(n, IpNet::V6(_));
    family(a)
        .cmp(&family(b))
        .then_with(|| a.network().cmp(&b.network()))
        .then_with(|| b.prefix_len().cmp(&a.prefix_len()))
}

/// One entry as nginx reads it: an address, or an address with a prefix length (host bits
/// may be set).
pub fn parse_entry(text: &str) -> Option<IpNet> {
    match text.split_once('/') {
        None => text.parse::<IpAddr>().ok().map(IpNet::from),
        Some((addr, prefix)) => {
            let addr: IpAddr = addr.parse().ok()?;
            if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            IpNet::new(addr, prefix.parse().ok()?).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_nginx_does() {
        for ok in [
            "1.2.3.4",
            "10.0.0.1/8",
            "2001:db8::/32",
            "::ffff:1.2.3.4",
            "0.0.0.0/0",
        ] {
            assert!(parse_entry(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4/33",
            "::1/129",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "fe80::1%eth0",
            "host.example",
            "1.2.3.4/+8",
        ] {
            assert!(parse_entry(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn keeps_user_text_sorts_and_finds_malformed() {
        let mut l = SourceList::parse(" 198.51.100.0/24 , 2001:db8::1,1.2.3.4 ");
        assert!(l.malformed().is_empty());
        l.insert("192.0.2.7/32".parse().unwrap());
        assert_eq!(
            l.render().unwrap(),
            "1.2.3.4,192.0.2.7/32,198.51.100.0/24,2001:db8::1"
        );
        assert!(l.contains(&"1.2.3.4/32".parse().unwrap()));
        assert_eq!(
            l.covering(&"198.51.100.9/32".parse().unwrap(), |_| false),
            Some("198.51.100.0/24")
        );
        assert!(l.remove(&"192.0.2.7/32".parse().unwrap()));
        assert_eq!(l.len(), 3);

        let bad = SourceList::parse("1.2.3.4,,nope");
        assert_eq!(bad.malformed(), vec!["", "nope"]);
        assert_eq!(bad.render().unwrap(), "1.2.3.4,,nope");
        assert_eq!(SourceList::parse("  ").render(), None);
    }
}
