//! A watched set of objects: a kube-rs reflector (a watch that resumes after dropped
//! connections and re-lists after `410 Gone`, errors retried with backoff) whose cache the
//! stage reads, with a counter bumped after every change (once a re-list is whole) and a flag
//! set once the first list is complete. The Ingress index and the IPBan ledger watch use it.

use std::{
    fmt::Debug,
    hash::Hash,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        utils::Backoff as KubeBackoff,
        watcher,
    },
};
use prometheus_client::metrics::{counter::Counter, gauge::Gauge};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::{response::retry::Backoff, stage::StopSignal};

/// The objects as last seen; cheap to clone.
#[derive(Clone)]
pub struct Reflected<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    pub store: Store<K>,
    changes: watch::Receiver<u64>,
    /// Set once the first list is complete. (kube's `Store::wait_until_ready` wakes only
    /// the last of several concurrent waiters: a futures oneshot keeps one waker.)
    listed: watch::Receiver<bool>,
}

/// What a watch reports besides its objects.
#[derive(Clone, Default)]
pub struct WatchMetrics {
    /// Objects in the cache, after every change.
    pub objects: Gauge,
    /// Watch failures (each retried).
    pub errors: Counter,
}

impl<K> Reflected<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    /// Starts watching `api` with `config`; the task ends on `stop`. `what` names the
    /// objects in logs ("Ingress", "IPBan").
    pub fn spawn(
        api: Api<K>,
        config: watcher::Config,
        what: &'static str,
        metrics: WatchMetrics,
        stop: StopSignal,
    ) -> (Reflected<K>, tokio::task::JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let (tx, changes) = watch::channel(0u64);
        let (listed_tx, listed) = watch::channel(false);
        let reader = store.clone();
        let task = tokio::spawn(async move {
            let stream =
                reflector::reflector(writer, watcher(api, config)).backoff(WatchBackoff::default());
            let mut stream = std::pin::pin!(stream);
            let mut healthy = true;
            loop {
                let item = tokio::select! {
                    _ = stop.stopped() => return,
                    item = stream.next() => item,
                };
                match item {
                    None => return,
                    Some(Ok(event)) => {
                        if !healthy {
                            tracing::info!("{what} watch recovered");
                            healthy = true;
                        }
                        if matches!(event, watcher::Event::InitDone) {
                            listed_tx.send_if_modified(|l| !std::mem::replace(l, true));
                        }
                        // Page by page during a (re-)list: announce once it is whole.
                        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                            metrics.objects.set(reader.len() as i64);
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    Some(Err(err)) => {
                        metrics.errors.inc();
                        let error = format!("{:#}", anyhow::Error::from(err));
                        tracing::warn!(error, "{what} watch failed; retrying");
                        healthy = false;
                    }
                }
            }
        });
        (
            Reflected {
                store,
                changes,
                listed,
            },
            task,
        )
    }
}

impl<K> Reflected<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// Waits for the first complete list; false if the watch task ended first.
    pub async fn listed(&self) -> bool {
        self.listed.clone().wait_for(|l| *l).await.is_ok()
    }

    /// [`listed`](Self::listed), until `deadline`.
    pub async fn ready(&self, deadline: SystemTime) -> bool {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::timeout(left, self.listed())
            .await
            .unwrap_or(false)
    }

    /// Every cached object.
    pub fn all(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Bumped after every change (once a re-list is complete).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }
}

/// Watch retry delays: 200 ms doubling to 10 s with jitter, back to 200 ms after a success
/// (so a restarted API server is followed within seconds).
struct WatchBackoff(Backoff);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff(Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(10),
        ))
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next_delay())
    }
}

impl KubeBackoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
}
