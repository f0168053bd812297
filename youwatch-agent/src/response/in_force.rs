//! Actions in force: one deletion per pod, one ban per (address, host), one quarantine per
//! app while it holds. Keyed by attacker-influenced data (addresses), so bounded: beyond the
//! cap, lapsed entries go first, then the one that lapses soonest.

use std::{collections::HashMap, time::SystemTime};

pub struct InForce {
    until: HashMap<String, SystemTime>,
    cap: usize,
}

impl InForce {
    pub fn new(cap: usize) -> InForce {
        InForce {
            until: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// Whether an action with `key` lasting until `until` is already covered at `now` (one
    /// in force that lasts at least as long). If not, records it. A pod deletion's `until` is
    /// the deadline of its retries, not how long it lasts: one in force covers every later
    /// one (two detections of one exec, a rule's and enforcement's, delete the pod once).
    pub fn covered_or_insert(&mut self, key: String, until: SystemTime, now: SystemTime) -> bool {
        let once = key.starts_with(super::action::DELETE_POD_KEY);
        self.check_or_insert(key, until, now, once)
    }

    /// Whether `key` is held at `now`, however long; if not, holds it until `until` (one
    /// look-back per pod, whichever detection came first).
    pub fn held_or_insert(&mut self, key: String, until: SystemTime, now: SystemTime) -> bool {
        self.check_or_insert(key, until, now, true)
    }

    fn check_or_insert(
        &mut self,
        key: String,
        until: SystemTime,
        now: SystemTime,
        once: bool,
    ) -> bool {
        if let Some(&held) = self.until.get(&key)
            && held > now
            && (once || held >= until)
        {
            return true;
        }
        if self.until.len() >= self.cap && !self.until.contains_key(&key) {
            self.until.retain(|_, t| *t > now);
            if self.until.len() >= self.cap
                && let Some(soonest) = self
                    .until
                    .iter()
                    .min_by_key(|(_, t)| **t)
                    .map(|(k, _)| k.clone())
            {
                self.until.remove(&soonest);
            }
        }
        self.until.insert(key, until);
        false
    }

    /// Forgets `key` (an action that failed, so a new detection may try again).
    pub fn forget(&mut self, key: &str) {
        self.until.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn same_action_is_covered_while_in_force_and_a_longer_one_is_not() {
        let mut f = InForce::new(10);
        assert!(!f.covered_or_insert("ip".into(), t(100), t(0)));
        assert!(f.covered_or_insert("ip".into(), t(90), t(10)));
        assert!(
            !f.covered_or_insert("ip".into(), t(200), t(10)),
            "a longer ban extends"
        );
        assert!(!f.covered_or_insert("ip".into(), t(300), t(250)), "lapsed");
    }

    #[test]
    fn a_deletion_in_force_covers_later_ones() {
        let mut f = InForce::new(10);
        let key = || {
            format!(
                "{}shop/juice-shop-1/uid",
                super::super::action::DELETE_POD_KEY
            )
        };
        assert!(!f.covered_or_insert(key(), t(600), t(0)));
        assert!(
            f.covered_or_insert(key(), t(601), t(1)),
            "decided a second later"
        );
        f.forget(&key());
        assert!(
            !f.covered_or_insert(key(), t(602), t(2)),
            "failed: may try again"
        );
    }

    #[test]
    fn bounded() {
        let mut f = InForce::new(3);
        for i in 0..100 {
            f.covered_or_insert(format!("k{i}"), t(1000 + i), t(0));
        }
        assert_eq!(f.len(), 3);
        assert!(f.covered_or_insert("k99".into(), t(1099), t(0)));
    }
}
