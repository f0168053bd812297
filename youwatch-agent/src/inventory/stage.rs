//! The inventory stage: one task that owns every piece of inventory state, between the sensor
//! (`ExecEvent`) and the rules (`EnrichedExec`).
//!
//! It reacts to four inputs: pod updates (cluster mode), new cgroup directories (inotify), a
//! periodic tick (pending pods, vanished cgroups, node-local rescans) and exec events. Pod
//! updates keep the kernel's watched set in step with the guarded pods; exec events are
//! enriched from that state.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    InventoryConfig, Targets, Watching,
    appear::CgroupAppear,
    cgroup_index::CgroupIndex,
    container_id,
    enforce::EnforceSelection,
    fifo::FifoMap,
    layout::KubepodsRoot,
    lineage::ProcessTable,
    metrics::{Attribution, InventoryMetrics},
    node_local::{self, LocalSelector, NodeLocalError},
    pod::PodRecord,
    procfs::ProcFs,
    select::{PodSelector, SelectError},
    source::{self, PodUpdate},
    users::UserNames,
};
use crate::{
    cgroupfs::{self, CgroupError},
    event::{ContainerInfo, EnrichedExec, ExecEvent},
    sensor::ebpf::WatchSet,
};

/// Unwatched cgroups remembered for execs still in flight when their pod went away.
const GONE_CAPACITY: usize = 256;
/// cgroup id → path entries cached.
const INDEX_CAPACITY: usize = 4096;
/// Containers whose passwd file is cached.
const USERS_CAPACITY: usize = 256;
/// Execs held while waiting for a container to appear in its pod's status.
const HELD_CAPACITY: usize = 1024;

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
    state.enforce = watching.enforce;
    for (path, id) in watching.explicit {
        state.watch_cgroup(id, path, None)?;
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
        let held_deadline = state.held.front().map(|h| h.deadline);
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

/// A few processes of a cgroup (its `cgroup.procs`), oldest first.
fn cgroup_procs(path: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|s| {
            s.lines()
                .take(8)
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
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

/// A guarded pod and its cgroup, once found.
struct Guarded {
    record: Arc<PodRecord>,
    cgroup: Option<u64>,
}

/// Who a watched cgroup belongs to.
#[derive(Clone)]
struct Watched {
    path: PathBuf,
    /// The pod's UID, for pod cgroups.
    pod: Option<String>,
}

/// An exec waiting for its container to show up in the pod's status.
struct Held {
    deadline: Instant,
    pod_uid: String,
    container_id: String,
    exec: EnrichedExec,
}

/// Node-local mode's selection and rescan clock.
struct Local {
    selector: LocalSelector,
    every: Duration,
    last: Option<Instant>,
}

pub(crate) struct State<W> {
    watch: W,
    metrics: InventoryMetrics,
    mount: PathBuf,
    configured_root: String,
    kubepods: Option<KubepodsRoot>,
    node_name: String,
    selector: Option<PodSelector>,
    local: Option<Local>,
    attribution_wait: Duration,
    /// Which watched cgroups are enforced; `None`: none.
    enforce: Option<EnforceSelection>,
    /// Watched cgroups set enforced in the kernel.
    enforced: HashSet<u64>,
    pods: HashMap<String, Guarded>,
    watched: HashMap<u64, Watched>,
    /// Cgroups watched for the agent's whole life (`--watch-cgroup`).
    pinned: HashSet<u64>,
    /// Recently unwatched cgroups and their pod, for execs still in the channel.
    gone: FifoMap<u64, (PathBuf, Option<Arc<PodRecord>>)>,
    held: VecDeque<Held>,
    index: CgroupIndex,
    table: ProcessTable,
    users: UserNames,
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
        let (selector, local, node_name) = match cluster {
            Some((node_name, own_namespace)) => {
                let selector = PodSelector::new(config, own_namespace)?;
                tracing::info!(
                    node = node_name,
                    selection = selector.describe(),
                    "inventory mode: cluster; guarding the selected pods on this node"
                );
                (Some(selector), None, node_name.to_owned())
            }
            None => {
                let selector = LocalSelector::new(&config.node_local, &mount)?;
                (
                    None,
                    Some(Local {
                        selector,
                        every: Duration::from_millis(config.node_local.rescan_interval_ms.max(100)),
                        last: None,
                    }),
                    String::new(),
                )
            }
        };
        let procfs = ProcFs::default();
        Ok(Self {
            watch,
            metrics,
            configured_root: config.cgroup.kubepods.clone(),
            kubepods: None,
            mount,
            node_name,
            selector,
            local,
            attribution_wait: Duration::from_millis(config.attribution_wait_ms),
            enforce: None,
            enforced: HashSet::new(),
            pods: HashMap::new(),
            watched: HashMap::new(),
            pinned: HashSet::new(),
            gone: FifoMap::new(GONE_CAPACITY),
            held: VecDeque::new(),
            index: CgroupIndex::new(INDEX_CAPACITY),
            table: ProcessTable::new(
                config.process_table_size,
                config.max_ancestors,
                procfs.clone(),
            ),
            users: UserNames::new(procfs, USERS_CAPACITY),
        })
    }

    /// Watches a cgroup for the agent's whole life (`--watch-cgroup`).
    fn watch_cgroup(
        &mut self,
        id: u64,
        path: PathBuf,
        pod: Option<String>,
    ) -> Result<(), InventoryError> {
        // Enforced before watched, as for pods.
        let enforce = self.enforce.as_ref().is_some_and(|e| e.explicit());
        self.enforce_cgroup(id, &path, enforce);
        if let Err(message) = self.watch.watch(id) {
            self.enforce_cgroup(id, &path, false);
            return Err(InventoryError::Watch { path, message });
        }
        tracing::info!(path = %path.display(), cgroup_id = id, "watching cgroup subtree");
        self.pinned.insert(id);
        self.add_watched(id, path, pod);
        Ok(())
    }

    /// Sets whether the kernel enforces in watched cgroup `id` (at `path`), as `wanted`
    /// unless the selection refuses the cgroup.
    fn enforce_cgroup(&mut self, id: u64, path: &std::path::Path, wanted: bool) {
        let on = wanted
            && match self.enforce.as_ref().map(|e| e.allowed(path)) {
                Some(Ok(())) => true,
                Some(Err(why)) => {
                    tracing::warn!(path = %path.display(), why, "not enforcing in this cgroup");
                    false
                }
                None => false,
            };
        if on == self.enforced.contains(&id) {
            return;
        }
        match self.watch.set_enforced(id, on) {
            Ok(()) if on => {
                tracing::info!(path = %path.display(), cgroup_id = id, "enforcing in cgroup subtree");
                self.enforced.insert(id);
            }
            Ok(()) => {
                tracing::info!(path = %path.display(), cgroup_id = id, "no longer enforcing in cgroup subtree");
                self.enforced.remove(&id);
            }
            Err(err) => tracing::error!(path = %path.display(), %err, on, "cannot set enforcement"),
        }
        self.metrics
            .enforced_cgroups
            .set(self.enforced.len() as i64);
    }

    /// Whether a guarded pod is enforced.
    fn pod_enforced(&self, record: &PodRecord) -> bool {
        self.enforce.as_ref().is_some_and(|e| e.pod(record))
    }

    fn add_watched(&mut self, id: u64, path: PathBuf, pod: Option<String>) {
        self.index.remember(id, path.clone());
        self.watched.insert(id, Watched { path, pod });
        self.metrics.watched_cgroups.set(self.watched.len() as i64);
    }

    fn unwatch(&mut self, id: u64) {
        let Some(watched) = self.watched.remove(&id) else {
            return;
        };
        if !self.pinned.contains(&id)
            && let Err(err) = self.watch.unwatch(id)
        {
            tracing::error!(path = %watched.path.display(), %err, "cannot unwatch cgroup");
        }
        if self.enforced.remove(&id) {
            self.metrics
                .enforced_cgroups
                .set(self.enforced.len() as i64);
        }
        let record = watched
            .pod
            .as_ref()
            .and_then(|uid| self.pods.get(uid))
            .map(|g| g.record.clone());
        self.gone.insert(id, (watched.path, record));
        self.metrics.watched_cgroups.set(self.watched.len() as i64);
    }

    // ---- pods ------------------------------------------------------------------------------

    pub(crate) fn on_pod_update(&mut self, update: PodUpdate) -> Vec<EnrichedExec> {
        let touched: Vec<String> = match update {
            PodUpdate::Apply(record) => {
                let uid = record.info.uid.clone();
                self.apply(record);
                vec![uid]
            }
            PodUpdate::Delete(uid) => {
                self.remove(&uid, "deleted");
                vec![uid]
            }
            PodUpdate::Relist(records) => {
                let listed: HashSet<String> = records.iter().map(|r| r.info.uid.clone()).collect();
                let touched: Vec<String> = listed.iter().cloned().collect();
                for record in records {
                    self.apply(record);
                }
                let vanished: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in &vanished {
                    self.remove(uid, "gone from the API server's list");
                }
                self.metrics.synced.set(1);
                touched
            }
        };
        self.update_pod_gauges();
        self.release_for(&touched)
    }

    fn apply(&mut self, record: PodRecord) {
        let wanted = record.node_name == self.node_name
            && self.selector.as_ref().is_some_and(|s| s.matches(&record));
        let uid = record.info.uid.clone();
        if !wanted {
            if self.pods.contains_key(&uid) {
                self.remove(&uid, "no longer selected");
            }
            return;
        }
        let record = Arc::new(record);
        if let Some(guarded) = self.pods.get_mut(&uid) {
            guarded.record = record.clone();
            // Its labels may have changed: opted in or out.
            if let Some(id) = guarded.cgroup
                && let Some(path) = self.watched.get(&id).map(|w| w.path.clone())
            {
                let wanted = self.pod_enforced(&record);
                self.enforce_cgroup(id, &path, wanted);
            }
            return;
        }
        tracing::info!(
            namespace = record.info.namespace,
            pod = record.info.name,
            uid,
            "guarding pod"
        );
        self.pods.insert(
            uid.clone(),
            Guarded {
                record,
                cgroup: None,
            },
        );
        if !self.resolve(&uid) {
            tracing::info!(
                uid,
                "pod cgroup not there yet; it is watched as soon as it appears"
            );
        }
    }

    fn remove(&mut self, uid: &str, why: &str) {
        let Some(guarded) = self.pods.get(uid) else {
            return;
        };
        let info = &guarded.record.info;
        tracing::info!(
            namespace = info.namespace,
            pod = info.name,
            uid,
            why,
            "no longer guarding pod"
        );
        if let Some(id) = guarded.cgroup {
            self.unwatch(id);
        }
        self.pods.remove(uid);
    }

    /// Finds and watches the pod's cgroup; `false` when it does not exist yet.
    fn resolve(&mut self, uid: &str) -> bool {
        let Some(root) = self.kubepods_root() else {
            return false;
        };
        let Some(guarded) = self.pods.get(uid) else {
            return false;
        };
        if guarded.cgroup.is_some() {
            return true;
        }
        let found = root
            .pod_dirs(&guarded.record.cgroup_uid, guarded.record.qos)
            .into_iter()
            .find_map(|dir| {
                std::fs::metadata(&dir)
                    .ok()
                    .filter(|m| m.is_dir())
                    .map(|m| (dir, m.ino()))
            });
        let Some((dir, id)) = found else {
            return false;
        };
        // Enforced before watched: the kernel looks at ENFORCED only for a watched cgroup, so
        // the pod's first watched exec is already enforced.
        let wanted = self.pod_enforced(&guarded.record);
        self.enforce_cgroup(id, &dir, wanted);
        if let Err(err) = self.watch.watch(id) {
            tracing::error!(path = %dir.display(), %err, "cannot watch pod cgroup");
            self.enforce_cgroup(id, &dir, false);
            return false;
        }
        tracing::info!(uid, path = %dir.display(), cgroup_id = id, "watching pod cgroup");
        if let Some(guarded) = self.pods.get_mut(uid) {
            guarded.cgroup = Some(id);
        }
        self.add_watched(id, dir, Some(uid.to_owned()));
        true
    }

    /// The kubepods root, detected again until found.
    fn kubepods_root(&mut self) -> Option<KubepodsRoot> {
        if self.kubepods.is_none() {
            self.kubepods = KubepodsRoot::find(&self.mount, &self.configured_root);
            if let Some(root) = &self.kubepods {
                if let Err(err) = cgroupfs::cgroup_id(&root.path) {
                    tracing::warn!(%err, "pod cgroups under this root are not visible to the exec sensor");
                }
                tracing::info!(path = %root.path.display(), driver = ?root.driver, "pod cgroup root");
            }
        }
        self.kubepods.clone()
    }

    pub(crate) fn resolve_pending(&mut self) {
        let pending: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, g)| g.cgroup.is_none())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in pending {
            self.resolve(&uid);
        }
        self.update_pod_gauges();
    }

    fn update_pod_gauges(&self) {
        self.metrics.guarded_pods.set(self.pods.len() as i64);
        let pending = self.pods.values().filter(|g| g.cgroup.is_none()).count();
        self.metrics.pending_pods.set(pending as i64);
    }

    // ---- periodic ----------------------------------------------------------------------------

    fn on_tick(&mut self, appear: &mut CgroupAppear) {
        self.watch_parent_dirs(appear);
        self.forget_vanished_cgroups();
        self.resolve_pending();
        self.rescan_local();
        self.metrics
            .process_table_entries
            .set(self.table.len() as i64);
    }

    /// Where new pod cgroups appear: the kubepods root and its QoS directories.
    fn watch_parent_dirs(&mut self, appear: &mut CgroupAppear) {
        if self.selector.is_some()
            && let Some(root) = self.kubepods_root()
        {
            appear.watch_dirs(&root.parent_dirs());
        }
    }

    /// A pod cgroup that disappeared (or was re-created: a new id) is unwatched and looked
    /// for again.
    fn forget_vanished_cgroups(&mut self) {
        let vanished: Vec<u64> = self
            .watched
            .iter()
            .filter(|(id, w)| {
                w.pod.is_some() && std::fs::metadata(&w.path).map(|m| m.ino()).ok() != Some(**id)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in vanished {
            let uid = self.watched.get(&id).and_then(|w| w.pod.clone());
            self.unwatch(id);
            if let Some(guarded) = uid.and_then(|uid| self.pods.get_mut(&uid)) {
                guarded.cgroup = None;
            }
        }
    }

    fn rescan_local(&mut self) {
        let Some(local) = &mut self.local else { return };
        if local.last.is_some_and(|t| t.elapsed() < local.every) {
            return;
        }
        let first = local.last.is_none();
        local.last = Some(Instant::now());
        let found = node_local::discover(&self.mount);
        let selected: Vec<_> = found
            .iter()
            .filter(|c| local.selector.matches(c))
            .cloned()
            .collect();
        if first {
            self.metrics.synced.set(1);
            tracing::info!(
                containers = found.len(),
                selected = selected.len(),
                "inventory mode: node-local (no cluster); containers discovered from cgroupfs"
            );
            for c in found.iter().take(20) {
                tracing::info!(id = c.id, runtime = ?c.runtime, path = %c.path.display(), "container found");
            }
            if local.selector.is_empty() {
                tracing::info!(
                    "no container selected: set inventory.node_local.cgroup_globs or \
                     container_ids, or pass --watch-cgroup"
                );
            }
        }
        let mut present = HashSet::new();
        for c in selected {
            let Ok(meta) = std::fs::metadata(&c.path) else {
                continue;
            };
            let id = meta.ino();
            present.insert(id);
            if self.watched.contains_key(&id) {
                continue;
            }
            match self.watch.watch(id) {
                Ok(()) => {
                    tracing::info!(id = c.id, path = %c.path.display(), "watching container");
                    self.add_watched(id, c.path, None);
                }
                Err(err) => {
                    tracing::error!(path = %c.path.display(), %err, "cannot watch container")
                }
            }
        }
        let stopped: Vec<u64> = self
            .watched
            .keys()
            .filter(|id| !self.pinned.contains(*id) && !present.contains(*id))
            .copied()
            .collect();
        for id in stopped {
            self.unwatch(id);
        }
    }

    // ---- execs -------------------------------------------------------------------------------

    pub(crate) fn on_exec(&mut self, event: ExecEvent) -> Vec<EnrichedExec> {
        let process = self.table.record_exec(&event);
        let ancestors = self.table.ancestors(&event);
        let (watched_path, record) = match self.watched.get(&event.watched_cgroup_id) {
            Some(w) => (
                Some(w.path.clone()),
                w.pod
                    .as_ref()
                    .and_then(|uid| self.pods.get(uid))
                    .map(|g| g.record.clone()),
            ),
            None => match self.gone.get(&event.watched_cgroup_id) {
                Some((path, record)) => (Some(path.clone()), record.clone()),
                None => (None, None),
            },
        };
        let cgroup_path = watched_path
            .as_deref()
            .and_then(|watched| self.index.resolve(event.cgroup_id, watched));
        let container_id = watched_path.as_deref().and_then(|watched| {
            let path = cgroup_path.as_deref()?;
            container_id::from_cgroup_path(path, watched).map(|(_, id)| id.to_owned())
        });
        let user_key = container_id
            .clone()
            .unwrap_or_else(|| format!("cgroup:{}", event.watched_cgroup_id));
        // A short command may be gone already: its container's other processes see the same
        // passwd file.
        let user_name = self
            .users
            .name_or_via(&user_key, event.tgid, event.uid, || {
                cgroup_path.as_deref().map(cgroup_procs).unwrap_or_default()
            });
        let mut exec = EnrichedExec {
            process,
            ancestors,
            user_name,
            container: None,
            pod: record.as_ref().map(|r| r.info.clone()),
            event,
        };
        let attribution = match (&record, container_id) {
            (Some(record), Some(id)) => match record.container(&id) {
                Some(c) => {
                    exec.container = Some(c.info(&id));
                    Attribution::Container
                }
                None if !self.attribution_wait.is_zero() => {
                    self.hold(record.info.uid.clone(), id, exec);
                    return self.release_overflow();
                }
                None => {
                    exec.container = Some(best_guess(record, &id));
                    Attribution::UnlistedContainer
                }
            },
            (Some(_), None) => Attribution::Pod,
            (None, Some(id)) => {
                exec.container = Some(ContainerInfo {
                    id,
                    ..Default::default()
                });
                Attribution::Cgroup
            }
            (None, None) if watched_path.is_some() => Attribution::Cgroup,
            (None, None) => Attribution::None,
        };
        self.metrics.exec(attribution);
        vec![exec]
    }

    fn hold(&mut self, pod_uid: String, container_id: String, exec: EnrichedExec) {
        self.held.push_back(Held {
            deadline: Instant::now() + self.attribution_wait,
            pod_uid,
            container_id,
            exec,
        });
    }

    /// Keeps the held queue bounded: the oldest goes on with what is known.
    fn release_overflow(&mut self) -> Vec<EnrichedExec> {
        let mut out = Vec::new();
        while self.held.len() > HELD_CAPACITY {
            if let Some(held) = self.held.pop_front() {
                out.push(self.finish(held));
            }
        }
        out
    }

    /// Held execs whose deadline passed, oldest first.
    pub(crate) fn release_expired(&mut self, now: Instant) -> Vec<EnrichedExec> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            if let Some(held) = self.held.pop_front() {
                out.push(self.finish(held));
            }
        }
        out
    }

    /// Every held exec, oldest first (at shutdown).
    fn release_all(&mut self) -> Vec<EnrichedExec> {
        let held = std::mem::take(&mut self.held);
        held.into_iter().map(|h| self.finish(h)).collect()
    }

    /// Held execs of these pods whose container is now listed.
    fn release_for(&mut self, uids: &[String]) -> Vec<EnrichedExec> {
        if self.held.is_empty() || uids.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for held in std::mem::take(&mut self.held) {
            let listed = uids.contains(&held.pod_uid)
                && self
                    .pods
                    .get(&held.pod_uid)
                    .is_some_and(|g| g.record.container(&held.container_id).is_some());
            if listed {
                out.push(self.finish(held));
            } else {
                keep.push_back(held);
            }
        }
        self.held = keep;
        out
    }

    /// Completes a held exec with the pod as it is now (or as it was, if it is gone).
    fn finish(&mut self, held: Held) -> EnrichedExec {
        let mut exec = held.exec;
        let record = self
            .pods
            .get(&held.pod_uid)
            .map(|g| g.record.clone())
            .or_else(|| {
                self.gone
                    .get(&exec.event.watched_cgroup_id)
                    .and_then(|(_, r)| r.clone())
            });
        let (container, attribution) = match &record {
            Some(record) => match record.container(&held.container_id) {
                Some(c) => (c.info(&held.container_id), Attribution::Container),
                None => (
                    best_guess(record, &held.container_id),
                    Attribution::UnlistedContainer,
                ),
            },
            None => (
                ContainerInfo {
                    id: held.container_id,
                    ..Default::default()
                },
                Attribution::UnlistedContainer,
            ),
        };
        if let Some(record) = &record {
            exec.pod = Some(record.info.clone());
        }
        exec.container = Some(container);
        self.metrics.exec(attribution);
        exec
    }
}

/// A container id the pod's status does not list: when exactly one declared container has
/// not started (by the status), it is that one; otherwise only the id is known.
fn best_guess(record: &PodRecord, id: &str) -> ContainerInfo {
    match record.only_unstarted() {
        Some(c) => c.info(id),
        None => ContainerInfo {
            id: id.to_owned(),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests;
