//! A map with a hard cap: inserting into a full map evicts an entry not used recently.
//! Per-IP state is keyed by attacker-chosen data, so its memory must not depend on them.
//!
//! CLOCK (second chance), the classic approximation of LRU: each entry has a "used" bit set
//! on access; eviction sweeps a hand over the entries, clearing bits, and takes the first
//! entry whose bit was already clear. A hit writes only its own entry (a linked-list LRU
//! writes two neighbours too: three cache misses per hit on a large map).

use std::{collections::HashMap, hash::Hash};

struct Slot<K, V> {
    key: K,
    value: V,
    used: bool,
}

pub struct Lru<K, V> {
    map: HashMap<K, u32>,
    slots: Vec<Slot<K, V>>,
    hand: usize,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// `cap` ≥ 1 entries (at most `u32::MAX`).
    pub fn new(cap: usize) -> Lru<K, V> {
        let cap = cap.clamp(1, u32::MAX as usize);
        Lru {
            map: HashMap::with_capacity(cap.min(1 << 16)),
            slots: Vec::with_capacity(cap.min(1 << 16)),
            hand: 0,
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The entry for `key`, marked used; created with `make` if absent, which may evict an
    /// entry not used since the hand last passed it (returned).
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        if let Some(&i) = self.map.get(&key) {
            let slot = &mut self.slots[i as usize];
            slot.used = true;
            return (&mut slot.value, None);
        }
        if self.slots.len() < self.cap {
            self.map.insert(key, self.slots.len() as u32);
            self.slots.push(Slot {
                key,
                value: make(),
                used: true,
            });
            return (&mut self.slots.last_mut().expect("just pushed").value, None);
        }
        // Full: sweep to a slot whose used bit is clear (at most one full turn).
        let victim = loop {
            let i = self.hand;
            self.hand = (self.hand + 1) % self.slots.len();
            let slot = &mut self.slots[i];
            if !std::mem::replace(&mut slot.used, false) {
                break i;
            }
        };
        let slot = &mut self.slots[victim];
        let old_key = std::mem::replace(&mut slot.key, key);
        let old_value = std::mem::replace(&mut slot.value, make());
        slot.used = true;
        self.map.remove(&old_key);
        self.map.insert(key, victim as u32);
        (&mut self.slots[victim].value, Some((old_key, old_value)))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|&i| &self.slots[i as usize].value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_an_unused_entry_and_stays_bounded() {
        let mut lru = Lru::new(2);
        *lru.entry(1, || 10).0 += 1;
        lru.entry(2, || 20);
        // Both used: the sweep clears 1 and 2, then takes 1 (first with a clear bit).
        let (_, evicted) = lru.entry(3, || 30);
        assert_eq!(evicted, Some((1, 11)));
        lru.entry(3, || 0); // 3 used again, 2 not since the sweep
        let (_, evicted) = lru.entry(4, || 40);
        assert_eq!(evicted, Some((2, 20)));
        assert_eq!(lru.get(&3), Some(&30));
        for k in 10..1000 {
            lru.entry(k, || k);
        }
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.get(&999), Some(&999));
    }
}
