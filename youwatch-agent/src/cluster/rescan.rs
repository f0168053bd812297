//! The timer of a pass over watched objects that is repeated: on every change of the watch,
//! when the earliest time the last pass found comes (an expiry), and at least every
//! `longest` anyway (clock steps, a missed notification). The node ban's sync and garbage
//! collection and the Ingress expiry use it.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;

pub struct Rescan {
    changes: watch::Receiver<u64>,
    longest: Duration,
}

impl Rescan {
    /// `changes`: the watch's change counter ([`super::reflect::Reflected::changes`]).
    pub fn new(changes: watch::Receiver<u64>, longest: Duration) -> Rescan {
        Rescan { changes, longest }
    }

    /// Sleeps until the watch changes, `next` comes or `longest` passed, whichever is first;
    /// false once the watch ended.
    pub async fn wait(&mut self, next: Option<SystemTime>) -> bool {
        self.wait_or(next, std::future::pending::<()>()).await
    }

    /// [`wait`](Self::wait), also woken by `wake`.
    pub async fn wait_or(&mut self, next: Option<SystemTime>, wake: impl Future) -> bool {
        let wait = next
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(self.longest)
            .min(self.longest);
        tokio::select! {
            changed = self.changes.changed() => changed.is_ok(),
            _ = wake => true,
            _ = tokio::time::sleep(wait) => true,
        }
    }
}

/// The earlier of two times, either may be missing.
pub fn earliest(a: Option<SystemTime>, b: Option<SystemTime>) -> Option<SystemTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test]
    async fn wakes_on_a_change_at_the_next_time_and_ends_with_the_watch() {
        let (tx, rx) = watch::channel(0u64);
        let mut rescan = Rescan::new(rx, HOUR);
        tx.send_modify(|n| *n += 1);
        assert!(rescan.wait(None).await);
        assert!(rescan.wait(Some(SystemTime::now())).await);
        drop(tx);
        assert!(!rescan.wait(None).await);
    }

    #[test]
    fn earliest_of_what_is_there() {
        let (a, b) = (SystemTime::UNIX_EPOCH, SystemTime::now());
        assert_eq!(earliest(Some(b), Some(a)), Some(a));
        assert_eq!(earliest(None, Some(b)), Some(b));
        assert_eq!(earliest(None, None), None);
    }
}
