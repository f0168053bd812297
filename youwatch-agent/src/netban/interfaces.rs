//! What the node ban reads about the network namespace it works in: the interfaces that
//! carry the default routes (where external clients' traffic arrives on a node: the node's
//! NIC, its bond or VLAN), and the node's own addresses. Call these on the namespace's thread
//! ([`super::netns`]): `/proc/thread-self/net` and netlink answer for the calling thread.

use std::{collections::BTreeSet, io, net::IpAddr};

/// The interfaces of the default IPv4 and IPv6 routes, sorted, without duplicates.
pub fn default_route_interfaces() -> io::Result<Vec<String>> {
    let mut out = BTreeSet::new();
    let v4 = std::fs::read_to_string("/proc/thread-self/net/route")?;
    out.extend(default_v4(&v4));
    // No IPv6 (disabled by the kernel command line): no file.
    if let Ok(v6) = std::fs::read_to_string("/proc/thread-self/net/ipv6_route") {
        out.extend(default_v6(&v6));
    }
    Ok(out.into_iter().collect())
}

/// `/proc/net/route`: `Iface Destination Gateway Flags ... Mask ...`, hex, one route a line;
/// the default route has destination and mask 0.
fn default_v4(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let up = f.get(3).and_then(|x| u32::from_str_radix(x, 16).ok())? & 1 != 0;
            (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" && up).then(|| f[0].to_owned())
        })
        .collect()
}

/// `/proc/net/ipv6_route`: `dest dest_len src src_len next_hop metric refcnt use flags iface`;
/// the default route is `::/0` through a gateway (not the unreachable route on `lo`).
fn default_v6(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let default =
                f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo";
            default.then(|| f[9].to_owned())
        })
        .collect()
}

/// Every address of every interface of the namespace (the node's own, when it is the host's).
pub fn own_addresses() -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: a node of the list getifaddrs returned.
        let entry = unsafe { &*cursor };
        if let Some(addr) = unsafe { socket_address(entry.ifa_addr) } {
            out.push(addr);
        }
        cursor = entry.ifa_next;
    }
    // SAFETY: the list from getifaddrs, not used after this.
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    Ok(out)
}

/// The IP address in a `sockaddr`, if it is one.
///
/// # Safety
/// `sa` is null or points to a sockaddr of the size its family implies.
unsafe fn socket_address(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract; the family says which struct it is.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let v4 = &*(sa as *const libc::sockaddr_in);
                Some(IpAddr::from(u32::from_be(v4.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => {
                let v6 = &*(sa as *const libc::sockaddr_in6);
                Some(IpAddr::from(v6.sin6_addr.s6_addr))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_routes_from_proc() {
        let v4 = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                  eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                  eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
                  cni0\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(default_v4(v4), ["eth0"]);
        let v6 = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 bond0\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 bond0\n\
                  00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n";
        assert_eq!(default_v6(v6), ["bond0"]);
    }

    #[test]
    fn own_addresses_include_loopback() {
        let own = own_addresses().unwrap();
        assert!(own.contains(&"127.0.0.1".parse().unwrap()), "{own:?}");
    }
}
