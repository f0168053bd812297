//! Deleting expired IPBan objects. The kernel entries do not wait for this (every agent
//! lifts its entry at the expiry, [`super::sync`]); deleting keeps the ledger short.
//!
//! Who deletes: the ban's author (`spec.originNode`) at its expiry; any other agent only
//! `node_ban.gc_grace` after it, plus a spread of up to the same length that depends on its
//! node and the object, so when the author is gone one agent, not all of them at once, does
//! it. Every delete carries the object's `uid` and `resourceVersion`: an agent extending the
//! ban meanwhile (a repeat offense) wins, the delete gets 409 and the ban stays. Two agents
//! deleting the same object are harmless: the second gets 404 or 409.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    time::{Duration, SystemTime},
};

use super::{crd::IpBan, ledger::Ledger, metrics::NetbanMetrics};
use crate::{
    cluster::{
        reflect::Reflected,
        rescan::{Rescan, earliest},
    },
    stage::{StopSignal, Task},
};

/// Longest sleep between scans.
const RESCAN: Duration = Duration::from_secs(60);
/// How long one delete is retried before the next scan tries again.
const DELETE_DEADLINE: Duration = Duration::from_secs(30);

pub struct Collector {
    pub index: Reflected<IpBan>,
    pub ledger: Ledger,
    pub node: String,
    pub grace: Duration,
    pub metrics: NetbanMetrics,
}

impl Collector {
    pub fn spawn(self, stop: StopSignal) -> Task {
        stop.spawn_until(self.run())
    }

    async fn run(self) {
        if !self.index.listed().await {
            return;
        }
        let mut rescan = Rescan::new(self.index.changes(), RESCAN);
        loop {
            let now = SystemTime::now();
            let mut next: Option<SystemTime> = None;
            for ban in self.index.all() {
                // An object that cannot be read is its writer's to fix, not ours to delete.
                let Ok((_, expires)) = ban.parsed() else {
                    continue;
                };
                let due = expires + self.delay(&ban);
                if due > now {
                    next = earliest(next, Some(due));
                    continue;
                }
                let deadline = SystemTime::now() + DELETE_DEADLINE;
                match self.ledger.delete_expired(&ban, deadline).await {
                    Ok(true) => {
                        self.metrics.deleted.inc();
                        tracing::info!(
                            ipban = ban.name(),
                            address = ban.spec.address,
                            "expired IPBan deleted"
                        );
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(ipban = ban.name(), error = %e, "cannot delete an expired IPBan yet")
                    }
                }
            }
            if !rescan.wait(next).await {
                return;
            }
        }
    }

    /// How long after its expiry this agent deletes `ban`.
    fn delay(&self, ban: &IpBan) -> Duration {
        delay(&self.node, ban, self.grace)
    }
}

/// 0 for the ban's author; for the others `grace` plus a spread in `[0, grace)` that depends
/// on the node and the object (the same on every scan).
pub fn delay(node: &str, ban: &IpBan, grace: Duration) -> Duration {
    if ban.spec.origin_node == node {
        return Duration::ZERO;
    }
    let mut hasher = DefaultHasher::new();
    (node, ban.name()).hash(&mut hasher);
    let spread = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX).max(1);
    grace + Duration::from_millis(hasher.finish() % spread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netban::crd::IpBanSpec;

    #[test]
    fn the_author_first_then_one_of_the_others() {
        let ban = IpBan::new(
            "v4-203-0-113-9-32".into(),
            IpBanSpec {
                origin_node: "node-a".into(),
                ..IpBanSpec::default()
            },
        );
        let grace = Duration::from_secs(300);
        assert_eq!(delay("node-a", &ban, grace), Duration::ZERO);
        let others: Vec<Duration> = (0..20)
            .map(|i| delay(&format!("node-{i}x"), &ban, grace))
            .collect();
        assert!(
            others.iter().all(|d| *d >= grace && *d < grace * 2),
            "{others:?}"
        );
        assert!(
            others.windows(2).any(|w| w[0] != w[1]),
            "spread: {others:?}"
        );
        assert_eq!(delay("node-b", &ban, grace), delay("node-b", &ban, grace));
    }
}
