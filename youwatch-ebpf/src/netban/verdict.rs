//! Drop or pass: the longest banned prefix holding the source, if its ban has not lapsed,
//! drops the packet and counts it. Passed SYNs to the sampled ports are counted by source,
//! so user space can tell whether this interface sees clients or a proxy.

use aya_ebpf::{helpers::generated::bpf_ktime_get_boot_ns, maps::lpm_trie::Key};
use youwatch_common::netban::{BanEntry, FAMILY_V4, FAMILY_V6, SourceKey};

use crate::{
    maps::{NETBAN_DROPS, NETBAN_PORTS, NETBAN_SOURCES, NETBAN_V4, NETBAN_V6},
    packet::{Packet, Source},
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Drop,
}

#[inline(always)]
pub fn decide(packet: &Packet, ifindex: u32) -> Verdict {
    let entry = match packet.source {
        Source::V4(addr) => NETBAN_V4.get(Key::new(32, addr)),
        Source::V6(addr) => NETBAN_V6.get(Key::new(128, addr)),
    };
    if let Some(entry) = entry
        && in_force(entry)
    {
        count_drop(entry.slot);
        return Verdict::Drop;
    }
    if packet.syn_port != 0 && sampled(packet.syn_port) {
        sample(&packet.source, ifindex);
    }
    Verdict::Pass
}

#[inline(always)]
fn in_force(entry: &BanEntry) -> bool {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    now < entry.until_boot_ns
}

#[inline(always)]
fn count_drop(slot: u32) {
    if let Some(counter) = NETBAN_DROPS.get_ptr_mut(slot) {
        // SAFETY: this CPU's slot; a program does not run twice at once on one CPU.
        unsafe { *counter += 1 };
    }
}

#[inline(always)]
fn sampled(port: u16) -> bool {
    NETBAN_PORTS
        .get(u32::from(port >> 5))
        .is_some_and(|word| word & (1 << (port & 31)) != 0)
}

#[inline(always)]
fn sample(source: &Source, ifindex: u32) {
    let mut key = SourceKey {
        ifindex,
        family: FAMILY_V4,
        addr: [0; 16],
    };
    match source {
        Source::V4(a) => key.addr[..4].copy_from_slice(a),
        Source::V6(a) => {
            key.family = FAMILY_V6;
            key.addr = *a;
        }
    }
    match NETBAN_SOURCES.get_ptr_mut(key) {
        // SAFETY: this CPU's value of the entry (a per-CPU map).
        Some(count) => unsafe { *count += 1 },
        // A full LRU map evicts its oldest source; a race with another CPU loses one SYN.
        None => {
            let _ = NETBAN_SOURCES.insert(key, 1, 0);
        }
    }
}
