//! A map with a hard cap: inserting into a full map evicts an entry not used recently.
//! Per-IP state is keyed by attacker-chosen data, so its memory must not depend on them.
//!
//! CLOCK (second chance), the classic approximation of LRU: each entry has a "used" bit set
//! on access; eviction sweeps a hand over the entries, clearing bits, and takes the first
//! entry whose bit was already clear. A hit touches only its own entry (a linked-list LRU
//! writes two neighbours too: more cache misses per hit on a large map).

use std::{
    collections::{HashMap, hash_map::Entry},
    hash::Hash,
};

pub struct Lru<K, V> {
    /// Value and "used" bit, stored in the map itself: a hit is one probe, one cache line.
    map: HashMap<K, (V, bool)>,
    /// The keys in insertion slots, for the clock hand to sweep.
    keys: Vec<K>,
    hand: usize,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// `cap` ≥ 1 entries.
    pub fn new(cap: usize) -> Lru<K, V> {
        let cap = cap.max(1);
        Lru {
            map: HashMap::with_capacity(cap.min(1 << 16)),
            keys: Vec::with_capacity(cap.min(1 << 16)),
            hand: 0,
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The entry for `key`, marked used; created with `make` if absent, which may evict an
    /// entry not used since the hand last passed it (returned).
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        let mut evicted = None;
        if self.keys.len() >= self.cap && !self.map.contains_key(&key) {
            // Full: sweep to a key whose used bit is clear (at most one full turn), and give
            // its place to the new key.
            let victim = loop {
                let i = self.hand;
                self.hand = (self.hand + 1) % self.keys.len();
                let slot = self
                    .map
                    .get_mut(&self.keys[i])
                    .expect("every key is mapped");
                if !std::mem::replace(&mut slot.1, false) {
                    break i;
                }
            };
            let old_key = std::mem::replace(&mut self.keys[victim], key);
            let (old_value, _) = self.map.remove(&old_key).expect("every key is mapped");
            evicted = Some((old_key, old_value));
        }
        let slot = match self.map.entry(key) {
            Entry::Occupied(o) => {
                let slot = o.into_mut();
                slot.1 = true;
                slot
            }
            Entry::Vacant(v) => {
                if evicted.is_none() {
                    self.keys.push(key);
                }
                v.insert((make(), true))
            }
        };
        (&mut slot.0, evicted)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|(v, _)| v)
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
