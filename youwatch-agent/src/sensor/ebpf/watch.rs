//! The kernel's `WATCHED` map of cgroup ids, shared by whoever decides what to watch.

use std::sync::{Arc, Mutex};

use aya::maps::{HashMap, Map, MapData};
use youwatch_common::names;

use super::{SensorError, error_chain};

/// Watched cgroup ids. An exec is reported when the task's cgroup or any ancestor is in the set,
/// so watching a pod-level cgroup covers all its containers, present and future.
#[derive(Clone)]
pub struct WatchSet {
    map: Arc<Mutex<HashMap<MapData, u64, u8>>>,
}

impl WatchSet {
    pub(super) fn new(map: Map) -> Result<Self, SensorError> {
        let map = HashMap::try_from(map).map_err(|e| SensorError::Map {
            name: names::WATCHED_MAP,
            message: error_chain(&e),
        })?;
        Ok(Self {
            map: Arc::new(Mutex::new(map)),
        })
    }

    /// Starts reporting execs in `cgroup_id` and below. Idempotent.
    pub fn watch(&self, cgroup_id: u64) -> Result<(), SensorError> {
        self.lock()
            .insert(cgroup_id, 1, 0)
            .map_err(|e| SensorError::Map {
                name: names::WATCHED_MAP,
                message: format!(
                    "watching cgroup {cgroup_id}: {} (the map holds at most {} cgroups)",
                    error_chain(&e),
                    youwatch_common::limits::MAX_WATCHED
                ),
            })
    }

    /// Stops reporting execs in `cgroup_id`. Unwatching an id that is not watched is fine.
    pub fn unwatch(&self, cgroup_id: u64) -> Result<(), SensorError> {
        match self.lock().remove(&cgroup_id) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(())
            }
            Err(e) => Err(SensorError::Map {
                name: names::WATCHED_MAP,
                message: format!("unwatching cgroup {cgroup_id}: {}", error_chain(&e)),
            }),
        }
    }

    /// The watched ids, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().keys().filter_map(Result::ok).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<MapData, u64, u8>> {
        // A panic while holding this lock leaves the map itself intact: keep using it.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
