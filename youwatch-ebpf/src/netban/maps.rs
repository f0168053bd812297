//! The deny lists, their drop counters and the source sample (names in
//! `youwatch_common::netban::names`). User space sizes the lists and counters before load.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, LruPerCpuHashMap, PerCpuArray},
};
use youwatch_common::netban::{BanEntry, SourceKey, limits};

/// Banned IPv4 CIDRs: longest prefix wins.
#[map]
pub static NETBAN_V4: LpmTrie<[u8; 4], BanEntry> =
    LpmTrie::with_max_entries(limits::DEFAULT_MAX_BANS, 0);

/// Banned IPv6 CIDRs.
#[map]
pub static NETBAN_V6: LpmTrie<[u8; 16], BanEntry> =
    LpmTrie::with_max_entries(limits::DEFAULT_MAX_BANS, 0);

/// Packets dropped per entry and CPU, indexed by `BanEntry::slot`.
#[map]
pub static NETBAN_DROPS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(limits::DEFAULT_MAX_BANS, 0);

/// TCP SYNs to the sampled ports by interface and source (per CPU): who the clients look like.
#[map]
pub static NETBAN_SOURCES: LruPerCpuHashMap<SourceKey, u64> =
    LruPerCpuHashMap::with_max_entries(limits::MAX_SOURCES, 0);

/// Bitmap of the sampled destination ports; all zero: nothing is sampled.
#[map]
pub static NETBAN_PORTS: Array<u32> = Array::with_max_entries(limits::PORT_WORDS, 0);
