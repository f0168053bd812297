//! Which client addresses may be written into a denylist: a single address (normalised to
//! /32 or /128), never one of `response.allowlist`, never loopback (unless
//! `deny_ip.allow_loopback`, for labs), unspecified, link-local, multicast or broadcast —
//! denying those would cut off the cluster's own traffic or mean nothing.

use std::net::IpAddr;

use ipnet::IpNet;

/// Why an address is never denied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unsafe {
    #[error("{ip} is in response.allowlist ({entry})")]
    Allowlisted { ip: IpAddr, entry: IpNet },
    #[error("{ip} is {what}; such addresses are never denied")]
    Reserved { ip: IpAddr, what: &'static str },
}

impl Unsafe {
    /// Metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Unsafe::Allowlisted { .. } => "allowlist",
            Unsafe::Reserved { .. } => "reserved",
        }
    }
}

/// The checks, from config.
#[derive(Clone, Debug)]
pub struct AddressGuard {
    allowlist: Vec<IpNet>,
    allow_loopback: bool,
}

impl AddressGuard {
    pub fn new(allowlist: &[IpNet], allow_loopback: bool) -> AddressGuard {
        AddressGuard {
            allowlist: allowlist.to_vec(),
            allow_loopback,
        }
    }

    /// The entry to write for `ip` (an IPv4-mapped IPv6 address as IPv4: nginx sees it so),
    /// or why it must not be written.
    pub fn check(&self, ip: IpAddr) -> Result<IpNet, Unsafe> {
        let ip = ip.to_canonical();
        if let Some(entry) = self.allowlist.iter().find(|n| n.contains(&ip)) {
            return Err(Unsafe::Allowlisted { ip, entry: *entry });
        }
        let reserved = |what| Err(Unsafe::Reserved { ip, what });
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() && !self.allow_loopback => reserved("loopback"),
            IpAddr::V6(v6) if v6.is_loopback() && !self.allow_loopback => reserved("loopback"),
            ip if ip.is_unspecified() => reserved("unspecified"),
            ip if ip.is_multicast() => reserved("multicast"),
            IpAddr::V4(v4) if v4.is_broadcast() => reserved("broadcast"),
            IpAddr::V4(v4) if v4.is_link_local() => reserved("link-local"),
            IpAddr::V6(v6) if v6.is_unicast_link_local() => reserved("link-local"),
            ip => Ok(single(ip)),
        }
    }
}

/// `ip` as a one-address network: /32 or /128.
pub fn single(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// An address as a user types it (`unban 203.0.113.9`, or with /32 or /128), as the
/// one-address network the ledger keys by.
pub fn parse_single(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(single(ip.to_canonical()));
    }
    match text.parse::<IpNet>() {
        Ok(net) if net.prefix_len() == net.max_prefix_len() => {
            Ok(single(net.addr().to_canonical()))
        }
        Ok(net) => Err(format!(
            "{text:?} is a range ({net}); the agent only denies single addresses"
        )),
        Err(_) => Err(format!(
            "{text:?} is not an IP address (e.g. 203.0.113.9 or 2001:db8::1)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> AddressGuard {
        AddressGuard::new(&["10.0.0.0/8".parse().unwrap()], false)
    }

    #[test]
    fn normalises_to_one_address() {
        let g = guard();
        assert_eq!(
            g.check("203.0.113.9".parse().unwrap()).unwrap().to_string(),
            "203.0.113.9/32"
        );
        assert_eq!(
            g.check("2001:db8::1".parse().unwrap()).unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert_eq!(
            g.check("::ffff:203.0.113.9".parse().unwrap())
                .unwrap()
                .to_string(),
            "203.0.113.9/32"
        );
    }

    #[test]
    fn never_the_allowlist_or_reserved_addresses() {
        let g = guard();
        for (ip, reason) in [
            ("10.1.2.3", "allowlist"),
            ("::ffff:10.1.2.3", "allowlist"),
            ("127.0.0.1", "reserved"),
            ("::1", "reserved"),
            ("0.0.0.0", "reserved"),
            ("::", "reserved"),
            ("169.254.169.254", "reserved"),
            ("fe80::1", "reserved"),
            ("224.0.0.1", "reserved"),
            ("ff02::1", "reserved"),
            ("255.255.255.255", "reserved"),
        ] {
            let err = g.check(ip.parse().unwrap()).unwrap_err();
            assert_eq!(err.reason(), reason, "{ip}: {err}");
        }
        let lab = AddressGuard::new(&[], true);
        assert!(lab.check("127.0.0.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn user_input() {
        assert_eq!(
            parse_single(" 203.0.113.9 ").unwrap().to_string(),
            "203.0.113.9/32"
        );
        assert_eq!(
            parse_single("2001:db8::1/128").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(
            parse_single("203.0.113.0/24")
                .unwrap_err()
                .contains("range")
        );
        assert!(parse_single("nope").unwrap_err().contains("\"nope\""));
    }
}
