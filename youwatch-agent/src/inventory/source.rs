//! This node's pods from the API server: a kube-rs watcher with `spec.nodeName=<node>`,
//! turned into [`PodUpdate`] messages for the inventory stage.
//!
//! The watcher resumes from the last resourceVersion after a dropped connection and re-lists
//! after `410 Gone` (or when the server forgot our version, as after an API server restart);
//! a re-list arrives as one [`PodUpdate::Relist`] holding every pod, so the stage can drop
//! exactly the pods deleted while we were not looking. Errors are retried with backoff.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, utils::Backoff, watcher},
};
use tokio::sync::mpsc;

use super::{metrics::InventoryMetrics, pod::PodRecord};

/// Most pods a re-list may hold (a node runs at most a few hundred); beyond it the rest are
/// ignored with an error in the log rather than exhausting memory.
const MAX_RELIST: usize = 10_000;

/// A change to the set of pods on this node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodUpdate {
    /// Added or modified.
    Apply(PodRecord),
    /// Deleted; the UID.
    Delete(String),
    /// Every pod on the node, after a (re-)list: the ones not in it are gone.
    Relist(Vec<PodRecord>),
}

/// Starts watching the pods scheduled to `node`; updates arrive on the returned channel
/// until the receiver is dropped.
pub fn spawn(client: Client, node: &str, metrics: InventoryMetrics) -> mpsc::Receiver<PodUpdate> {
    let (tx, rx) = mpsc::channel(256);
    let api: Api<Pod> = crate::cluster::rbac::POD_WATCH.all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let node = node.to_owned();
    tokio::spawn(async move {
        let mut stream = watcher(api, config)
            .backoff(WatchBackoff::default())
            .boxed();
        let mut relist: Option<Vec<PodRecord>> = None;
        let mut healthy = true;
        while let Some(item) = stream.next().await {
            let update = match item {
                Ok(event) => {
                    if !healthy {
                        tracing::info!(node, "pod watch recovered");
                        healthy = true;
                    }
                    match translate(event, &mut relist) {
                        Some(update) => update,
                        None => continue,
                    }
                }
                Err(err) => {
                    metrics.watch_errors.inc();
                    // The watcher recovers by itself (resume, or re-list after 410 Gone);
                    // the backoff spaces the retries.
                    let error = format!("{:#}", anyhow::Error::from(err));
                    tracing::warn!(node, error, "pod watch failed; retrying");
                    healthy = false;
                    continue;
                }
            };
            if let PodUpdate::Relist(pods) = &update {
                metrics.resyncs.inc();
                tracing::info!(node, pods = pods.len(), "pod list (re)synchronised");
            }
            if tx.send(update).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// One watcher event → at most one update. Re-list pages are gathered in `relist`.
fn translate(event: watcher::Event<Pod>, relist: &mut Option<Vec<PodRecord>>) -> Option<PodUpdate> {
    match event {
        watcher::Event::Apply(pod) => record(&pod).map(PodUpdate::Apply),
        watcher::Event::Delete(pod) => pod.metadata.uid.map(PodUpdate::Delete),
        watcher::Event::Init => {
            *relist = Some(Vec::new());
            None
        }
        watcher::Event::InitApply(pod) => {
            let pods = relist.get_or_insert_with(Vec::new);
            if pods.len() < MAX_RELIST {
                pods.extend(record(&pod));
            } else if pods.len() == MAX_RELIST {
                tracing::error!(
                    "more than {MAX_RELIST} pods listed for this node; the rest are not guarded"
                );
            }
            None
        }
        watcher::Event::InitDone => Some(PodUpdate::Relist(relist.take().unwrap_or_default())),
    }
}

/// Retry delays after watch errors: 200 ms doubling to 10 s, ±25 % jitter so the agents of
/// a cluster do not reconnect in step, back to 200 ms after any success. kube's default
/// (client-go's 800 ms to 30 s, reset only after 2 quiet minutes) leaves pods unguarded for
/// up to half a minute after an API server restart.
struct WatchBackoff {
    next: Duration,
    seed: u64,
}

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Default for WatchBackoff {
    fn default() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            next: BACKOFF_MIN,
            seed: RandomState::new().hash_one(std::process::id()),
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // xorshift: enough randomness for jitter.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let delay = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Some(delay)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

fn record(pod: &Pod) -> Option<PodRecord> {
    PodRecord::from_pod(pod)
        .map_err(|err| tracing::warn!(%err, "ignoring pod"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::pod::tests::{UID, pod};

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter_and_resets() {
        let mut b = WatchBackoff::default();
        let delays: Vec<Duration> = b.by_ref().take(10).collect();
        assert!(delays[0] >= BACKOFF_MIN.mul_f64(0.75) && delays[0] <= BACKOFF_MIN.mul_f64(1.25));
        assert!(delays[1] > delays[0].mul_f64(1.1));
        assert!(delays.iter().all(|d| *d <= BACKOFF_MAX.mul_f64(1.25)));
        assert!(delays[9] >= BACKOFF_MAX.mul_f64(0.75));
        b.reset();
        assert!(b.next().unwrap() <= BACKOFF_MIN.mul_f64(1.25));
    }

    #[test]
    fn relist_gathers_pages_into_one_update() {
        let mut relist = None;
        assert_eq!(translate(watcher::Event::Init, &mut relist), None);
        assert_eq!(
            translate(watcher::Event::InitApply(pod()), &mut relist),
            None
        );
        match translate(watcher::Event::InitDone, &mut relist) {
            Some(PodUpdate::Relist(pods)) => assert_eq!(pods[0].info.uid, UID),
            other => panic!("{other:?}"),
        }
        assert!(relist.is_none());
        assert_eq!(
            translate(watcher::Event::Delete(pod()), &mut relist),
            Some(PodUpdate::Delete(UID.into()))
        );
    }
}
