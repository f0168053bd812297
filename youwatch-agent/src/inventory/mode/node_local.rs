//! Node-local mode: no cluster; the containers of this node's runtimes are found in cgroupfs
//! and those the selection names are watched, rescanned periodically.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use super::Mode;
use crate::inventory::{
    InventoryConfig,
    keeper::WatchKeeper,
    metrics::InventoryMetrics,
    node_local::{self, LocalSelector, NodeLocalError},
    stage::CgroupWatch,
};

pub(crate) struct LocalContainers {
    mount: PathBuf,
    selector: LocalSelector,
    metrics: InventoryMetrics,
    /// The rescan clock.
    every: Duration,
    last: Option<Instant>,
}

impl LocalContainers {
    pub(crate) fn new(
        config: &InventoryConfig,
        mount: PathBuf,
        metrics: InventoryMetrics,
    ) -> Result<Self, NodeLocalError> {
        Ok(Self {
            selector: LocalSelector::new(&config.node_local, &mount)?,
            mount,
            metrics,
            every: Duration::from_millis(config.node_local.rescan_interval_ms.max(100)),
            last: None,
        })
    }
}

impl<W: CgroupWatch> Mode<W> for LocalContainers {
    fn rescan(&mut self, keeper: &mut WatchKeeper<W>) {
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return;
        }
        let first = self.last.is_none();
        self.last = Some(Instant::now());
        let found = node_local::discover(&self.mount);
        let selected: Vec<_> = found
            .iter()
            .filter(|c| self.selector.matches(c))
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
            if self.selector.is_empty() {
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
            if !keeper.is_watched(id) {
                keeper.watch_container(id, c.path, &c.id);
            }
        }
        for id in keeper.unpinned_except(&present) {
            keeper.unwatch(id, None);
        }
    }
}
