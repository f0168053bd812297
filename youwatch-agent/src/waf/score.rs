//! Per-IP scoring: a leaky bucket of points, and bans whose length grows for repeat
//! offenders. An entry adds what its own attack rules are worth ([`Verdict::points`]), times
//! `blocked_factor` when the WAF blocked it, plus `new_class_points` for each attack class
//! the client had not shown since its bucket was last empty (after its first). Time is the
//! entries' own (seconds), so a burst read after a restart or a replay of yesterday's log
//! scores exactly as it did live.
//!
//! [`Verdict::points`]: super::classify::Verdict::points

use std::{net::IpAddr, time::Duration};

use super::{classify::ClassSet, clock::ClockMap, config::ScoringConfig};

#[derive(Clone, Copy, Debug, Default)]
struct IpState {
    /// Points in the bucket at `last`.
    level: f64,
    last: u64,
    /// Bans so far (reset after `repeat_memory` without one).
    offenses: u32,
    /// Attack classes shown since the bucket was last empty.
    classes: ClassSet,
    last_ban: u64,
    banned_until: u64,
}

/// What one entry holds against its client.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Evidence {
    /// The entry's own points ([`Verdict::points`](super::classify::Verdict::points)).
    pub points: f32,
    pub blocked: bool,
    /// The attack classes it shows (rules of weight ≥ 1).
    pub classes: ClassSet,
}

/// The points an entry added to its client's bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Added {
    /// Its own points, `blocked_factor` applied.
    pub points: f32,
    /// For classes new to the client.
    pub new_class: f32,
}

/// What scoring one attack did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Score {
    /// Points added; the bucket holds `level` of `threshold`.
    Counted { level: f32, threshold: u32 },
    /// Crossed the threshold: ban for `ttl` (`offense` = how many times now).
    Ban { ttl: Duration, offense: u32 },
    /// Already banned by an earlier decision, for `remaining` more.
    AlreadyBanned { remaining: Duration },
}

pub struct Scorer {
    cfg: ScoringConfig,
    ips: ClockMap<IpAddr, IpState>,
    evictions: u64,
}

impl Scorer {
    pub fn new(cfg: ScoringConfig) -> Scorer {
        Scorer {
            ips: ClockMap::new(cfg.max_tracked_ips),
            cfg,
            evictions: 0,
        }
    }

    /// IPs with state now (≤ `max_tracked_ips`).
    pub fn tracked(&self) -> usize {
        self.ips.len()
    }

    /// IPs forgotten to make room so far.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Starts loading `ip`'s state into the cache, for a [`record`](Self::record) soon after:
    /// with many clients the state table outgrows the cache, and the wait is otherwise paid
    /// in full on every entry.
    pub fn prefetch(&self, ip: IpAddr) {
        self.ips.prefetch(&ip);
    }

    /// Adds an attack entry of `ip` at `now` (Unix seconds).
    pub fn record(&mut self, ip: IpAddr, evidence: Evidence, now: u64) -> (Score, Added) {
        let cfg = &self.cfg;
        let (st, evicted) = self.ips.entry(ip, IpState::default);
        if evicted.is_some() {
            self.evictions += 1;
        }
        if st.banned_until > now {
            let remaining = Duration::from_secs(st.banned_until - now);
            return (Score::AlreadyBanned { remaining }, Added::default());
        }
        let threshold = f64::from(cfg.threshold.max(1));
        let leak_per_sec = threshold / cfg.window.as_secs_f64().max(1.0);
        let elapsed = now.saturating_sub(st.last) as f64;
        st.level = (st.level - elapsed * leak_per_sec).max(0.0);
        if st.level == 0.0 {
            st.classes = ClassSet::EMPTY;
        }
        let new = evidence.classes.difference(st.classes).len();
        let new = if st.classes.is_empty() {
            new.saturating_sub(1)
        } else {
            new
        };
        st.classes = st.classes.union(evidence.classes);
        let factor = if evidence.blocked {
            cfg.blocked_factor
        } else {
            1.0
        };
        let added = Added {
            points: evidence.points * factor,
            new_class: new as f32 * cfg.new_class_points,
        };
        st.level += f64::from(added.points) + f64::from(added.new_class);
        st.last = st.last.max(now);
        if st.level < threshold {
            let level = st.level as f32;
            let threshold = cfg.threshold;
            return (Score::Counted { level, threshold }, added);
        }
        if st.offenses > 0 && now.saturating_sub(st.last_ban) > cfg.repeat_memory.as_secs() {
            st.offenses = 0;
        }
        st.offenses = st.offenses.saturating_add(1);
        let factor = u64::from(cfg.ban_factor.max(1))
            .checked_pow(st.offenses - 1)
            .unwrap_or(u64::MAX);
        let ttl_secs = cfg
            .ban
            .as_secs()
            .saturating_mul(factor)
            .min(cfg.max_ban.as_secs().max(cfg.ban.as_secs()));
        st.last_ban = now;
        st.banned_until = now.saturating_add(ttl_secs);
        st.level = 0.0;
        st.classes = ClassSet::EMPTY;
        let ban = Score::Ban {
            ttl: Duration::from_secs(ttl_secs),
            offense: st.offenses,
        };
        (ban, added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::waf::classify::Class;

    fn cfg() -> ScoringConfig {
        ScoringConfig {
            threshold: 10,
            window: Duration::from_secs(100),
            ban: Duration::from_secs(60),
            ban_factor: 4,
            max_ban: Duration::from_secs(600),
            repeat_memory: Duration::from_secs(3600),
            max_tracked_ips: 3,
            ..ScoringConfig::default()
        }
    }

    /// Detection-only evidence without a class.
    fn pts(points: f32) -> Evidence {
        Evidence {
            points,
            blocked: false,
            classes: ClassSet::EMPTY,
        }
    }

    fn level(score: (Score, Added)) -> f32 {
        match score.0 {
            Score::Counted { level, .. } => level,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bucket_leaks_and_bans_grow() {
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let mut s = Scorer::new(cfg());
        assert_eq!(level(s.record(ip, pts(5.0), 1000)), 5.0);
        // 50 s leak 5 points: back to 0 + 5.
        assert_eq!(level(s.record(ip, pts(5.0), 1050)), 5.0);
        let ban = |secs, offense| Score::Ban {
            ttl: Duration::from_secs(secs),
            offense,
        };
        assert_eq!(s.record(ip, pts(6.0), 1051).0, ban(60, 1));
        assert_eq!(
            s.record(ip, pts(5.0), 1060).0,
            Score::AlreadyBanned {
                remaining: Duration::from_secs(51)
            }
        );
        s.record(ip, pts(10.0), 1200);
        assert_eq!(s.record(ip, pts(10.0), 2000).0, ban(600, 3));
        // Forgiven after repeat_memory.
        assert_eq!(s.record(ip, pts(10.0), 9000).0, ban(60, 1));
    }

    #[test]
    fn blocked_entries_and_new_classes_add_more() {
        let ip: IpAddr = "198.51.100.2".parse().unwrap();
        let mut s = Scorer::new(ScoringConfig {
            threshold: 40,
            ..cfg()
        });
        let ev = |class, blocked| Evidence {
            points: 5.0,
            blocked,
            classes: [class].into_iter().collect(),
        };
        // The first class is free; blocked counts twice.
        let (score, added) = s.record(ip, ev(Class::Sqli, true), 0);
        assert_eq!(
            added,
            Added {
                points: 10.0,
                new_class: 0.0
            }
        );
        assert_eq!(level((score, added)), 10.0);
        // Same class again: no bonus; a second class: the bonus.
        assert_eq!(s.record(ip, ev(Class::Sqli, false), 0).1.new_class, 0.0);
        let (score, added) = s.record(ip, ev(Class::Xss, false), 0);
        assert_eq!(
            added,
            Added {
                points: 5.0,
                new_class: 10.0
            }
        );
        assert_eq!(level((score, added)), 30.0);
        // Once the bucket has drained, classes are forgotten.
        let (_, added) = s.record(ip, ev(Class::Rce, false), 1000);
        assert_eq!(added.new_class, 0.0);
    }

    #[test]
    fn the_state_fits_its_slot() {
        // With the 17-byte address and the used bit, one 64-byte slot per IP (see clock.rs).
        assert!(std::mem::size_of::<IpState>() <= 40);
    }

    #[test]
    fn memory_is_capped() {
        let mut s = Scorer::new(cfg());
        for i in 0..1000u32 {
            s.record(IpAddr::from(i.to_be_bytes()), pts(1.0), 0);
        }
        assert_eq!((s.tracked(), s.evictions()), (3, 997));
    }
}
