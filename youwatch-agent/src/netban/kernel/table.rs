//! The deny lists as one table of CIDRs with an expiry each, and the drop counter of each
//! entry. IPv4 and IPv6 entries share the counter slots, so `max_entries` bounds both together.
//!
//! An entry's expiry is written in `CLOCK_BOOTTIME`, the clock the program reads: the kernel
//! lets the source through from that instant even if no agent removes the entry.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aya::maps::{LpmTrie, Map, MapData, PerCpuArray, PerCpuValues, lpm_trie::Key};
use ipnet::IpNet;
use youwatch_common::netban::{BanEntry, names};

use super::{KernelError, chain};
use crate::sensor::ebpf::{BootClock, boottime_ns};

/// Where bans are enforced: the kernel's lists, or a stand-in in tests.
pub trait DenyTable: Send {
    /// Puts `net` in force until `until`, or moves its expiry.
    fn upsert(&mut self, net: IpNet, until: SystemTime) -> Result<(), KernelError>;
    /// Takes `net` out; absent is fine.
    fn remove(&mut self, net: &IpNet) -> Result<(), KernelError>;
    /// What the table holds, with each entry's expiry.
    fn entries(&self) -> BTreeMap<IpNet, SystemTime>;
    /// Packets dropped for `net` while it was in the table (since it last entered it).
    fn drops(&self, net: &IpNet) -> u64;
    /// Entries the table can hold.
    fn capacity(&self) -> usize;
}

/// `net` as the table keys it: host bits cleared, an IPv4-mapped IPv6 range as IPv4.
pub fn normalize(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && v6.prefix_len() >= 96
    {
        return IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96)
            .map(|n| n.trunc())
            .unwrap_or(net);
    }
    net.trunc()
}

/// One entry as held: its slot and expiry.
#[derive(Clone, Copy, Debug)]
struct Held {
    slot: u32,
    until: SystemTime,
}

/// The kernel's lists.
pub struct KernelTable {
    v4: LpmTrie<MapData, [u8; 4], BanEntry>,
    v6: LpmTrie<MapData, [u8; 16], BanEntry>,
    drops: PerCpuArray<MapData, u64>,
    held: BTreeMap<IpNet, Held>,
    free: Vec<u32>,
    capacity: u32,
}

impl KernelTable {
    /// Wraps the maps and reads what they already hold (pinned by a previous run).
    pub(super) fn new(v4: Map, v6: Map, drops: Map) -> Result<KernelTable, KernelError> {
        let v4: LpmTrie<MapData, [u8; 4], BanEntry> =
            LpmTrie::try_from(v4).map_err(|e| map_error(names::V4_MAP, e))?;
        let v6: LpmTrie<MapData, [u8; 16], BanEntry> =
            LpmTrie::try_from(v6).map_err(|e| map_error(names::V6_MAP, e))?;
        let drops = PerCpuArray::try_from(drops).map_err(|e| map_error(names::DROPS_MAP, e))?;
        let capacity = drops.len();
        let clock = BootClock::now();
        let mut held = BTreeMap::new();
        let mut used = vec![false; capacity as usize];
        let found = v4
            .iter()
            .filter_map(Result::ok)
            .map(|(k, e)| (IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8), e))
            .chain(
                v6.iter()
                    .filter_map(Result::ok)
                    .map(|(k, e)| (IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8), e)),
            );
        for (net, entry) in found {
            let (Ok(net), Some(slot_used)) = (net, used.get_mut(entry.slot as usize)) else {
                continue;
            };
            *slot_used = true;
            let until = whole_seconds(clock.to_wall(entry.until_boot_ns));
            held.insert(
                net,
                Held {
                    slot: entry.slot,
                    until,
                },
            );
        }
        let free = (0..capacity).rev().filter(|s| !used[*s as usize]).collect();
        let mut table = KernelTable {
            v4,
            v6,
            drops,
            held,
            free,
            capacity,
        };
        // Entries a previous run left with a slot another entry holds cannot be counted.
        table.drop_unheld()?;
        Ok(table)
    }

    fn drop_unheld(&mut self) -> Result<(), KernelError> {
        let stray: Vec<IpNet> = self
            .keys_in_kernel()
            .into_iter()
            .filter(|n| !self.held.contains_key(n))
            .collect();
        for net in stray {
            self.remove_key(&net)?;
        }
        Ok(())
    }

    fn keys_in_kernel(&self) -> Vec<IpNet> {
        let v4 = self
            .v4
            .keys()
            .filter_map(Result::ok)
            .map(|k| IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8));
        let v6 = self
            .v6
            .keys()
            .filter_map(Result::ok)
            .map(|k| IpNet::new(IpAddr::from(k.data()), k.prefix_len() as u8));
        v4.chain(v6).filter_map(Result::ok).collect()
    }

    fn write(&mut self, net: IpNet, entry: BanEntry) -> Result<(), KernelError> {
        let result = match net {
            IpNet::V4(n) => self.v4.insert(
                &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                entry,
                0,
            ),
            IpNet::V6(n) => self.v6.insert(
                &Key::new(u32::from(n.prefix_len()), n.addr().octets()),
                entry,
                0,
            ),
        };
        result.map_err(|e| KernelError::Map {
            name: list_name(&net),
            message: format!("adding {net}: {}", chain(e)),
        })
    }

    fn remove_key(&mut self, net: &IpNet) -> Result<(), KernelError> {
        let result = match net {
            IpNet::V4(n) => self
                .v4
                .remove(&Key::new(u32::from(n.prefix_len()), n.addr().octets())),
            IpNet::V6(n) => self
                .v6
                .remove(&Key::new(u32::from(n.prefix_len()), n.addr().octets())),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(KernelError::Map {
                name: list_name(net),
                message: format!("removing {net}: {}", chain(e)),
            }),
        }
    }

    fn zero_counter(&mut self, slot: u32) -> Result<(), KernelError> {
        let cpus = aya::util::nr_cpus().map_err(|(_, e)| KernelError::Map {
            name: names::DROPS_MAP,
            message: format!("counting CPUs: {e}"),
        })?;
        let zeros = PerCpuValues::try_from(vec![0u64; cpus]).map_err(|e| KernelError::Map {
            name: names::DROPS_MAP,
            message: e.to_string(),
        })?;
        self.drops
            .set(slot, zeros, 0)
            .map_err(|e| map_error(names::DROPS_MAP, e))
    }
}

impl DenyTable for KernelTable {
    fn upsert(&mut self, net: IpNet, until: SystemTime) -> Result<(), KernelError> {
        let net = normalize(net);
        let slot = match self.held.get(&net) {
            Some(held) => held.slot,
            None => {
                let slot = self.free.pop().ok_or_else(|| KernelError::Map {
                    name: names::DROPS_MAP,
                    message: format!(
                        "adding {net}: the deny list is full ({} entries, node_ban.max_entries)",
                        self.capacity
                    ),
                })?;
                if let Err(e) = self.zero_counter(slot) {
                    self.free.push(slot);
                    return Err(e);
                }
                slot
            }
        };
        let entry = BanEntry {
            until_boot_ns: boot_ns_at(until),
            slot,
            _reserved: 0,
        };
        if let Err(e) = self.write(net, entry) {
            if !self.held.contains_key(&net) {
                self.free.push(slot);
            }
            return Err(e);
        }
        self.held.insert(net, Held { slot, until });
        Ok(())
    }

    fn remove(&mut self, net: &IpNet) -> Result<(), KernelError> {
        let net = normalize(*net);
        self.remove_key(&net)?;
        if let Some(held) = self.held.remove(&net) {
            self.free.push(held.slot);
        }
        Ok(())
    }

    fn entries(&self) -> BTreeMap<IpNet, SystemTime> {
        self.held.iter().map(|(n, h)| (*n, h.until)).collect()
    }

    fn drops(&self, net: &IpNet) -> u64 {
        self.held
            .get(&normalize(*net))
            .and_then(|h| self.drops.get(&h.slot, 0).ok())
            .map_or(0, |per_cpu| per_cpu.iter().sum())
    }

    fn capacity(&self) -> usize {
        self.capacity as usize
    }
}

/// A table without a kernel: what `--dry-run` would enforce, and tests of the ledger side.
#[derive(Debug)]
pub struct MemoryTable {
    entries: BTreeMap<IpNet, SystemTime>,
    capacity: usize,
}

impl MemoryTable {
    pub fn new(capacity: usize) -> MemoryTable {
        MemoryTable {
            entries: BTreeMap::new(),
            capacity,
        }
    }
}

impl DenyTable for MemoryTable {
    fn upsert(&mut self, net: IpNet, until: SystemTime) -> Result<(), KernelError> {
        let net = normalize(net);
        if !self.entries.contains_key(&net) && self.entries.len() >= self.capacity {
            return Err(KernelError::Map {
                name: list_name(&net),
                message: format!(
                    "adding {net}: the deny list is full ({} entries)",
                    self.capacity
                ),
            });
        }
        self.entries.insert(net, until);
        Ok(())
    }

    fn remove(&mut self, net: &IpNet) -> Result<(), KernelError> {
        self.entries.remove(&normalize(*net));
        Ok(())
    }

    fn entries(&self) -> BTreeMap<IpNet, SystemTime> {
        self.entries.clone()
    }

    fn drops(&self, _: &IpNet) -> u64 {
        0
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// `CLOCK_BOOTTIME` at wall-clock `until` (0 if it has passed: not in force).
fn boot_ns_at(until: SystemTime) -> u64 {
    match until.duration_since(SystemTime::now()) {
        Ok(left) => {
            boottime_ns().saturating_add(u64::try_from(left.as_nanos()).unwrap_or(u64::MAX))
        }
        Err(_) => 0,
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_secs(since.as_secs() + u64::from(since.subsec_millis() >= 500))
}

fn list_name(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => names::V4_MAP,
        IpNet::V6(_) => names::V6_MAP,
    }
}

fn not_found(e: &aya::maps::MapError) -> bool {
    match e {
        aya::maps::MapError::KeyNotFound => true,
        aya::maps::MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

fn map_error(name: &'static str, e: aya::maps::MapError) -> KernelError {
    KernelError::Map {
        name,
        message: chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_normalised() {
        let n = |s: &str| normalize(s.parse().unwrap()).to_string();
        assert_eq!(n("198.51.100.7/24"), "198.51.100.0/24");
        assert_eq!(n("::ffff:203.0.113.9/128"), "203.0.113.9/32");
        assert_eq!(n("::ffff:198.51.100.0/120"), "198.51.100.0/24");
        assert_eq!(n("2001:db8::1/64"), "2001:db8::/64");
    }
}
