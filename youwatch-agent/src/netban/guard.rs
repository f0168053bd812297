//! Which ranges may enter this node's kernel: never one that overlaps the node's own
//! addresses, `response.allowlist` (node, pod and service CIDRs), `node_ban.proxies` (the load
//! balancers in front: banning one would cut off every client behind it) or reserved ranges,
//! and never one wider than /16 (IPv4) or /48 (IPv6). Checked on every node for every IPBan,
//! whoever wrote it: another node's agent, with another config, or a user.

use std::net::IpAddr;

use ipnet::IpNet;

use super::config::{MIN_PREFIX_V4, MIN_PREFIX_V6};

/// Why a range stays out of the kernel (also the metric label).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{net} overlaps this node's own address {address}")]
    Own { net: IpNet, address: IpAddr },
    #[error("{net} overlaps response.allowlist entry {entry}")]
    Allowlisted { net: IpNet, entry: IpNet },
    #[error(
        "{net} overlaps node_ban.proxies entry {entry}: a load balancer or proxy in front of the nodes"
    )]
    Proxy { net: IpNet, entry: IpNet },
    #[error("{net} overlaps {what} ({range}); such addresses are never banned")]
    Reserved {
        net: IpNet,
        what: &'static str,
        range: IpNet,
    },
    #[error("{net} is wider than /{MIN_PREFIX_V4} (IPv4) or /{MIN_PREFIX_V6} (IPv6)")]
    TooWide { net: IpNet },
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Own { .. } => "own_address",
            Refusal::Allowlisted { .. } => "allowlist",
            Refusal::Proxy { .. } => "proxy",
            Refusal::Reserved { .. } => "reserved",
            Refusal::TooWide { .. } => "too_wide",
        }
    }
}

/// Ranges never banned, whatever the ledger says.
const RESERVED: &[(&str, &str)] = &[
    ("0.0.0.0/8", "this network"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
];

/// The checks, from config and the node's addresses.
#[derive(Clone, Debug, Default)]
pub struct KernelGuard {
    pub own: Vec<IpAddr>,
    pub allowlist: Vec<IpNet>,
    pub proxies: Vec<IpNet>,
}

impl KernelGuard {
    pub fn check(&self, net: &IpNet) -> Result<(), Refusal> {
        let net = *net;
        if let Some(address) = self.own.iter().find(|a| net.contains(*a)) {
            return Err(Refusal::Own {
                net,
                address: *address,
            });
        }
        if let Some(entry) = self.allowlist.iter().find(|e| overlap(e, &net)) {
            return Err(Refusal::Allowlisted { net, entry: *entry });
        }
        if let Some(entry) = self.proxies.iter().find(|e| overlap(e, &net)) {
            return Err(Refusal::Proxy { net, entry: *entry });
        }
        for (range, what) in RESERVED {
            let range: IpNet = range.parse().expect("a valid reserved range");
            if overlap(&range, &net) {
                return Err(Refusal::Reserved { net, what, range });
            }
        }
        let min = match net {
            IpNet::V4(_) => MIN_PREFIX_V4,
            IpNet::V6(_) => MIN_PREFIX_V6,
        };
        if net.prefix_len() < min {
            return Err(Refusal::TooWide { net });
        }
        Ok(())
    }
}

/// Whether two ranges share an address (CIDRs either nest or are disjoint).
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The node at 192.168.1.10, the cluster network 10.0.0.0/8 allowed, proxies in 203.0.113.0/28.
    pub(crate) fn guard() -> KernelGuard {
        KernelGuard {
            own: vec!["192.168.1.10".parse().unwrap()],
            allowlist: vec!["10.0.0.0/8".parse().unwrap()],
            proxies: vec!["203.0.113.0/28".parse().unwrap()],
        }
    }

    #[test]
    fn refuses_what_would_cut_off_the_cluster() {
        let g = guard();
        for (net, reason) in [
            ("192.168.1.0/24", "own_address"),
            ("10.1.2.3/32", "allowlist"),
            ("10.0.0.0/7", "allowlist"),
            ("203.0.113.5/32", "proxy"),
            ("203.0.113.0/24", "proxy"),
            ("127.0.0.2/32", "reserved"),
            ("fe80::1/128", "reserved"),
            ("100.64.0.0/10", "too_wide"),
            ("2001:db8::/32", "too_wide"),
        ] {
            let err = g.check(&net.parse().unwrap()).unwrap_err();
            assert_eq!(err.reason(), reason, "{net}: {err}");
        }
        for ok in [
            "198.51.100.0/24",
            "198.51.100.7/32",
            "2001:db8::/64",
            "203.0.113.16/28",
        ] {
            g.check(&ok.parse().unwrap()).unwrap();
        }
    }
}
