//! The kernel's `WATCHED` and `ENFORCED` maps of cgroup ids, shared by whoever decides what
//! to watch and enforce.

use std::sync::{Arc, Mutex};

use aya::maps::{HashMap, Map, MapData};
use youwatch_common::{enforce, names};

use super::{SensorError, error_chain};

type CgroupMap = HashMap<MapData, u64, u8>;

/// Watched cgroup ids. An exec is reported when the task's cgroup or any ancestor is in the set,
/// so watching a pod-level cgroup covers all its containers, present and future. A watched
/// cgroup may also be enforced: forbidden execs in its subtree are stopped (see
/// [`super::Enforcement`]).
#[derive(Clone)]
pub struct WatchSet {
    map: Arc<Mutex<CgroupMap>>,
    enforced: Arc<Mutex<CgroupMap>>,
}

impl WatchSet {
    pub(super) fn new(watched: Map, enforced: Map) -> Result<Self, SensorError> {
        let open = |map, name| {
            HashMap::try_from(map).map_err(|e| SensorError::Map {
                name,
                message: error_chain(&e),
            })
        };
        Ok(Self {
            map: Arc::new(Mutex::new(open(watched, names::WATCHED_MAP)?)),
            enforced: Arc::new(Mutex::new(open(enforced, enforce::names::ENFORCED_MAP)?)),
        })
    }

    /// Starts reporting execs in `cgroup_id` and below. Idempotent.
    pub fn watch(&self, cgroup_id: u64) -> Result<(), SensorError> {
        insert(&mut lock(&self.map), cgroup_id).map_err(|message| SensorError::Map {
            name: names::WATCHED_MAP,
            message: format!("watching cgroup {cgroup_id}: {message}"),
        })
    }

    /// Stops reporting execs in `cgroup_id`, and enforcing there. Unwatching an id that is not
    /// watched is fine.
    pub fn unwatch(&self, cgroup_id: u64) -> Result<(), SensorError> {
        self.set_enforced(cgroup_id, false)?;
        remove(&mut lock(&self.map), cgroup_id).map_err(|message| SensorError::Map {
            name: names::WATCHED_MAP,
            message: format!("unwatching cgroup {cgroup_id}: {message}"),
        })
    }

    /// Starts or stops enforcing in the subtree of `cgroup_id`, which must be watched for the
    /// kernel to look at it. Idempotent.
    pub fn set_enforced(&self, cgroup_id: u64, on: bool) -> Result<(), SensorError> {
        let mut map = lock(&self.enforced);
        let result = if on {
            insert(&mut map, cgroup_id)
        } else {
            remove(&mut map, cgroup_id)
        };
        result.map_err(|message| SensorError::Map {
            name: enforce::names::ENFORCED_MAP,
            message: format!("cgroup {cgroup_id}: {message}"),
        })
    }

    /// The watched ids, in no particular order.
    pub fn ids(&self) -> Vec<u64> {
        lock(&self.map).keys().filter_map(Result::ok).collect()
    }

    /// The enforced ids, in no particular order.
    pub fn enforced_ids(&self) -> Vec<u64> {
        lock(&self.enforced).keys().filter_map(Result::ok).collect()
    }
}

fn lock(map: &Mutex<CgroupMap>) -> std::sync::MutexGuard<'_, CgroupMap> {
    // A panic while holding this lock leaves the map itself intact: keep using it.
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `id`; one already there is fine.
fn insert(map: &mut CgroupMap, id: u64) -> Result<(), String> {
    map.insert(id, 1, 0).map_err(|e| {
        format!(
            "{} (the map holds at most {} cgroups)",
            error_chain(&e),
            youwatch_common::limits::MAX_WATCHED
        )
    })
}

/// Removes `id`; an id that is not there is fine.
fn remove(map: &mut CgroupMap, id: u64) -> Result<(), String> {
    match map.remove(&id) {
        Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
        Err(aya::maps::MapError::SyscallError(e))
            if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(e) => Err(error_chain(&e)),
    }
}
