//! The connection-source sample: which ports are sampled (a bitmap the program reads), and
//! the TCP SYN counts by interface and source it collected, read and cleared by user space.

use std::{collections::BTreeMap, net::IpAddr};

use aya::maps::{Array, Map, MapData, PerCpuHashMap};
use youwatch_common::netban::{FAMILY_V4, FAMILY_V6, SourceKey, limits, names};

use super::{KernelError, chain};

/// Connection opens by source address, for one interface.
pub type Sources = BTreeMap<IpAddr, u64>;

pub struct Sampler {
    sources: PerCpuHashMap<MapData, SourceKey, u64>,
    ports: Array<MapData, u32>,
}

impl Sampler {
    pub(super) fn new(sources: Map, ports: Map) -> Result<Sampler, KernelError> {
        let map_error = |name, e| KernelError::Map {
            name,
            message: chain(e),
        };
        Ok(Sampler {
            sources: PerCpuHashMap::try_from(sources)
                .map_err(|e| map_error(names::SOURCES_MAP, e))?,
            ports: Array::try_from(ports).map_err(|e| map_error(names::PORTS_MAP, e))?,
        })
    }

    /// Samples connection opens to exactly `ports`.
    pub fn set_ports(&mut self, ports: &[u16]) -> Result<(), KernelError> {
        let mut words = vec![0u32; limits::PORT_WORDS as usize];
        for port in ports {
            words[usize::from(port >> 5)] |= 1 << (port & 31);
        }
        for (index, word) in words.into_iter().enumerate() {
            self.ports
                .set(index as u32, word, 0)
                .map_err(|e| KernelError::Map {
                    name: names::PORTS_MAP,
                    message: chain(e),
                })?;
        }
        Ok(())
    }

    /// The sample since the last call, by interface index; the sample starts over.
    pub fn take(&mut self) -> BTreeMap<u32, Sources> {
        let keys: Vec<SourceKey> = self.sources.keys().filter_map(Result::ok).collect();
        let mut out: BTreeMap<u32, Sources> = BTreeMap::new();
        for key in keys {
            let Ok(per_cpu) = self.sources.get(&key, 0) else {
                continue;
            };
            // Removed right after reading: a SYN counted in between is lost, which a sample
            // can afford.
            let _ = self.sources.remove(&key);
            let Some(addr) = address(&key) else { continue };
            *out.entry(key.ifindex).or_default().entry(addr).or_default() +=
                per_cpu.iter().sum::<u64>();
        }
        out
    }
}

fn address(key: &SourceKey) -> Option<IpAddr> {
    match key.family {
        FAMILY_V4 => {
            let [a, b, c, d, ..] = key.addr;
            Some(IpAddr::from([a, b, c, d]))
        }
        FAMILY_V6 => Some(IpAddr::from(key.addr)),
        _ => None,
    }
}
