//! A map with a hard cap: inserting into a full map evicts an entry not used recently.
//! Per-IP state is keyed by attacker-chosen data, so its memory must not depend on them.
//!
//! CLOCK (second chance), the classic approximation of LRU: each entry has a "used" bit set
//! on access; eviction sweeps a hand over the entries, clearing bits, and takes the first
//! entry whose bit was already clear.
//!
//! The table is open addressing with linear probing, and key, value and used bit share one
//! cache-line-aligned slot: a lookup is one cache line (a `HashMap` reads a control group
//! and then a bucket, two misses on a table larger than the cache), and [`Lru::prefetch`]
//! can start loading that line early. Placement uses a randomly seeded hash, so attackers
//! cannot aim keys at one probe run.

use std::hash::{BuildHasher, Hash};

/// The table doubles past this load (3/4): linear probing stays short below it.
fn max_load(slots: usize) -> usize {
    slots / 4 * 3
}

/// Slots needed to hold `n` entries within [`max_load`].
fn slots_for(n: usize) -> usize {
    (n / 3 * 4 + 4).next_power_of_two()
}

/// One entry, alone on its cache line (the per-IP state fits in 64 bytes).
#[repr(align(64))]
struct Slot<K, V> {
    key: K,
    value: V,
    used: bool,
}

pub struct Lru<K, V> {
    /// A power of two long, never full.
    slots: Vec<Option<Slot<K, V>>>,
    len: usize,
    cap: usize,
    hand: usize,
    hasher: foldhash::fast::RandomState,
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// `cap` ≥ 1 entries.
    pub fn new(cap: usize) -> Lru<K, V> {
        let cap = cap.max(1);
        Lru {
            slots: empty(slots_for(cap.min(1024))),
            len: 0,
            cap,
            hand: 0,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn home(&self, key: &K) -> usize {
        self.hasher.hash_one(key) as usize & (self.slots.len() - 1)
    }

    /// The slot holding `key`, or the empty slot ending its probe run.
    fn find(&self, key: &K) -> Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            match &self.slots[i] {
                None => return Err(i),
                Some(s) if s.key == *key => return Ok(i),
                Some(_) => i = (i + 1) & mask,
            }
        }
    }

    /// The entry for `key`, marked used; created with `make` if absent, which may evict an
    /// entry not used since the hand last passed it (returned).
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
        prefetch(&self.slots[(i + 1) & (self.slots.len() - 1)]);
    }

    /// Sweeps the hand to an entry whose used bit is clear (at most one full turn) and
    /// removes it. Entries shifted back behind the hand are skipped this turn: approximate,
    /// like CLOCK itself.
    fn evict(&mut self) -> (K, V) {
        let mask = self.slots.len() - 1;
        loop {
            let i = self.hand;
            self.hand = (self.hand + 1) & mask;
            if let Some(s) = &mut self.slots[i]
                && !std::mem::replace(&mut s.used, false)
            {
                return self.remove_at(i);
            }
        }
    }

    /// Empties slot `hole` and shifts later entries of the probe run back into it (deletion
    /// without tombstones, so lookups never slow down with churn).
    fn remove_at(&mut self, mut hole: usize) -> (K, V) {
        let mask = self.slots.len() - 1;
        let removed = self.slots[hole].take().expect("an occupied slot");
        self.len -= 1;
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let Some(s) = &self.slots[j] else { break };
            // It may move into the hole only if the hole lies on its probe path.
            let home = self.home(&s.key);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = self.slots[j].take();
                hole = j;
            }
        }
        (removed.key, removed.value)
    }

    fn grow(&mut self) {
        let doubled = empty(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, doubled);
        for s in old.into_iter().flatten() {
            let Err(i) = self.find(&s.key) else {
                unreachable!("keys are unique")
            };
            self.slots[i] = Some(s);
        }
        self.hand = 0;
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
        let mut lru = Lru::new(2);
        *lru.entry(1, || 10).0 += 1;
        lru.entry(2, || 20);
        // Both used: the sweep clears both bits, then takes one of them.
        let (_, first) = lru.entry(3, || 30);
        let (first, _) = first.expect("full: one evicted");
        assert!(first == 1 || first == 2);
        let survivor = 3 - first;
        // The survivor's bit was cleared by the sweep; 3 is used again.
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
    fn matches_a_reference_map_through_growth_and_churn() {
        use std::collections::HashMap;
        let mut lru = Lru::new(3000);
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
