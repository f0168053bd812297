//! The inventory stage: one task that owns every piece of inventory state, between the sensor
//! (`ExecEvent`) and the rules (`EnrichedExec`).
//!
//! It reacts to four inputs: pod updates (cluster mode), new cgroup directories (inotify), a
//! periodic tick (pending pods, vanished cgroups, node-local rescans) and exec events. The
//! mode (cluster or node-local) turns the first three into what to watch, which the
//! watch-set keeper writes to the kernel; the enricher names who did each exec from what the
//! keeper and the mode know.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    InventoryConfig, Targets, Watching,
    appear::CgroupAppear,
    enforce::EnforceSelection,
    enrich::{Enricher, Owners},
    keeper::{Owner, WatchKeeper},
    metrics::InventoryMetrics,
    mode::{ClusterPods, LocalContainers, Mode},
    node_local::NodeLocalError,
    pod::PodRecord,
    select::SelectError,
    source::{self, PodUpdate},
};
use crate::{
    cgroupfs::{self, CgroupError},
    event::{EnrichedExec, ExecEvent},
    sensor::ebpf::WatchSet,
};

/// The kernel's watched-cgroup set, as the stage uses it (the sensor's [`WatchSet`]; a fake
/// in unit tests). Unwatching a cgroup also stops enforcing there.
pub trait CgroupWatch: Send + 'static {
    fn watch(&self, cgroup_id: u64) -> Result<(), String>;
    fn unwatch(&self, cgroup_id: u64) -> Result<(), String>;
    fn set_enforced(&self, cgroup_id: u64, on: bool) -> Result<(), String>;
}

impl CgroupWatch for WatchSet {
    fn watch(&self, cgroup_id: u64) -> Result<(), String> {
        WatchSet::watch(self, cgroup_id).map_err(|e| e.to_string())
    }
    fn unwatch(&self, cgroup_id: u64) -> Result<(), String> {
        WatchSet::unwatch(self, cgroup_id).map_err(|e| e.to_string())
    }
    fn set_enforced(&self, cgroup_id: u64, on: bool) -> Result<(), String> {
        WatchSet::set_enforced(self, cgroup_id, on).map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Select(#[from] SelectError),
    #[error(transparent)]
    NodeLocal(#[from] NodeLocalError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("watching cgroup {path}: {message}")]
    Watch { path: PathBuf, message: String },
}

/// Starts the stage. Enriched execs arrive on the returned channel; the task ends when the
/// exec channel closes or the receiver is dropped. `watching` adds the `--watch-cgroup`
/// cgroups, watched for the agent's whole life, and what is enforced.
pub fn spawn<W: CgroupWatch>(
    config: &InventoryConfig,
    targets: Targets,
    watch: W,
    watching: Watching,
    execs: mpsc::Receiver<ExecEvent>,
    metrics: InventoryMetrics,
) -> Result<(mpsc::Receiver<EnrichedExec>, JoinHandle<()>), InventoryError> {
    let mount = cgroupfs::unified_mount()?;
    let cluster = match &targets {
        Targets::Cluster {
            node_name,
            own_namespace,
            ..
        } => Some((node_name.as_str(), own_namespace.as_deref())),
        Targets::NodeLocal => None,
    };
    let mut state = State::new(config, cluster, watch, mount, metrics.clone())?;
    state.set_enforce(watching.enforce);
    for (path, id) in watching.explicit {
        state.watch_cgroup(id, path)?;
    }
    let pods = match targets {
        Targets::Cluster {
            client, node_name, ..
        } => Some(source::spawn(
            client,
            &node_name,
            config.pod_relist_every(),
            metrics,
        )),
        Targets::NodeLocal => None,
    };
    let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
    let inputs = Inputs {
        pods,
        execs,
        appear: CgroupAppear::new(),
        rescan: Duration::from_millis(config.cgroup.rescan_interval_ms.max(10)),
    };
    Ok((rx, tokio::spawn(run(state, inputs, tx))))
}

struct Inputs {
    pods: Option<mpsc::Receiver<PodUpdate>>,
    execs: mpsc::Receiver<ExecEvent>,
    appear: CgroupAppear,
    rescan: Duration,
}

async fn run<W: CgroupWatch>(
    mut state: State<W>,
    mut inputs: Inputs,
    out: mpsc::Sender<EnrichedExec>,
) {
    let mut tick = tokio::time::interval(inputs.rescan);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    state.on_tick(&mut inputs.appear);
    loop {
        let held_deadline = state.enricher.next_deadline();
        let ready = tokio::select! {
            update = recv_or_pending(&mut inputs.pods) => match update {
                Some(update) => state.on_pod_update(update),
                None => {
                    tracing::error!("the pod watch ended; guarded pods are no longer updated");
                    inputs.pods = None;
                    Vec::new()
                }
            },
            () = inputs.appear.changed() => {
                // A new QoS directory needs its own watch before pods appear in it.
                state.watch_parent_dirs(&mut inputs.appear);
                state.resolve_pending();
                Vec::new()
            }
            _ = tick.tick() => {
                state.on_tick(&mut inputs.appear);
                Vec::new()
            }
            () = sleep_until_or_pending(held_deadline) => state.release_expired(Instant::now()),
            event = inputs.execs.recv() => match event {
                Some(event) => state.on_exec(event),
                None => {
                    // Shutting down: what is held goes out with the attribution it has.
                    for enriched in state.release_all() {
                        if out.send(enriched).await.is_err() {
                            break;
                        }
                    }
                    tracing::info!("exec events ended; inventory stops");
                    return;
                }
            },
        };
        for enriched in ready {
            if out.send(enriched).await.is_err() {
                return;
            }
        }
    }
}

async fn recv_or_pending<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_or_pending(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The stage's state: the watch-set keeper (what the kernel watches), the mode that tells it
/// what to watch, and the enricher (who did each exec).
pub(crate) struct State<W> {
    keeper: WatchKeeper<W>,
    mode: Box<dyn Mode<W>>,
    enricher: Enricher,
}

/// The enricher's view of the watch set and the guarded pods.
struct Lookup<'a, W> {
    keeper: &'a mut WatchKeeper<W>,
    mode: &'a dyn Mode<W>,
}

impl<W: CgroupWatch> Owners for Lookup<'_, W> {
    fn watched(&self, id: u64) -> Option<(PathBuf, Option<Arc<PodRecord>>)> {
        Some(match self.keeper.owner(id)? {
            Owner::Watched(path, uid) => (path.to_owned(), uid.and_then(|uid| self.mode.pod(uid))),
            Owner::Gone(path, record) => (path.to_owned(), record),
        })
    }
    fn cgroup_path(&mut self, id: u64, under: &Path) -> Option<PathBuf> {
        self.keeper.cgroup_path(id, under)
    }
    fn pod(&self, uid: &str) -> Option<Arc<PodRecord>> {
        self.mode.pod(uid)
    }
    fn gone_pod(&self, id: u64) -> Option<Arc<PodRecord>> {
        self.keeper.gone_pod(id)
    }
}

impl<W: CgroupWatch> State<W> {
    /// `cluster` is `(node name, own namespace)` in cluster mode, `None` in node-local mode.
    pub(crate) fn new(
        config: &InventoryConfig,
        cluster: Option<(&str, Option<&str>)>,
        watch: W,
        mount: PathBuf,
        metrics: InventoryMetrics,
    ) -> Result<Self, InventoryError> {
        let mode: Box<dyn Mode<W>> = match cluster {
            Some((node_name, own_namespace)) => Box::new(ClusterPods::new(
                config,
                node_name,
                own_namespace,
                mount,
                metrics.clone(),
            )?),
            None => Box::new(LocalContainers::new(config, mount, metrics.clone())?),
        };
        Ok(Self {
            keeper: WatchKeeper::new(watch, metrics.clone()),
            mode,
            enricher: Enricher::new(config, metrics),
        })
    }

    /// Which watched cgroups are enforced; `None`: none.
    pub(crate) fn set_enforce(&mut self, enforce: Option<EnforceSelection>) {
        self.keeper.enforce = enforce;
    }

    /// Watches a cgroup for the agent's whole life (`--watch-cgroup`).
    fn watch_cgroup(&mut self, id: u64, path: PathBuf) -> Result<(), InventoryError> {
        self.keeper
            .watch_pinned(id, &path)
            .map_err(|message| InventoryError::Watch { path, message })
    }

    fn lookup(&mut self) -> (&mut Enricher, Lookup<'_, W>) {
        (
            &mut self.enricher,
            Lookup {
                keeper: &mut self.keeper,
                mode: self.mode.as_ref(),
            },
        )
    }

    pub(crate) fn on_pod_update(&mut self, update: PodUpdate) -> Vec<EnrichedExec> {
        let touched = self.mode.on_pod_update(update, &mut self.keeper);
        let (enricher, lookup) = self.lookup();
        enricher.release_for(&touched, &lookup)
    }

    /// A new QoS directory needs its own watch before pods appear in it.
    fn watch_parent_dirs(&mut self, appear: &mut CgroupAppear) {
        self.mode.watch_parent_dirs(appear);
    }

    pub(crate) fn resolve_pending(&mut self) {
        self.mode.resolve_pending(&mut self.keeper);
    }

    fn on_tick(&mut self, appear: &mut CgroupAppear) {
        self.watch_parent_dirs(appear);
        self.forget_vanished_cgroups();
        self.resolve_pending();
        self.mode.rescan(&mut self.keeper);
        self.enricher.update_gauges();
    }

    fn forget_vanished_cgroups(&mut self) {
        self.mode.forget_vanished(&mut self.keeper);
    }

    pub(crate) fn on_exec(&mut self, event: ExecEvent) -> Vec<EnrichedExec> {
        let (enricher, mut lookup) = self.lookup();
        enricher.on_exec(event, &mut lookup)
    }

    /// Held execs whose deadline passed, oldest first.
    pub(crate) fn release_expired(&mut self, now: Instant) -> Vec<EnrichedExec> {
        let (enricher, lookup) = self.lookup();
        enricher.release_expired(now, &lookup)
    }

    /// Every held exec, oldest first (at shutdown).
    fn release_all(&mut self) -> Vec<EnrichedExec> {
        let (enricher, lookup) = self.lookup();
        enricher.release_all(&lookup)
    }
}

#[cfg(test)]
mod tests;
