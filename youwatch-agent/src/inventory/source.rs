//! This node's pods from the API server: a kube-rs watcher with `spec.nodeName=<node>`,
//! turned into [`PodUpdate`] messages for the inventory stage.
//!
//! Recovery follows client-go's reflector ([`recovery`]): the watch resumes from the last
//! resourceVersion after a dropped connection, and re-lists when the server refuses that version
//! (410 Gone or any other refusal, as a status or as an `ERROR` event). Retries are spaced by
//! client-go's backoff ([`backoff`](super::backoff)). Every `relist_every` the pods are listed again anyway, so
//! an event lost without an error cannot leave the guarded set wrong for longer. A re-list
//! arrives as one [`PodUpdate::Relist`] holding every pod, so the stage drops exactly the pods
//! deleted while we were not looking.

use std::time::Duration;

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client, runtime::watcher};
use tokio::{sync::mpsc, time::Instant};

use super::{
    backoff::{Backoff, Jitter},
    metrics::InventoryMetrics,
    pod::PodRecord,
    recovery::{self, Recovery, RelistReason},
};

/// Most pods a re-list may hold (a node runs at most a few hundred); beyond it the rest are
/// ignored with an error in the log rather than exhausting memory.
const MAX_RELIST: usize = 10_000;
/// Periodic re-lists are spread ±10 % so the agents of a cluster do not list in step.
const RELIST_SPREAD: f64 = 0.1;

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

/// Starts watching the pods scheduled to `node`, listing them again every `relist_every`;
/// updates arrive on the returned channel until the receiver is dropped.
pub fn spawn(
    client: Client,
    node: &str,
    relist_every: Option<Duration>,
    metrics: InventoryMetrics,
) -> mpsc::Receiver<PodUpdate> {
    let (tx, rx) = mpsc::channel(256);
    let api: Api<Pod> = crate::cluster::rbac::POD_WATCH.all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let stream = new_watcher(&api, &config);
    let mut watch = PodWatch {
        api,
        config,
        node: node.to_owned(),
        relist_every,
        metrics,
        stream,
        backoff: Backoff::default(),
        jitter: Jitter::default(),
        reason: RelistReason::Start,
        pages: None,
        failing: false,
        periodic: None,
    };
    watch.periodic = watch.next_relist();
    tokio::spawn(watch.run(tx));
    rx
}

/// The watcher and what its recovery needs.
struct PodWatch {
    api: Api<Pod>,
    config: watcher::Config,
    node: String,
    relist_every: Option<Duration>,
    metrics: InventoryMetrics,
    stream: WatchStream,
    backoff: Backoff,
    jitter: Jitter,
    /// Why the list under way (or the next one the watcher makes) happens.
    reason: RelistReason,
    /// The re-list being gathered.
    pages: Option<Pages>,
    /// An error happened since the last successful list or event.
    failing: bool,
    /// When the next periodic re-list is due.
    periodic: Option<Instant>,
}

impl PodWatch {
    async fn run(mut self, tx: mpsc::Sender<PodUpdate>) {
        loop {
            let due = self.periodic.unwrap_or_else(Instant::now);
            let item = tokio::select! {
                item = self.stream.next() => item,
                () = tokio::time::sleep_until(due), if self.periodic.is_some() => {
                    self.relist(RelistReason::Periodic);
                    continue;
                }
            };
            match item {
                Some(Ok(event)) => {
                    if let Some(update) = self.on_event(event)
                        && tx.send(update).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(err)) => {
                    let delay = self.on_error(err);
                    tokio::time::sleep(delay).await;
                }
                None => {
                    tracing::error!(node = self.node, "the pod watcher ended");
                    return;
                }
            }
        }
    }

    fn on_event(&mut self, event: watcher::Event<Pod>) -> Option<PodUpdate> {
        // `Init` comes before the list request: not yet a success.
        if self.failing && !matches!(event, watcher::Event::Init) {
            tracing::info!(node = self.node, "pod watch recovered");
            self.failing = false;
        }
        let update = translate(event, &mut self.pages)?;
        if let PodUpdate::Relist(pods) = &update {
            self.metrics.relist(self.reason);
            tracing::info!(
                node = self.node,
                pods = pods.len(),
                reason = ?self.reason,
                "pod list (re)synchronised"
            );
            self.periodic = self.next_relist();
        }
        Some(update)
    }

    /// Counts and logs the error, starts a re-list if the watcher would not; returns how long
    /// to wait before polling the watcher again.
    fn on_error(&mut self, err: watcher::Error) -> Duration {
        let (why, recovery) = recovery::classify(&err);
        self.metrics.watch_error(why);
        self.failing = true;
        let relist = match recovery {
            Recovery::Retry => false,
            Recovery::Relisting(reason) => {
                self.reason = reason;
                true
            }
            Recovery::Relist(reason) => {
                self.relist(reason);
                true
            }
        };
        let delay = self.backoff.delay(std::time::Instant::now());
        let error = format!("{:#}", anyhow::Error::from(err));
        tracing::warn!(
            node = self.node,
            reason = ?why,
            error,
            retry_in = ?delay,
            relist,
            "pod watch failed; retrying"
        );
        delay
    }

    /// Replaces the watcher by a new one, which lists first.
    fn relist(&mut self, reason: RelistReason) {
        self.reason = reason;
        self.stream = new_watcher(&self.api, &self.config);
        self.periodic = self.next_relist();
    }

    /// When the next periodic re-list is due, counted from now.
    fn next_relist(&mut self) -> Option<Instant> {
        let every = self.relist_every?;
        Some(Instant::now() + self.jitter.spread(every, RELIST_SPREAD))
    }
}

type WatchStream = BoxStream<'static, watcher::Result<watcher::Event<Pod>>>;

/// A watcher that lists first, then watches from the list's version.
fn new_watcher(api: &Api<Pod>, config: &watcher::Config) -> WatchStream {
    watcher(api.clone(), config.clone()).boxed()
}

/// The pods of a re-list so far.
#[derive(Default)]
struct Pages {
    pods: Vec<PodRecord>,
    /// Listed beyond [`MAX_RELIST`].
    ignored: usize,
}

/// One watcher event → at most one update. Re-list pages are gathered in `pages`.
fn translate(event: watcher::Event<Pod>, pages: &mut Option<Pages>) -> Option<PodUpdate> {
    match event {
        watcher::Event::Apply(pod) => record(&pod).map(PodUpdate::Apply),
        watcher::Event::Delete(pod) => pod.metadata.uid.map(PodUpdate::Delete),
        watcher::Event::Init => {
            *pages = Some(Pages::default());
            None
        }
        watcher::Event::InitApply(pod) => {
            let pages = pages.get_or_insert_with(Pages::default);
            if pages.pods.len() < MAX_RELIST {
                pages.pods.extend(record(&pod));
            } else {
                pages.ignored += 1;
            }
            None
        }
        watcher::Event::InitDone => {
            let pages = pages.take().unwrap_or_default();
            if pages.ignored > 0 {
                tracing::error!(
                    ignored = pages.ignored,
                    "more than {MAX_RELIST} pods listed for this node; the rest are not guarded"
                );
            }
            Some(PodUpdate::Relist(pages.pods))
        }
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
    fn relist_gathers_pages_into_one_update() {
        let mut pages = None;
        assert_eq!(translate(watcher::Event::Init, &mut pages), None);
        assert_eq!(
            translate(watcher::Event::InitApply(pod()), &mut pages),
            None
        );
        match translate(watcher::Event::InitDone, &mut pages) {
            Some(PodUpdate::Relist(pods)) => assert_eq!(pods[0].info.uid, UID),
            other => panic!("{other:?}"),
        }
        assert!(pages.is_none());
        assert_eq!(
            translate(watcher::Event::Delete(pod()), &mut pages),
            Some(PodUpdate::Delete(UID.into()))
        );
    }
}
