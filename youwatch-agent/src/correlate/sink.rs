//! The WAF stage's way to the correlation: a bounded queue it never waits on. A full queue
//! loses the request (counted as `dropped`): the audit log's tail and its bans come first.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use tokio::sync::mpsc;

use super::{
    metrics::{CorrelationMetrics, Fate},
    suspicion::Suspicion,
};

/// Where the WAF stage offers suspicious requests; cheap to clone.
#[derive(Clone)]
pub struct SuspicionSink {
    tx: mpsc::Sender<Suspicion>,
    metrics: CorrelationMetrics,
    warned: Arc<AtomicBool>,
}

/// A queue of `capacity` requests: the WAF's end and the correlation's.
pub fn channel(
    capacity: usize,
    metrics: CorrelationMetrics,
) -> (SuspicionSink, mpsc::Receiver<Suspicion>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let sink = SuspicionSink {
        tx,
        metrics,
        warned: Arc::default(),
    };
    (sink, rx)
}

impl SuspicionSink {
    /// Queues `s` without waiting; false (counted) when the queue is full or closed.
    pub fn offer(&self, s: Suspicion) -> bool {
        if self.tx.try_send(s).is_ok() {
            return true;
        }
        self.metrics.suspicion(Fate::Dropped);
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "suspicious requests dropped on their way to the correlation: its queue is full (correlation.suspicions.queue; counted in youwatch_correlation_suspicions_total{{outcome=\"dropped\"}}, warned once)"
            );
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{correlate::log::tests::suspicion, waf::classify::Class};

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = CorrelationMetrics::default();
        let (sink, mut rx) = channel(2, metrics.clone());
        for i in 0..5 {
            sink.offer(suspicion("203.0.113.1", i, Class::Rce));
        }
        assert_eq!(metrics.suspicions(Fate::Dropped), 3);
        assert_eq!(rx.try_recv().unwrap().time, 0);
        drop(rx);
        assert!(!sink.offer(suspicion("203.0.113.1", 9, Class::Rce)));
        assert_eq!(metrics.suspicions(Fate::Dropped), 4);
    }
}
