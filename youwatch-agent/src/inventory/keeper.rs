//! The watch-set keeper: which cgroups the kernel watches (and enforces in), and whose they
//! are. The inventory modes decide what to watch; the keeper writes the kernel's maps, keeps
//! the gauges, and remembers recently unwatched cgroups for execs still in flight.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use super::{
    cgroup_index::CgroupIndex, enforce::EnforceSelection, fifo::FifoMap, metrics::InventoryMetrics,
    pod::PodRecord, stage::CgroupWatch,
};

/// Unwatched cgroups remembered for execs still in flight when their pod went away.
const GONE_CAPACITY: usize = 256;
/// cgroup id → path entries cached.
const INDEX_CAPACITY: usize = 4096;

/// Who a watched cgroup belongs to.
struct Watched {
    path: PathBuf,
    /// The pod's UID, for pod cgroups.
    pod: Option<String>,
}

pub(crate) struct WatchKeeper<W> {
    watch: W,
    metrics: InventoryMetrics,
    /// Which watched cgroups are enforced; `None`: none.
    pub(crate) enforce: Option<EnforceSelection>,
    /// Watched cgroups set enforced in the kernel.
    enforced: HashSet<u64>,
    watched: HashMap<u64, Watched>,
    /// Cgroups watched for the agent's whole life (`--watch-cgroup`).
    pinned: HashSet<u64>,
    /// Recently unwatched cgroups and their pod, for execs still in the channel.
    gone: FifoMap<u64, (PathBuf, Option<Arc<PodRecord>>)>,
    index: CgroupIndex,
}

impl<W: CgroupWatch> WatchKeeper<W> {
    pub(crate) fn new(watch: W, metrics: InventoryMetrics) -> Self {
        Self {
            watch,
            metrics,
            enforce: None,
            enforced: HashSet::new(),
            watched: HashMap::new(),
            pinned: HashSet::new(),
            gone: FifoMap::new(GONE_CAPACITY),
            index: CgroupIndex::new(INDEX_CAPACITY),
        }
    }

    /// Watches a cgroup for the agent's whole life (`--watch-cgroup`); the error is the
    /// kernel's.
    pub(crate) fn watch_pinned(&mut self, id: u64, path: &Path) -> Result<(), String> {
        // Enforced before watched, as for pods.
        let enforce = self.enforce.as_ref().is_some_and(|e| e.explicit());
        self.enforce_cgroup(id, path, enforce);
        if let Err(message) = self.watch.watch(id) {
            self.enforce_cgroup(id, path, false);
            return Err(message);
        }
        tracing::info!(path = %path.display(), cgroup_id = id, "watching cgroup subtree");
        self.pinned.insert(id);
        self.add_watched(id, path.to_path_buf(), None);
        Ok(())
    }

    /// Watches a guarded pod's cgroup, enforced first when the pod opts in; `false` when the
    /// kernel refused.
    pub(crate) fn watch_pod(&mut self, id: u64, dir: PathBuf, record: &PodRecord) -> bool {
        // Enforced before watched: the kernel looks at ENFORCED only for a watched cgroup, so
        // the pod's first watched exec is already enforced.
        let wanted = self.pod_enforced(record);
        self.enforce_cgroup(id, &dir, wanted);
        if let Err(err) = self.watch.watch(id) {
            tracing::error!(path = %dir.display(), %err, "cannot watch pod cgroup");
            self.enforce_cgroup(id, &dir, false);
            return false;
        }
        let uid = &record.info.uid;
        tracing::info!(uid, path = %dir.display(), cgroup_id = id, "watching pod cgroup");
        self.add_watched(id, dir, Some(uid.clone()));
        true
    }

    /// Watches a node-local container's cgroup (never enforced: only pods opt in).
    pub(crate) fn watch_container(&mut self, id: u64, path: PathBuf, container: &str) {
        match self.watch.watch(id) {
            Ok(()) => {
                tracing::info!(id = container, path = %path.display(), "watching container");
                self.add_watched(id, path, None);
            }
            Err(err) => {
                tracing::error!(path = %path.display(), %err, "cannot watch container")
            }
        }
    }

    /// A guarded pod changed (its labels may opt in or out): enforce in its cgroup as it
    /// now asks.
    pub(crate) fn pod_changed(&mut self, id: u64, record: &PodRecord) {
        if let Some(path) = self.watched.get(&id).map(|w| w.path.clone()) {
            let wanted = self.pod_enforced(record);
            self.enforce_cgroup(id, &path, wanted);
        }
    }

    /// Sets whether the kernel enforces in watched cgroup `id` (at `path`), as `wanted`
    /// unless the selection refuses the cgroup.
    fn enforce_cgroup(&mut self, id: u64, path: &Path, wanted: bool) {
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

    /// Stops watching `id`; `record` is its pod as last known, for execs still in flight.
    pub(crate) fn unwatch(&mut self, id: u64, record: Option<Arc<PodRecord>>) {
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
        self.gone.insert(id, (watched.path, record));
        self.metrics.watched_cgroups.set(self.watched.len() as i64);
    }

    pub(crate) fn is_watched(&self, id: u64) -> bool {
        self.watched.contains_key(&id)
    }

    /// Watched cgroups that are neither pinned nor in `present`.
    pub(crate) fn unpinned_except(&self, present: &HashSet<u64>) -> Vec<u64> {
        self.watched
            .keys()
            .filter(|id| !self.pinned.contains(*id) && !present.contains(*id))
            .copied()
            .collect()
    }

    /// Pod cgroups that disappeared (or were re-created: a new id), with their pod's UID.
    pub(crate) fn vanished_pod_cgroups(&self) -> Vec<(u64, String)> {
        self.watched
            .iter()
            .filter_map(|(id, w)| {
                let uid = w.pod.as_ref()?;
                (std::fs::metadata(&w.path).map(|m| m.ino()).ok() != Some(*id))
                    .then(|| (*id, uid.clone()))
            })
            .collect()
    }

    /// The path of watched cgroup `id` (or one unwatched moments ago), with its pod's UID
    /// (watched) or its pod as it was (unwatched).
    pub(crate) fn owner(&self, id: u64) -> Option<Owner<'_>> {
        match self.watched.get(&id) {
            Some(w) => Some(Owner::Watched(&w.path, w.pod.as_deref())),
            None => self
                .gone
                .get(&id)
                .map(|(path, record)| Owner::Gone(path, record.clone())),
        }
    }

    /// The pod of a cgroup unwatched moments ago.
    pub(crate) fn gone_pod(&self, id: u64) -> Option<Arc<PodRecord>> {
        self.gone.get(&id).and_then(|(_, r)| r.clone())
    }

    /// The path of cgroup `id`, which must be `under` or below it.
    pub(crate) fn cgroup_path(&mut self, id: u64, under: &Path) -> Option<PathBuf> {
        self.index.resolve(id, under)
    }
}

/// Whose a watched (or recently unwatched) cgroup is.
pub(crate) enum Owner<'a> {
    /// Watched now: its path and, for a pod cgroup, the pod's UID.
    Watched(&'a Path, Option<&'a str>),
    /// Unwatched moments ago: its path and its pod as it was.
    Gone(&'a Path, Option<Arc<PodRecord>>),
}
