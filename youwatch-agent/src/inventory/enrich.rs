//! The enricher: who did this exec. Names the process and its ancestors (the process table),
//! the user (the container's passwd file), the container and the pod, holding an exec a
//! moment when its container is not in the pod's status yet.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    InventoryConfig, container_id,
    lineage::ProcessTable,
    metrics::{Attribution, InventoryMetrics},
    pod::PodRecord,
    procfs::ProcFs,
    users::UserNames,
};
use crate::event::{ContainerInfo, EnrichedExec, ExecEvent};

/// Containers whose passwd file is cached.
const USERS_CAPACITY: usize = 256;
/// Execs held while waiting for a container to appear in its pod's status.
const HELD_CAPACITY: usize = 1024;

/// What the enricher asks of the watch set and the guarded pods.
pub(crate) trait Owners {
    /// The path of watched cgroup `id` (or one unwatched moments ago) and its pod.
    fn watched(&self, id: u64) -> Option<(PathBuf, Option<Arc<PodRecord>>)>;
    /// The path of cgroup `id`, which must be `under` or below it.
    fn cgroup_path(&mut self, id: u64, under: &Path) -> Option<PathBuf>;
    /// A guarded pod as it is now.
    fn pod(&self, uid: &str) -> Option<Arc<PodRecord>>;
    /// The pod of a cgroup unwatched moments ago.
    fn gone_pod(&self, id: u64) -> Option<Arc<PodRecord>>;
}

/// An exec waiting for its container to show up in the pod's status.
struct Held {
    deadline: Instant,
    pod_uid: String,
    container_id: String,
    exec: EnrichedExec,
}

pub(crate) struct Enricher {
    metrics: InventoryMetrics,
    attribution_wait: Duration,
    held: VecDeque<Held>,
    table: ProcessTable,
    users: UserNames,
}

impl Enricher {
    pub(crate) fn new(config: &InventoryConfig, metrics: InventoryMetrics) -> Self {
        let procfs = ProcFs::default();
        Self {
            metrics,
            attribution_wait: Duration::from_millis(config.attribution_wait_ms),
            held: VecDeque::new(),
            table: ProcessTable::new(
                config.process_table_size,
                config.max_ancestors,
                procfs.clone(),
            ),
            users: UserNames::new(procfs, USERS_CAPACITY),
        }
    }

    /// When the oldest held exec goes on without waiting longer.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.held.front().map(|h| h.deadline)
    }

    pub(crate) fn update_gauges(&self) {
        self.metrics
            .process_table_entries
            .set(self.table.len() as i64);
    }

    pub(crate) fn on_exec(
        &mut self,
        event: ExecEvent,
        owners: &mut impl Owners,
    ) -> Vec<EnrichedExec> {
        let process = self.table.record_exec(&event);
        let ancestors = self.table.ancestors(&event);
        let (watched_path, record) = match owners.watched(event.watched_cgroup_id) {
            Some((path, record)) => (Some(path), record),
            None => (None, None),
        };
        let cgroup_path = watched_path
            .as_deref()
            .and_then(|watched| owners.cgroup_path(event.cgroup_id, watched));
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
                    return self.release_overflow(&*owners);
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
    fn release_overflow(&mut self, owners: &impl Owners) -> Vec<EnrichedExec> {
        let mut out = Vec::new();
        while self.held.len() > HELD_CAPACITY {
            if let Some(held) = self.held.pop_front() {
                out.push(self.finish(held, owners));
            }
        }
        out
    }

    /// Held execs whose deadline passed, oldest first.
    pub(crate) fn release_expired(
        &mut self,
        now: Instant,
        owners: &impl Owners,
    ) -> Vec<EnrichedExec> {
        let mut out = Vec::new();
        while self.held.front().is_some_and(|h| h.deadline <= now) {
            if let Some(held) = self.held.pop_front() {
                out.push(self.finish(held, owners));
            }
        }
        out
    }

    /// Every held exec, oldest first (at shutdown).
    pub(crate) fn release_all(&mut self, owners: &impl Owners) -> Vec<EnrichedExec> {
        let held = std::mem::take(&mut self.held);
        held.into_iter().map(|h| self.finish(h, owners)).collect()
    }

    /// Held execs of these pods whose container is now listed.
    pub(crate) fn release_for(
        &mut self,
        uids: &[String],
        owners: &impl Owners,
    ) -> Vec<EnrichedExec> {
        if self.held.is_empty() || uids.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        for held in std::mem::take(&mut self.held) {
            let listed = uids.contains(&held.pod_uid)
                && owners
                    .pod(&held.pod_uid)
                    .is_some_and(|r| r.container(&held.container_id).is_some());
            if listed {
                out.push(self.finish(held, owners));
            } else {
                keep.push_back(held);
            }
        }
        self.held = keep;
        out
    }

    /// Completes a held exec with the pod as it is now (or as it was, if it is gone).
    fn finish(&mut self, held: Held, owners: &impl Owners) -> EnrichedExec {
        let mut exec = held.exec;
        let record = owners
            .pod(&held.pod_uid)
            .or_else(|| owners.gone_pod(exec.event.watched_cgroup_id));
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

/// A few processes of a cgroup (its `cgroup.procs`), oldest first.
fn cgroup_procs(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path.join("cgroup.procs"))
        .map(|s| {
            s.lines()
                .take(8)
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
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
