//! Ethernet (one optional 802.1Q/802.1ad tag) → IPv4/IPv6 source address, and whether the
//! packet opens a TCP connection (SYN without ACK) to which port. Bounds are checked against
//! `data_end` before every read, as the verifier requires.

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
/// TCP header bytes read: ports (0..4) and flags (13).
const TCP_READ: usize = 14;
const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

/// Where the packet comes from.
#[derive(Clone, Copy)]
pub enum Source {
    V4([u8; 4]),
    V6([u8; 16]),
}

/// What the verdict needs from a packet.
#[derive(Clone, Copy)]
pub struct Packet {
    pub source: Source,
    /// Destination port of a TCP SYN (no ACK); 0 for anything else.
    pub syn_port: u16,
}

pub enum Parsed {
    Ip(Packet),
    /// Not IPv4 or IPv6 (ARP, LLDP...): never dropped.
    Other,
    /// The headers needed are past `data_end` (a non-linear skb): pull and parse again.
    Short,
}

/// Bytes a classifier pulls into the linear area when [`Parsed::Short`]: Ethernet, a VLAN
/// tag, the longest IPv4 header and the TCP bytes read.
pub const PULL_LEN: u32 = (ETH_HLEN + VLAN_HLEN + 60 + TCP_READ) as u32;

/// Reads a `T` at `at`, which the caller checked lies inside the packet.
///
/// The verifier tracks bounds per pointer: each header is checked once through its own
/// pointer (`h + LEN > end`), then read at constant offsets from that same pointer.
#[inline(always)]
fn read<T: Copy>(at: usize) -> T {
    // SAFETY: in bounds of the packet, checked by the caller; packet data may be unaligned.
    unsafe { core::ptr::read_unaligned(at as *const T) }
}

#[inline(always)]
pub fn parse(data: usize, end: usize) -> Parsed {
    if data + ETH_HLEN > end {
        return Parsed::Short;
    }
    let mut proto = u16::from_be(read::<u16>(data + 12));
    let mut ip = data + ETH_HLEN;
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        if data + ETH_HLEN + VLAN_HLEN > end {
            return Parsed::Short;
        }
        proto = u16::from_be(read::<u16>(data + 16));
        ip = data + ETH_HLEN + VLAN_HLEN;
    }
    match proto {
        ETH_P_IP => ipv4(ip, end),
        ETH_P_IPV6 => ipv6(ip, end),
        _ => Parsed::Other,
    }
}

#[inline(always)]
fn ipv4(ip: usize, end: usize) -> Parsed {
    if ip + IPV4_MIN_HLEN > end {
        return Parsed::Short;
    }
    let src = read::<[u8; 4]>(ip + 12);
    let version_ihl = read::<u8>(ip);
    let protocol = read::<u8>(ip + 9);
    // Fragment offset 0: only the first fragment carries the TCP header.
    let fragment = u16::from_be(read::<u16>(ip + 6)) & 0x1fff;
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    let mut syn_port = 0;
    if protocol == IPPROTO_TCP && fragment == 0 && ihl >= IPV4_MIN_HLEN {
        syn_port = tcp_syn_port(ip + ihl, end);
    }
    Parsed::Ip(Packet {
        source: Source::V4(src),
        syn_port,
    })
}

#[inline(always)]
fn ipv6(ip: usize, end: usize) -> Parsed {
    if ip + IPV6_HLEN > end {
        return Parsed::Short;
    }
    let src = read::<[u8; 16]>(ip + 8);
    // Extension headers before TCP are rare on connection opens; such SYNs go unsampled.
    let next = read::<u8>(ip + 6);
    let syn_port = if next == IPPROTO_TCP {
        tcp_syn_port(ip + IPV6_HLEN, end)
    } else {
        0
    };
    Parsed::Ip(Packet {
        source: Source::V6(src),
        syn_port,
    })
}

/// The destination port if the TCP header at `tcp` is a SYN without ACK, else 0.
#[inline(always)]
fn tcp_syn_port(tcp: usize, end: usize) -> u16 {
    if tcp + TCP_READ > end {
        return 0;
    }
    let flags = read::<u8>(tcp + 13);
    if flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
        return 0;
    }
    u16::from_be(read::<u16>(tcp + 2))
}
