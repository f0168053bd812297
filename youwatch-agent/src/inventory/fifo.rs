//! A map with a fixed capacity that forgets its oldest insertions first. Every cache in the
//! inventory is keyed by something a workload controls (pids, cgroups, containers), so none
//! may grow without bound.

use std::{
    collections::{HashMap, VecDeque},
    hash::Hash,
};

#[derive(Debug)]
pub struct FifoMap<K, V> {
    capacity: usize,
    /// Value and the insertion stamp that `order` refers to.
    entries: HashMap<K, (V, u64)>,
    /// Insertion order; stale stamps (re-inserted or removed keys) are skipped on eviction.
    order: VecDeque<(K, u64)>,
    next_stamp: u64,
}

impl<K: Clone + Eq + Hash, V> FifoMap<K, V> {
    /// A map holding at most `capacity` entries (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(v, _)| v)
    }

    /// Inserts or replaces (a replaced key counts as newest), evicting the oldest when full.
    pub fn insert(&mut self, key: K, value: V) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.insert(key.clone(), (value, stamp));
        self.order.push_back((key, stamp));
        while self.entries.len() > self.capacity {
            self.evict_oldest();
        }
        // Stale stamps accumulate when keys are replaced; compact before they dominate.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(k, s)| entries.get(k).is_some_and(|(_, live)| live == s));
        }
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        self.entries.remove(key).map(|(v, _)| v)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn evict_oldest(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|(_, live)| *live == stamp)
            {
                self.entries.remove(&key);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest_first_and_stays_bounded() {
        let mut map = FifoMap::new(2);
        map.insert(1, "a");
        map.insert(2, "b");
        map.insert(1, "a2"); // 1 is now newest
        map.insert(3, "c"); // evicts 2
        assert_eq!(map.get(&1), Some(&"a2"));
        assert_eq!(map.get(&2), None);
        assert_eq!(map.get(&3), Some(&"c"));
        for i in 0..1000 {
            map.insert(i % 7, "x");
        }
        assert_eq!(map.len(), 2);
        assert!(map.order.len() <= 4);
        assert_eq!(map.remove(&5), Some("x"));
        assert_eq!(map.len(), 1);
    }
}
