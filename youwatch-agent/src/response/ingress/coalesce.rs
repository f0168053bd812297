//! At most one patch per Ingress per `deny_ip.coalesce` window (every denylist change reloads
//! nginx): an operation for an Ingress not patched within the last window goes out at once
//! (an isolated ban takes milliseconds); during a burst, operations wait for the window to
//! end and go out together.
//! At most one patch per Ingress is in flight; what arrives meanwhile is the next batch,
//! sent as soon as the current one is done. Different Ingresses are patched in parallel.
//!
//! The queue is bounded; a full one makes the caller wait (the response stage bounds the
//! actions in flight, so back-pressure reaches the detecting stages, nothing is dropped).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
    time::Instant,
};

use super::{
    edit::{Op, Verdict},
    index::IngressIndex,
    patch::{IngressKey, Patcher},
};
use crate::{
    response::retry::{ErrorClass, Failure},
    stage::StopSignal,
};

/// Operations queued for the batching task, at most.
const QUEUE: usize = 1024;

/// What became of one operation on one Ingress.
#[derive(Clone, Debug)]
pub struct Done {
    pub verdict: Verdict,
    /// The Ingress's uid (for Events).
    pub uid: Option<String>,
}

struct Submission {
    key: IngressKey,
    op: Op,
    deadline: SystemTime,
    reply: oneshot::Sender<Result<Done, Failure>>,
}

struct Batch {
    due: Instant,
    ops: Vec<Submission>,
}

/// Takes operations; cheap to clone.
#[derive(Clone)]
pub struct Coalescer {
    tx: mpsc::Sender<Submission>,
}

impl Coalescer {
    /// Starts the batching task; it ends on `stop` (or when every handle is dropped).
    /// `on_retry` runs before each retry of a transient API error.
    pub fn spawn(
        window: Duration,
        patcher: Arc<Patcher>,
        index: IngressIndex,
        on_retry: Arc<dyn Fn() + Send + Sync>,
        stop: StopSignal,
    ) -> (Coalescer, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(batch_loop(rx, window, patcher, index, on_retry, stop));
        (Coalescer { tx }, task)
    }

    /// Applies `op` to `key` with the next batch, retried until `deadline`.
    pub async fn submit(
        &self,
        key: IngressKey,
        op: Op,
        deadline: SystemTime,
    ) -> Result<Done, Failure> {
        let (reply, answer) = oneshot::channel();
        let stopped = || Failure {
            class: ErrorClass::Transient,
            message: "the Ingress responder stopped".into(),
        };
        self.tx
            .send(Submission {
                key,
                op,
                deadline,
                reply,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn batch_loop(
    mut rx: mpsc::Receiver<Submission>,
    window: Duration,
    patcher: Arc<Patcher>,
    index: IngressIndex,
    on_retry: Arc<dyn Fn() + Send + Sync>,
    stop: StopSignal,
) {
    let mut pending: HashMap<IngressKey, Batch> = HashMap::new();
    let mut busy: HashSet<IngressKey> = HashSet::new();
    // When each Ingress was last patched (one entry per Ingress patched within a window).
    let mut last_flush: HashMap<IngressKey, Instant> = HashMap::new();
    let mut flushing: JoinSet<IngressKey> = JoinSet::new();
    loop {
        let next_due = pending
            .iter()
            .filter(|(k, _)| !busy.contains(*k))
            .map(|(_, b)| b.due)
            .min();
        tokio::select! {
            _ = stop.stopped() => return,
            submission = rx.recv() => {
                let Some(s) = submission else { break };
                let now = Instant::now();
                last_flush.retain(|_, at| *at + window > now);
                let due = last_flush.get(&s.key).map_or(now, |at| *at + window);
                pending
                    .entry(s.key.clone())
                    .or_insert_with(|| Batch { due, ops: Vec::new() })
                    .ops
                    .push(s);
            }
            Some(done) = flushing.join_next(), if !flushing.is_empty() => {
                if let Ok(key) = done {
                    busy.remove(&key);
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                let now = Instant::now();
                let due: Vec<IngressKey> = pending
                    .iter()
                    .filter(|(k, b)| b.due <= now && !busy.contains(*k))
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in due {
                    let Some(batch) = pending.remove(&key) else { continue };
                    last_flush.insert(key.clone(), now);
                    busy.insert(key.clone());
                    flushing.spawn(flush(patcher.clone(), index.clone(), on_retry.clone(), key, batch.ops));
                }
            }
        }
    }
    // Every handle dropped: finish what is queued.
    for (key, batch) in pending {
        flushing.spawn(flush(
            patcher.clone(),
            index.clone(),
            on_retry.clone(),
            key,
            batch.ops,
        ));
    }
    while flushing.join_next().await.is_some() {}
}

/// Sends one batch and answers each of its operations.
async fn flush(
    patcher: Arc<Patcher>,
    index: IngressIndex,
    on_retry: Arc<dyn Fn() + Send + Sync>,
    key: IngressKey,
    ops: Vec<Submission>,
) -> IngressKey {
    let deadline = ops
        .iter()
        .map(|s| s.deadline)
        .max()
        .unwrap_or_else(SystemTime::now);
    let list: Vec<Op> = ops.iter().map(|s| s.op.clone()).collect();
    let known = index.get(&key).map(|i| (*i).clone());
    let result = patcher
        .apply(&key, known, &list, deadline, &|| on_retry())
        .await;
    match result {
        Ok(applied) => {
            if applied.patched {
                tracing::debug!(ingress = %key, operations = list.len(), "Ingress patched");
            }
            let uid = applied.ingress.metadata.uid.clone();
            for (s, verdict) in ops.into_iter().zip(applied.edit.verdicts) {
                let _ = s.reply.send(Ok(Done {
                    verdict,
                    uid: uid.clone(),
                }));
            }
        }
        Err(f) => {
            for s in ops {
                let _ = s.reply.send(Err(f.clone()));
            }
        }
    }
    key
}
