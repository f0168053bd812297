//! The node ban: a deny list of source CIDRs checked on a node's ingress path (TC or XDP).
//! Shared by the kernel programs (`youwatch-ebpf/src/netban/`, their own object) and user
//! space (`youwatch-agent/src/netban/`).

/// Names of the maps and programs in the `youwatch-netban` object.
pub mod names {
    /// `LpmTrie<[u8; 4], BanEntry>`: banned IPv4 CIDRs (address in network byte order).
    pub const V4_MAP: &str = "NETBAN_V4";
    /// `LpmTrie<[u8; 16], BanEntry>`: banned IPv6 CIDRs.
    pub const V6_MAP: &str = "NETBAN_V6";
    /// `PerCpuArray<u64>`: packets dropped, indexed by [`crate::netban::BanEntry::slot`].
    pub const DROPS_MAP: &str = "NETBAN_DROPS";
    /// `LruPerCpuHashMap<SourceKey, u64>`: TCP SYNs to the sampled ports, by interface and source.
    pub const SOURCES_MAP: &str = "NETBAN_SOURCES";
    /// `Array<u32>` of [`super::limits::PORT_WORDS`] words: a bitmap of the sampled
    /// destination ports (bit `port % 32` of word `port / 32`).
    pub const PORTS_MAP: &str = "NETBAN_PORTS";
    /// The TC classifier (TCX or clsact, ingress).
    pub const TC_PROGRAM: &str = "netban_tc";
    /// The XDP program.
    pub const XDP_PROGRAM: &str = "netban_xdp";
}

/// Sizes.
pub mod limits {
    /// Default capacity of each deny list (IPv4, IPv6) and of the drop counters. The counters
    /// are per CPU: 8 bytes × entries × possible CPUs (128 KiB per CPU at this default).
    pub const DEFAULT_MAX_BANS: u32 = 16_384;
    /// Sources sampled at most (LRU: the oldest make room).
    pub const MAX_SOURCES: u32 = 4_096;
    /// Words of the sampled-ports bitmap (65,536 bits).
    pub const PORT_WORDS: u32 = 2_048;
}

/// Value of a deny-list entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanEntry {
    /// `CLOCK_BOOTTIME` (ns) at which the ban lapses: the kernel lets the source through from
    /// then on, even if no agent is left to remove the entry.
    pub until_boot_ns: u64,
    /// This entry's drop counter in `NETBAN_DROPS`.
    pub slot: u32,
    pub _reserved: u32,
}

/// [`SourceKey::family`] values.
pub const FAMILY_V4: u32 = 4;
pub const FAMILY_V6: u32 = 6;

/// A sampled connection source: which interface it reached, from which address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceKey {
    pub ifindex: u32,
    /// [`FAMILY_V4`] (address in the first 4 bytes) or [`FAMILY_V6`].
    pub family: u32,
    pub addr: [u8; 16],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: #[repr(C)] plain integers and byte arrays; any bit pattern is valid.
    unsafe impl aya::Pod for super::BanEntry {}
    unsafe impl aya::Pod for super::SourceKey {}
}
