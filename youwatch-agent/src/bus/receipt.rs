//! Receipts: how a producer learns that every listener has taken what it published.
//!
//! A tailed input saves its cursor only once the batch's detections are taken (the response
//! stage journaled its decisions, the alert writer wrote its lines). It opens a [`Receipt`],
//! publishes each detection with a [`Token`] from it, and waits. A listener calls
//! [`Token::done`] once it has taken the envelope; a token dropped without `done` (a listener
//! that stopped with work queued) marks the receipt abandoned, and the cursor is not saved.

use std::{
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct State {
    pending: usize,
    abandoned: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A listener that panicked while holding the lock left a consistent counter.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn settle(&self, abandoned: bool) {
        let mut state = self.lock();
        state.pending -= 1;
        state.abandoned |= abandoned;
        if state.pending == 0 {
            self.changed.notify_all();
            self.notify.notify_waiters();
        }
    }
}

/// Not every listener took what was published: a listener stopped with it still queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a listener stopped before taking every published detection")]
pub struct Abandoned;

/// One batch's acknowledgements.
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    shared: Arc<Shared>,
}

impl Receipt {
    pub fn new() -> Receipt {
        Receipt::default()
    }

    /// A token a listener settles; counted until it is.
    pub(crate) fn token(&self) -> Token {
        self.shared.lock().pending += 1;
        Token {
            shared: Some(self.shared.clone()),
        }
    }

    /// Tokens not settled yet.
    pub fn pending(&self) -> usize {
        self.shared.lock().pending
    }

    /// Blocks until every token is settled (for producers on their own thread).
    pub fn wait(&self) -> Result<(), Abandoned> {
        let mut state = self.shared.lock();
        while state.pending > 0 {
            state = self
                .shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.abandoned {
            Err(Abandoned)
        } else {
            Ok(())
        }
    }

    /// Like [`wait`](Self::wait) but gives up after `timeout` (`None` then).
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<(), Abandoned>> {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .changed
            .wait_timeout_while(state, timeout, |s| s.pending > 0)
            .unwrap_or_else(|e| e.into_inner());
        (state.pending == 0).then_some(if state.abandoned {
            Err(Abandoned)
        } else {
            Ok(())
        })
    }

    /// Waits in async code.
    pub async fn settled(&self) -> Result<(), Abandoned> {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.pending == 0 {
                    return if state.abandoned {
                        Err(Abandoned)
                    } else {
                        Ok(())
                    };
                }
            }
            notified.await;
        }
    }
}

/// A listener's share of a receipt. Settle it with [`done`](Token::done) once taken; dropping
/// it unsettled marks the receipt abandoned.
#[derive(Debug)]
pub struct Token {
    shared: Option<Arc<Shared>>,
}

impl Token {
    pub fn done(mut self) {
        if let Some(shared) = self.shared.take() {
            shared.settle(false);
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.settle(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_when_every_token_is_done() {
        let r = Receipt::new();
        let (a, b) = (r.token(), r.token());
        assert_eq!(r.pending(), 2);
        a.done();
        assert_eq!(r.wait_timeout(Duration::from_millis(1)), None);
        let waiter = {
            let r = r.clone();
            std::thread::spawn(move || r.wait())
        };
        b.done();
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn a_dropped_token_abandons() {
        let r = Receipt::new();
        let t = r.token();
        r.token().done();
        drop(t);
        assert_eq!(r.wait(), Err(Abandoned));
    }

    #[test]
    fn empty_receipt_is_settled() {
        assert_eq!(Receipt::new().wait(), Ok(()));
    }

    #[tokio::test]
    async fn async_wait() {
        let r = Receipt::new();
        let t = r.token();
        let waiter = tokio::spawn({
            let r = r.clone();
            async move { r.settled().await }
        });
        tokio::task::yield_now().await;
        t.done();
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
