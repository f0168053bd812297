//! Cluster mode: the pods of this node that the selection names are guarded; each pod's
//! cgroup is found under the kubepods root (once it exists) and watched, and unwatched when
//! the pod goes, stops being selected, or its cgroup vanishes.

use std::{
    collections::{HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::PathBuf,
    sync::Arc,
};

use super::Mode;
use crate::{
    cgroupfs,
    inventory::{
        InventoryConfig,
        appear::CgroupAppear,
        keeper::WatchKeeper,
        layout::KubepodsRoot,
        metrics::InventoryMetrics,
        pod::PodRecord,
        select::{PodSelector, SelectError},
        source::PodUpdate,
        stage::CgroupWatch,
    },
};

/// A guarded pod and its cgroup, once found.
struct Guarded {
    record: Arc<PodRecord>,
    cgroup: Option<u64>,
}

pub(crate) struct ClusterPods {
    node_name: String,
    selector: PodSelector,
    mount: PathBuf,
    configured_root: String,
    kubepods: Option<KubepodsRoot>,
    pods: HashMap<String, Guarded>,
    metrics: InventoryMetrics,
}

impl ClusterPods {
    pub(crate) fn new(
        config: &InventoryConfig,
        node_name: &str,
        own_namespace: Option<&str>,
        mount: PathBuf,
        metrics: InventoryMetrics,
    ) -> Result<Self, SelectError> {
        let selector = PodSelector::new(config, own_namespace)?;
        tracing::info!(
            node = node_name,
            selection = selector.describe(),
            "inventory mode: cluster; guarding the selected pods on this node"
        );
        Ok(Self {
            node_name: node_name.to_owned(),
            selector,
            mount,
            configured_root: config.cgroup.kubepods.clone(),
            kubepods: None,
            pods: HashMap::new(),
            metrics,
        })
    }

    fn apply<W: CgroupWatch>(&mut self, record: PodRecord, keeper: &mut WatchKeeper<W>) {
        let wanted = record.node_name == self.node_name && self.selector.matches(&record);
        let uid = record.info.uid.clone();
        if !wanted {
            if self.pods.contains_key(&uid) {
                self.remove(&uid, "no longer selected", keeper);
            }
            return;
        }
        let record = Arc::new(record);
        if let Some(guarded) = self.pods.get_mut(&uid) {
            guarded.record = record.clone();
            // Its labels may have changed: opted in or out.
            if let Some(id) = guarded.cgroup {
                keeper.pod_changed(id, &record);
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
        if !self.resolve(&uid, keeper) {
            tracing::info!(
                uid,
                "pod cgroup not there yet; it is watched as soon as it appears"
            );
        }
    }

    fn remove<W: CgroupWatch>(&mut self, uid: &str, why: &str, keeper: &mut WatchKeeper<W>) {
        let Some(guarded) = self.pods.remove(uid) else {
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
            keeper.unwatch(id, Some(guarded.record));
        }
    }

    /// Finds and watches the pod's cgroup; `false` when it does not exist yet.
    fn resolve<W: CgroupWatch>(&mut self, uid: &str, keeper: &mut WatchKeeper<W>) -> bool {
        let Some(root) = self.kubepods_root() else {
            return false;
        };
        let Some(guarded) = self.pods.get_mut(uid) else {
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
        if !keeper.watch_pod(id, dir, &guarded.record) {
            return false;
        }
        guarded.cgroup = Some(id);
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

    fn update_pod_gauges(&self) {
        self.metrics.guarded_pods.set(self.pods.len() as i64);
        let pending = self.pods.values().filter(|g| g.cgroup.is_none()).count();
        self.metrics.pending_pods.set(pending as i64);
    }
}

impl<W: CgroupWatch> Mode<W> for ClusterPods {
    fn on_pod_update(&mut self, update: PodUpdate, keeper: &mut WatchKeeper<W>) -> Vec<String> {
        let touched: Vec<String> = match update {
            PodUpdate::Apply(record) => {
                let uid = record.info.uid.clone();
                self.apply(record, keeper);
                vec![uid]
            }
            PodUpdate::Delete(uid) => {
                self.remove(&uid, "deleted", keeper);
                vec![uid]
            }
            PodUpdate::Relist(records) => {
                let listed: HashSet<String> = records.iter().map(|r| r.info.uid.clone()).collect();
                let touched: Vec<String> = listed.iter().cloned().collect();
                for record in records {
                    self.apply(record, keeper);
                }
                let vanished: Vec<String> = self
                    .pods
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in &vanished {
                    self.remove(uid, "gone from the API server's list", keeper);
                }
                self.metrics.synced.set(1);
                touched
            }
        };
        self.update_pod_gauges();
        touched
    }

    /// Where new pod cgroups appear: the kubepods root and its QoS directories.
    fn watch_parent_dirs(&mut self, appear: &mut CgroupAppear) {
        if let Some(root) = self.kubepods_root() {
            appear.watch_dirs(&root.parent_dirs());
        }
    }

    fn resolve_pending(&mut self, keeper: &mut WatchKeeper<W>) {
        let pending: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, g)| g.cgroup.is_none())
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in pending {
            self.resolve(&uid, keeper);
        }
        self.update_pod_gauges();
    }

    /// A pod cgroup that disappeared (or was re-created: a new id) is unwatched and looked
    /// for again.
    fn forget_vanished(&mut self, keeper: &mut WatchKeeper<W>) {
        for (id, uid) in keeper.vanished_pod_cgroups() {
            let guarded = self.pods.get_mut(&uid);
            keeper.unwatch(id, guarded.as_ref().map(|g| g.record.clone()));
            if let Some(guarded) = guarded {
                guarded.cgroup = None;
            }
        }
    }

    fn pod(&self, uid: &str) -> Option<Arc<PodRecord>> {
        self.pods.get(uid).map(|g| g.record.clone())
    }
}
