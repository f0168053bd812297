//! Who the client is, and whether it may ever be banned.
//!
//! `client_ip` by default; `X-Forwarded-For` only through hops in the trusted-proxy list,
//! walked right to left (each trusted hop vouches for the one before it). Whatever the
//! attacker writes, the result is one validated address or nothing.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;

/// Elements of `X-Forwarded-For` looked at, from the right.
const MAX_HOPS: usize = 32;

/// Why an address is never a ban candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protection {
    Allowlisted,
    TrustedProxy,
    Loopback,
    Unspecified,
    Multicast,
    Broadcast,
}

impl Protection {
    pub fn as_str(self) -> &'static str {
        match self {
            Protection::Allowlisted => "allowlisted",
            Protection::TrustedProxy => "trusted proxy",
            Protection::Loopback => "loopback",
            Protection::Unspecified => "unspecified address",
            Protection::Multicast => "multicast",
            Protection::Broadcast => "broadcast",
        }
    }
}

/// The resolved client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    Candidate(IpAddr),
    Protected(IpAddr, Protection),
    /// No valid address (bad `client_ip`, or a forged/garbled hop in `X-Forwarded-For`).
    Unattributable,
}

#[derive(Clone, Debug, Default)]
pub struct ClientIpPolicy {
    pub trusted_proxies: Vec<IpNet>,
    pub allowlist: Vec<IpNet>,
    /// Loopback addresses may be banned (labs and tests only).
    pub ban_loopback: bool,
}

impl ClientIpPolicy {
    /// The policy of `waf.client_ip`.
    pub fn from_config(cfg: &super::config::ClientIpConfig) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted_proxies: cfg.trusted_proxies.clone(),
            allowlist: cfg.allowlist.clone(),
            ban_loopback: cfg.ban_loopback,
        }
    }

    pub fn resolve<'a>(
        &self,
        client_ip: &[u8],
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> Client {
        self.resolve_parsed(parse_ip(client_ip), forwarded_for)
    }

    /// [`resolve`](Self::resolve) with `client_ip` already through [`parse_ip`].
    pub fn resolve_parsed<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    ) -> Client {
        let Some(peer) = peer else {
            return Client::Unattributable;
        };
        let mut client = peer;
        if self.is_trusted(peer) {
            let hops = forwarded_for
                .rev()
                .flat_map(|h| h.rsplit(|&c| c == b','))
                .take(MAX_HOPS);
            for hop in hops {
                let Some(ip) = parse_ip(hop) else {
                    return Client::Unattributable;
                };
                client = ip;
                if !self.is_trusted(ip) {
                    break;
                }
            }
        }
        match self.protection(client) {
            Some(why) => Client::Protected(client, why),
            None => Client::Candidate(client),
        }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// Why `ip` may never be banned, if so.
    pub fn protection(&self, ip: IpAddr) -> Option<Protection> {
        if self.allowlist.iter().any(|n| n.contains(&ip)) {
            return Some(Protection::Allowlisted);
        }
        if self.is_trusted(ip) {
            return Some(Protection::TrustedProxy);
        }
        if ip.is_unspecified() {
            return Some(Protection::Unspecified);
        }
        if ip.is_multicast() {
            return Some(Protection::Multicast);
        }
        if ip == IpAddr::from([255, 255, 255, 255]) {
            return Some(Protection::Broadcast);
        }
        if ip.is_loopback() && !self.ban_loopback {
            return Some(Protection::Loopback);
        }
        None
    }
}

/// A single address, strictly: digits, hex, dots and colons only (no ports, zones, brackets,
/// escapes), IPv4-mapped IPv6 turned into IPv4.
pub fn parse_ip(raw: &[u8]) -> Option<IpAddr> {
    let raw = raw.trim_ascii();
    if let Some(v4) = parse_ipv4(raw) {
        return Some(IpAddr::V4(v4));
    }
    if raw.is_empty()
        || raw.len() > 45
        || !raw
            .iter()
            .all(|c| c.is_ascii_hexdigit() || *c == b'.' || *c == b':')
    {
        return None;
    }
    let ip: IpAddr = std::str::from_utf8(raw).ok()?.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// A dotted quad, exactly as `Ipv4Addr::from_str` accepts it (four decimal octets, no
/// leading zeros), without the UTF-8 check and generic parser: it runs on every entry and
/// most clients are IPv4. `None` sends the caller to the general parser.
fn parse_ipv4(raw: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = raw.split(|&c| c == b'.');
    for octet in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || (p.len() > 1 && p[0] == b'0') {
            return None;
        }
        let mut n = 0u16;
        for &d in p {
            if !d.is_ascii_digit() {
                return None;
            }
            n = n * 10 + u16::from(d - b'0');
        }
        *octet = u8::try_from(n).ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str], allow: &[&str]) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
            allowlist: allow.iter().map(|s| s.parse().unwrap()).collect(),
            ban_loopback: false,
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_fast_path_agrees_with_std() {
        for s in [
            "0.0.0.0",
            "1.2.3.4",
            "255.255.255.255",
            "256.1.1.1",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            "1.2.3.",
            ".1.2.3",
            "1.2.3.4 ",
            "1.2.3.a",
            "1234.1.1.1",
            "10.0.0.10",
            "",
            "...",
            "1.2.3.-4",
            "+1.2.3.4",
        ] {
            let want = s.parse::<Ipv4Addr>().ok();
            assert_eq!(parse_ipv4(s.as_bytes()), want, "{s:?}");
        }
    }

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(parse_ip(b"::ffff:10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_ip(b" 2001:DB8::1 "), Some(ip("2001:db8::1")));
        for bad in [
            &b"10.0.0.1:80"[..],
            b"[::1]",
            b"fe80::1%eth0",
            b"10.0.0.0/8",
            b"x",
            b"",
            b"1.2.3.4\\u0000",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn xff_only_through_trusted_hops() {
        let p = policy(&["10.0.0.0/8"], &[]);
        let xff = |v: &'static [&'static [u8]]| v.iter().copied();
        // Untrusted peer: XFF ignored.
        assert_eq!(
            p.resolve(b"203.0.113.9", xff(&[b"198.51.100.1"])),
            Client::Candidate(ip("203.0.113.9"))
        );
        // Trusted peer: the first untrusted hop from the right; the left part is forgeable.
        assert_eq!(
            p.resolve(b"10.1.1.1", xff(&[b"6.6.6.6, 198.51.100.7", b"10.2.2.2"])),
            Client::Candidate(ip("198.51.100.7"))
        );
        // Garbage hop: unattributable, never the proxy.
        assert_eq!(
            p.resolve(b"10.1.1.1", xff(&[b"evil, 10.2.2.2"])),
            Client::Unattributable
        );
        // All trusted: the leftmost is still a proxy, protected.
        assert_eq!(
            p.resolve(b"10.1.1.1", xff(&[b"10.3.3.3"])),
            Client::Protected(ip("10.3.3.3"), Protection::TrustedProxy)
        );
    }

    #[test]
    fn protected_addresses() {
        let p = policy(&[], &["192.0.2.0/24", "2001:db8::/32"]);
        let none = || std::iter::empty::<&[u8]>();
        assert_eq!(
            p.resolve(b"192.0.2.5", none()),
            Client::Protected(ip("192.0.2.5"), Protection::Allowlisted)
        );
        assert_eq!(
            p.resolve(b"::ffff:127.0.0.1", none()),
            Client::Protected(ip("127.0.0.1"), Protection::Loopback)
        );
        assert_eq!(
            p.resolve(b"::", none()),
            Client::Protected(ip("::"), Protection::Unspecified)
        );
        assert_eq!(
            p.resolve(b"224.0.0.1", none()),
            Client::Protected(ip("224.0.0.1"), Protection::Multicast)
        );
        assert_eq!(
            p.resolve(b"2001:db8::7", none()),
            Client::Protected(ip("2001:db8::7"), Protection::Allowlisted)
        );
        assert_eq!(p.resolve(b"not-an-ip", none()), Client::Unattributable);
    }
}
