//! A map with a hard cap: inserting into a full map evicts the least recently used entry.
//! Per-IP state is keyed by attacker-chosen data, so its memory must not depend on them.

use std::{collections::HashMap, hash::Hash};

const NIL: u32 = u32::MAX;

struct Node<K, V> {
    key: K,
    value: V,
    prev: u32,
    next: u32,
}

pub struct Lru<K, V> {
    map: HashMap<K, u32>,
    nodes: Vec<Node<K, V>>,
    /// Most recently used.
    head: u32,
    /// Least recently used: the next to go.
    tail: u32,
    cap: usize,
}

impl<K: Hash + Eq + Copy, V> Lru<K, V> {
    /// `cap` ≥ 1 entries (at most `u32::MAX - 1`).
    pub fn new(cap: usize) -> Lru<K, V> {
        let cap = cap.clamp(1, (NIL - 1) as usize);
        Lru {
            map: HashMap::with_capacity(cap.min(1 << 16)),
            nodes: Vec::with_capacity(cap.min(1 << 16)),
            head: NIL,
            tail: NIL,
            cap,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The entry for `key`, now the most recently used; created with `make` if absent, which
    /// may evict the least recently used entry (returned).
    pub fn entry(&mut self, key: K, make: impl FnOnce() -> V) -> (&mut V, Option<(K, V)>) {
        if let Some(&i) = self.map.get(&key) {
            self.touch(i);
            return (&mut self.nodes[i as usize].value, None);
        }
        let mut evicted = None;
        let i = if self.nodes.len() < self.cap {
            self.nodes.push(Node {
                key,
                value: make(),
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        } else {
            // Reuse the least recently used slot.
            let i = self.tail;
            self.unlink(i);
            let node = &mut self.nodes[i as usize];
            let old_key = std::mem::replace(&mut node.key, key);
            let old_value = std::mem::replace(&mut node.value, make());
            self.map.remove(&old_key);
            evicted = Some((old_key, old_value));
            i
        };
        self.map.insert(key, i);
        self.push_front(i);
        (&mut self.nodes[i as usize].value, evicted)
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.map.get(key).map(|&i| &self.nodes[i as usize].value)
    }

    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i);
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut lru = Lru::new(2);
        *lru.entry(1, || 10).0 += 1;
        lru.entry(2, || 20);
        lru.entry(1, || 0); // 1 is now the most recent
        let (_, evicted) = lru.entry(3, || 30);
        assert_eq!(evicted, Some((2, 20)));
        assert_eq!(lru.get(&1), Some(&11));
        assert_eq!(lru.len(), 2);
        for k in 10..1000 {
            lru.entry(k, || k);
        }
        assert_eq!(lru.len(), 2);
        assert_eq!((lru.get(&998), lru.get(&999)), (Some(&998), Some(&999)));
    }
}
