//! Per-IP scoring: a leaky bucket of anomaly points, and bans whose length grows for repeat
//! offenders. Time is the entries' own (seconds), so a burst read after a restart or a replay
//! of yesterday's log scores exactly as it did live.

use std::{net::IpAddr, time::Duration};

use super::{config::ScoringConfig, lru::Lru};

#[derive(Clone, Copy, Debug, Default)]
struct IpState {
    /// Points in the bucket at `last`.
    level: f64,
    last: u64,
    /// Bans so far (reset after `repeat_memory` without one).
    offenses: u32,
    last_ban: u64,
    banned_until: u64,
}

/// What scoring one attack did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Score {
    /// Points added; the bucket holds `level` of `threshold`.
    Counted { level: u32, threshold: u32 },
    /// Crossed the threshold: ban for `ttl` (`offense` = how many times now).
    Ban { ttl: Duration, offense: u32 },
    /// Already banned by an earlier decision, for `remaining` more.
    AlreadyBanned { remaining: Duration },
}

pub struct Scorer {
    cfg: ScoringConfig,
    ips: Lru<IpAddr, IpState>,
    evictions: u64,
}

impl Scorer {
    pub fn new(cfg: ScoringConfig) -> Scorer {
        Scorer {
            ips: Lru::new(cfg.max_tracked_ips),
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

    /// Adds an attack of `points` by `ip` at `now` (Unix seconds).
    pub fn record(&mut self, ip: IpAddr, points: u32, now: u64) -> Score {
        let cfg = &self.cfg;
        let (st, evicted) = self.ips.entry(ip, IpState::default);
        if evicted.is_some() {
            self.evictions += 1;
        }
        if st.banned_until > now {
            return Score::AlreadyBanned {
                remaining: Duration::from_secs(st.banned_until - now),
            };
        }
        let threshold = f64::from(cfg.threshold.max(1));
        let leak_per_sec = threshold / cfg.window.as_secs_f64().max(1.0);
        let elapsed = now.saturating_sub(st.last) as f64;
        st.level = (st.level - elapsed * leak_per_sec).max(0.0) + f64::from(points);
        st.last = st.last.max(now);
        if st.level < threshold {
            return Score::Counted {
                level: st.level as u32,
                threshold: cfg.threshold,
            };
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
        Score::Ban {
            ttl: Duration::from_secs(ttl_secs),
            offense: st.offenses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ScoringConfig {
        ScoringConfig {
            threshold: 10,
            window: Duration::from_secs(100),
            ban: Duration::from_secs(60),
            ban_factor: 4,
            max_ban: Duration::from_secs(600),
            repeat_memory: Duration::from_secs(3600),
            max_tracked_ips: 3,
        }
    }

    #[test]
    fn bucket_leaks_and_bans_grow() {
        let ip: IpAddr = "198.51.100.1".parse().unwrap();
        let mut s = Scorer::new(cfg());
        assert_eq!(
            s.record(ip, 5, 1000),
            Score::Counted {
                level: 5,
                threshold: 10
            }
        );
        // 50 s leak 5 points: back to 0 + 5.
        assert_eq!(
            s.record(ip, 5, 1050),
            Score::Counted {
                level: 5,
                threshold: 10
            }
        );
        assert_eq!(
            s.record(ip, 6, 1051),
            Score::Ban {
                ttl: Duration::from_secs(60),
                offense: 1
            }
        );
        assert_eq!(
            s.record(ip, 5, 1060),
            Score::AlreadyBanned {
                remaining: Duration::from_secs(51)
            }
        );
        s.record(ip, 10, 1200);
        assert_eq!(
            s.record(ip, 10, 2000),
            Score::Ban {
                ttl: Duration::from_secs(600),
                offense: 3
            }
        );
        // Forgiven after repeat_memory.
        assert_eq!(
            s.record(ip, 10, 9000),
            Score::Ban {
                ttl: Duration::from_secs(60),
                offense: 1
            }
        );
    }

    #[test]
    fn memory_is_capped() {
        let mut s = Scorer::new(cfg());
        for i in 0..1000u32 {
            s.record(IpAddr::from(i.to_be_bytes()), 1, 0);
        }
        assert_eq!((s.tracked(), s.evictions()), (3, 997));
    }
}
