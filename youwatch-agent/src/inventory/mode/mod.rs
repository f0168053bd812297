//! What the inventory watches: the selected pods of this node (cluster mode) or the selected
//! containers found in cgroupfs (node-local mode). Each mode decides which cgroups to watch
//! and tells the watch-set keeper; the rest of the stage does not know which one runs.

use std::sync::Arc;

use super::{
    appear::CgroupAppear, keeper::WatchKeeper, pod::PodRecord, source::PodUpdate,
    stage::CgroupWatch,
};

mod cluster;
mod node_local;

pub(crate) use self::{cluster::ClusterPods, node_local::LocalContainers};

pub(crate) trait Mode<W: CgroupWatch>: Send {
    /// A change of the pods on this node; returns the UIDs it touched.
    fn on_pod_update(&mut self, _update: PodUpdate, _keeper: &mut WatchKeeper<W>) -> Vec<String> {
        Vec::new()
    }
    /// Directories new cgroups appear in, watched with inotify.
    fn watch_parent_dirs(&mut self, _appear: &mut CgroupAppear) {}
    /// Unwatches what vanished from cgroupfs (to be found again).
    fn forget_vanished(&mut self, _keeper: &mut WatchKeeper<W>) {}
    /// Watches what is wanted and has appeared since.
    fn resolve_pending(&mut self, _keeper: &mut WatchKeeper<W>) {}
    /// The periodic look at the whole node, on its own clock.
    fn rescan(&mut self, _keeper: &mut WatchKeeper<W>) {}
    /// A guarded pod as it is now.
    fn pod(&self, _uid: &str) -> Option<Arc<PodRecord>> {
        None
    }
}
