//! The working directory of the exec'ing task, as `d_path` would print it from the task's own
//! root: `task->fs->pwd` walked up dentry by dentry, crossing mounts, to `task->fs->root`.
//!
//! `bpf_d_path` is not allowed in a raw tracepoint and Falco's own drivers leave the exec
//! event's cwd empty (it follows `chdir` instead), so the walk is done here, bounded by
//! `CWD_DEPTH` steps and `CWD_LEN` bytes. The path is built backwards from its last component
//! at the end of the event's `cwd` area; user space reads the `cwd_len` bytes that end it.

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use youwatch_common::{ExecEvent, KernelOffsets, counter, flags, limits};

use crate::{
    kernel::{read, read_ptr},
    maps::count,
};

const MASK: usize = limits::CWD_LEN - 1;

#[inline(always)]
pub fn fill_cwd(ev: &mut ExecEvent, off: &KernelOffsets, task: *const u8) {
    let (len, complete) = match walk(ev, off, task) {
        Ok(walked) => walked,
        Err(_) => {
            ev.flags |= flags::CWD_READ_FAILED;
            (0, true)
        }
    };
    ev.cwd_len = len;
    if !complete {
        ev.flags |= flags::CWD_TRUNCATED;
        count(counter::CWD_TRUNCATED);
    }
}

/// Prepends each component to the event's `cwd` area. Returns the path's length and whether
/// it is complete (false: the leading components did not fit).
#[inline(always)]
fn walk(ev: &mut ExecEvent, off: &KernelOffsets, task: *const u8) -> Result<(u32, bool), i32> {
    let fs = read_ptr(task, off.task_fs)?;
    let root_mnt = read_ptr(fs, off.fs_root + off.path_mnt)?;
    let root_dentry = read_ptr(fs, off.fs_root + off.path_dentry)?;
    let mut mnt = read_ptr(fs, off.fs_pwd + off.path_mnt)?;
    let mut dentry = read_ptr(fs, off.fs_pwd + off.path_dentry)?;
    // Writes go through a pointer to the whole event: see the masks below.
    let area = (ev as *mut ExecEvent)
        .cast::<u8>()
        .wrapping_add(core::mem::offset_of!(ExecEvent, cwd));
    // The path so far is cwd[start..CWD_LEN].
    let mut start = limits::CWD_LEN;
    let len_of = |start: usize| (limits::CWD_LEN - start) as u32;
    let mut step = 0;
    while step < limits::CWD_DEPTH {
        step += 1;
        if dentry == root_dentry && mnt == root_mnt {
            return Ok((len_of(start), true));
        }
        if dentry == read_ptr(mnt, off.vfsmount_root)? {
            // The top of this mount: go on from its mount point in the parent mount.
            let mount = mnt.wrapping_sub(off.mount_mnt as usize);
            let parent = read_ptr(mount, off.mount_parent)?;
            if parent == mount {
                // The namespace's root mount: the task's root is not above the cwd.
                return Ok((len_of(start), true));
            }
            dentry = read_ptr(mount, off.mount_mountpoint)?;
            mnt = parent.wrapping_add(off.mount_mnt as usize);
            continue;
        }
        let parent = read_ptr(dentry, off.dentry_parent)?;
        if parent == dentry {
            return Ok((len_of(start), true)); // a filesystem root with no mount above it
        }
        let len = read::<u32>(dentry, off.dentry_name_len)? as usize;
        let name = read_ptr(dentry, off.dentry_name_ptr)?;
        if len + 1 > start {
            return Ok((len_of(start), false));
        }
        start -= len + 1;
        // SAFETY: start + 1 + len <= CWD_LEN, checked above. The masks restate it in a form
        // the verifier can check: it does not relate start and len, so it allows a reach of
        // up to 2 * CWD_LEN from `cwd`, which stays inside the event (`env` follows `cwd`).
        let ret = unsafe {
            *area.wrapping_add(start & MASK) = b'/';
            bpf_probe_read_kernel(
                area.wrapping_add((start + 1) & MASK).cast(),
                (len & MASK) as u32,
                name.cast(),
            )
        };
        if ret != 0 {
            return Err(ret as i32);
        }
        dentry = parent;
    }
    Ok((len_of(start), false))
}
