//! A map with a hard cap: inserting into a full map evicts an entry not used recently.
//! Per-IP state is keyed by attacker-chosen data, so its memory must not depend on them.
//!
//! CLOCK (second chance), the classic approximation of LRU: each entry has a "used" bit set
//! on access; eviction sweeps over the entries, clearing bits, and takes the first entry
//! whose bit was already clear. Each sweep starts at a random slot rather than where the last
//! one stopped: a hand moving round the table evicts just behind itself while inserts land
//! everywhere, so the slots just ahead of it fill up and linear probing there degrades (at
//! 3/4 load, 100,000 inserts into a full table of 100,000 took 5 s instead of 0.06 s);
//! random starts keep the load even.
//!
//! The table is open addressing with linear probing, and key, value and used bit share one
//! cache-line-aligned slot: a lookup is one cache line (a `HashMap` reads a control group
//! and then a bucket, two misses on a table larger than the cache), and [`ClockMap::prefetch`]
//! can start loading that line early. Placement uses a randomly seeded hash, so attackers
//! cannot aim keys at one probe run, and foldhash's `quality` variant: with `fast`, runs of
//! consecutive keys (an IPv6 /64 is free to walk) clustered badly under about one process
//! seed in fifty (a mean of 70 to 1,200 probes per insert instead of 13, 1,500 processes).
//!
//! Memory: the table is sized to the cap exactly (no power-of-two rounding; a hash is mapped
//! onto any length by multiplication), so at the cap it holds one 64-byte slot per entry at
//! most 3/4 full: about 86 bytes per entry. It grows by doubling while smaller, the last
//! step straight to its final size, so growing costs at most about half as much again for a
//! moment.

use std::hash::{BuildHasher, Hash};

/// The table grows past this load (3/4): linear probing stays short below it.
fn max_load(slots: usize) -> usize {
    slots - slots / 4
}

/// Slots needed to hold `n` entries within [`max_load`], with one always empty (probe runs
/// end).
fn slots_for(n: usize) -> usize {
    (n + n.div_ceil(3) + 1).max(4)
}

/// One entry, alone on its cache line (the per-IP state fits in 64 bytes).
#[repr(align(64))]
struct Slot<K, V> {
    key: K,
    value: V,
    used: bool,
}

pub struct ClockMap<K, V> {
    /// Never full.
    slots: Vec<Option<Slot<K, V>>>,
    len: usize,
    cap: usize,
    /// xorshift state choosing where eviction sweeps start.
    rng: u64,
    hasher: foldhash::quality::RandomState,
}

impl<K: Hash + Eq + Copy, V> ClockMap<K, V> {
    /// `cap` ≥ 1 entries.
    pub fn new(cap: usize) -> ClockMap<K, V> {
        let cap = cap.max(1);
        let hasher = foldhash::quality::RandomState::default();
        ClockMap {
            slots: empty(slots_for(cap.min(1024))),
            len: 0,
            cap,
            rng: hasher.hash_one(cap) | 1,
            hasher,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, key: &K) -> usize {
        // The hash's high bits scaled onto the length (Lemire's multiply-shift).
        ((u128::from(self.hasher.hash_one(key)) * self.slots.len() as u128) >> 64) as usize
    }

    /// The slot after `i`, wrapping.
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.slots.len() { 0 } else { i + 1 }
    }

    /// How far `to` is after `from`, wrapping.
    fn distance(&self, from: usize, to: usize) -> usize {
        if to >= from {
            to - from
        } else {
            to + self.slots.len() - from
        }
    }

    /// The slot holding `key`, or the empty slot ending its probe run.
    fn find(&self, key: &K) -> Result<usize, usize> {
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some(s) if s.key == *key => return Ok(i),
                Some(_) => i = self.next(i),
            }
        }
    }

    /// The entry for `key`, marked used; created with `make` if absent, which may evict an
    /// entry not used since a sweep last passed it (returned).
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        let mut evicted = None;
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(mut i) => {
                if self.len >= self.cap {
                    evicted = Some(self.evict());
                    // Eviction shifts entries back: the probe run may end elsewhere now.
                    i = self.find(&key).unwrap_or_else(|i| i);
                } else if self.len >= max_load(self.slots.len()) {
                    self.grow();
                    i = self.find(&key).unwrap_or_else(|i| i);
                }
                self.slots[i] = Some(Slot {
                    key,
                    value: make(),
                    used: false,
                });
                self.len += 1;
                i
            }
        };
        let slot = self.slots[i].as_mut().expect("found or just filled");
        slot.used = true;
        (&mut slot.value, evicted)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        let i = self.find(key).ok()?;
        self.slots[i].as_ref().map(|s| &s.value)
    }

    /// Starts loading the cache lines `key` would be found in, so an [`entry`](Self::entry)
    /// call for it a little later does not wait for memory.
    #[inline]
    pub fn prefetch(&self, key: &K) {
        let i = self.home(key);
        prefetch(&self.slots[i]);
        // Linear probing: a collision moved it to the next slot, likely enough at this load.
        prefetch(&self.slots[self.next(i)]);
    }

    /// Sweeps from a random slot to an entry whose used bit is clear (at most one full turn
    /// plus one) and removes it.
    fn evict(&mut self) -> (K, V) {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let mut i = ((u128::from(self.rng) * self.slots.len() as u128) >> 64) as usize;
        loop {
            if let Some(s) = &mut self.slots[i]
                && !std::mem::replace(&mut s.used, false)
            {
                return self.remove_at(i);
            }
            i = self.next(i);
        }
    }

    /// Empties slot `hole` and shifts later entries of the probe run back into it (deletion
    /// without tombstones, so lookups never slow down with churn).
    fn remove_at(&mut self, mut hole: usize) -> (K, V) {
        let removed = self.slots[hole].take().expect("an occupied slot");
        self.len -= 1;
        let mut j = hole;
        loop {
            j = self.next(j);
            let Some(s) = &self.slots[j] else { break };
            // It may move into the hole only if the hole lies on its probe path.
            let home = self.home(&s.key);
            if self.distance(home, j) >= self.distance(hole, j) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        (removed.key, removed.value)
    }

    /// Doubles the table, or goes straight to its final size when that is at most twice the
    /// double (one rehash less, and less memory held twice while rehashing).
    fn grow(&mut self) {
        let last = slots_for(self.cap);
        let len = self.slots.len();
        let next = if len.saturating_mul(4) >= last {
            last
        } else {
            len * 2
        };
        let old = std::mem::replace(&mut self.slots, empty(next));
        for s in old.into_iter().flatten() {
            let Err(i) = self.find(&s.key) else {
                unreachable!("keys are unique")
            };
            self.slots[i] = Some(s);
        }
    }
}

fn empty<K, V>(n: usize) -> Vec<Option<Slot<K, V>>> {
    std::iter::repeat_with(|| None).take(n).collect()
}

#[inline(always)]
fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint that never faults; the address is a live reference anyway.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(r).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_an_unused_entry_and_stays_bounded() {
        let mut lru = ClockMap::new(2);
        *lru.entry(1, || 10).0 += 1;
        lru.entry(2, || 20);
        // Both used: the sweep clears both bits, then takes one of them (wherever it starts).
        let (_, first) = lru.entry(3, || 30);
        let (first, _) = first.expect("full: one evicted");
        assert!(first == 1 || first == 2);
        let survivor = 3 - first;
        // The survivor's bit was cleared by the sweep; 3 is used again: the survivor goes.
        lru.entry(3, || 0);
        let (_, evicted) = lru.entry(4, || 40);
        assert_eq!(evicted.map(|(k, _)| k), Some(survivor));
        assert_eq!(lru.get(&3), Some(&30));
        for k in 10..1000 {
            lru.entry(k, || k);
        }
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&999), Some(&999));
    }

    #[test]
    fn the_table_is_sized_to_the_cap() {
        assert_eq!(
            std::mem::size_of::<Option<Slot<std::net::IpAddr, [u64; 5]>>>(),
            64
        );
        for cap in [1, 2, 3, 1000, 1025, 100_000] {
            let mut lru = ClockMap::new(cap);
            // Full, then half a table's worth of churn: where a sweeping hand leaves the
            // slots ahead of it overfull.
            for k in 0..cap as u64 * 3 / 2 {
                lru.entry(k, || 0u8);
            }
            let slots = lru.slots.len();
            assert!(lru.len() == cap && slots > cap, "cap {cap}: {slots} slots");
            assert!(
                slots <= cap + cap / 3 + 4,
                "cap {cap}: {slots} slots, more than 4/3 of the cap"
            );
            // An insert finds a free slot within a few probes on average: ~13 at 3/4 load
            // after churn, with wide swings on small tables (random hash seed and eviction
            // start); a sweeping hand, or a weak hash seed for consecutive keys, left runs of
            // thousands of full slots (~1,000 probes per insert), which this bound catches.
            let mut probes = 0;
            let mut run = (0..slots).take_while(|&i| lru.slots[i].is_some()).count();
            for i in (0..slots).rev() {
                run = if lru.slots[i].is_some() { run + 1 } else { 0 };
                probes += run;
            }
            let mean = probes as f64 / slots as f64;
            assert!(mean < 40.0, "cap {cap}: {mean:.1} probes per insert");
        }
    }

    #[test]
    fn matches_a_reference_map_through_growth_and_churn() {
        use std::collections::HashMap;
        let mut lru = ClockMap::new(3000);
        let mut model = HashMap::new();
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..100_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let k = seed % 5000;
            let (v, evicted) = lru.entry(k, || 0u64);
            *v += 1;
            let count = *v;
            *model.entry(k).or_insert(0u64) += 1;
            if let Some((old, n)) = evicted {
                assert_ne!(old, k);
                assert_eq!(model.remove(&old), Some(n));
            }
            assert_eq!(model[&k], count);
            assert!(lru.len() <= 3000 && lru.len() == model.len());
        }
        for (k, n) in &model {
            assert_eq!(lru.get(k), Some(n));
        }
    }
}
