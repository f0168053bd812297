//! Which watched cgroup the current task is in, and whether its subtree is enforced.

use aya_ebpf::helpers::generated::bpf_get_current_ancestor_cgroup_id;
use youwatch_common::limits;

use crate::{enforce::ENFORCED, maps::WATCHED};

/// A task in a watched subtree.
pub struct Guard {
    /// The deepest watched cgroup among the task's cgroup and its ancestors.
    pub watched: u64,
    /// One of the watched ancestors is also enforced.
    pub enforced: bool,
}

/// Walks the current task's cgroup and its ancestors (`bpf_get_current_ancestor_cgroup_id`).
/// `ENFORCED` is looked up only for a watched cgroup, so an exec outside every watched subtree
/// costs what it cost before enforcement existed.
#[inline(always)]
pub fn current() -> Option<Guard> {
    // Plain integers, not Options: LLVM leaves a None's payload undefined, which the verifier
    // rejects as an uninitialised register. cgroup ids are never 0.
    let mut found: u64 = 0;
    let mut enforced: u32 = 0;
    let mut level = 0;
    while level < limits::MAX_CGROUP_DEPTH {
        // SAFETY: plain helper call; returns 0 past the task's own level.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 {
            break;
        }
        // SAFETY: the values are only tested for presence.
        if unsafe { WATCHED.get(&id) }.is_some() {
            found = id;
            if unsafe { ENFORCED.get(&id) }.is_some() {
                enforced = 1;
            }
        }
        level += 1;
    }
    if found == 0 {
        None
    } else {
        Some(Guard {
            watched: found,
            enforced: enforced != 0,
        })
    }
}
