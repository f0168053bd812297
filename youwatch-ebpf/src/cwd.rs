//! The working directory of the exec'ing task, as `d_path` would print it from the task's own
//! root: `task->fs->pwd` walked up dentry by dentry, crossing mounts, to `task->fs->root`.
//!
//! `bpf_d_path` is not allowed in a raw tracepoint and Falco's own drivers leave the exec
//! event's cwd empty (it follows `chdir` instead), so the walk is done here, bounded by
//! `CWD_DEPTH` steps and `CWD_LEN` bytes. The path is built backwards from its last component
//! at the end of the event's `cwd` area; user space reads the `cwd_len` bytes that end it.

use core::hint::black_box;

use aya_ebpf::helpers::generated::bpf_probe_read_kernel;
use youwatch_common::{ExecRecord, KernelOffsets, counter, flags, limits};

use crate::{
    kernel::{read, read_ptr},
    maps::count,
};

const MASK: usize = limits::CWD_LEN - 1;

#[inline(always)]
pub fn fill_cwd(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) {
    match walk(ev, off, task) {
        Ok(true) => {}
        Ok(false) => {
            ev.flags |= flags::CWD_TRUNCATED;
            count(counter::CWD_TRUNCATED);
        }
        Err(()) => {
            ev.cwd_len = 0;
            ev.flags |= flags::CWD_READ_FAILED;
        }
    }
}

/// Prepends each component to the event's `cwd` area, keeping its length in `cwd_len`.
/// Returns whether the path is complete (false: the leading components did not fit).
///
/// The length lives in the event, not in a register, and is read back at each step: the
/// verifier does not track ring-buffer memory, so every step starts from the same state and
/// the walk verifies in time linear in its depth (a length in a register differs by path,
/// which multiplies the states per step). For the same reason the exits return only this
/// flag: the rest of the program is checked once, not once per exit.
#[inline(always)]
fn walk(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) -> Result<bool, ()> {
    // Writes go through a pointer to the whole event: see the masks below.
    let event = (ev as *mut ExecRecord).cast::<u8>();
    let area = event.wrapping_add(core::mem::offset_of!(ExecRecord, cwd));
    let cwd_len = event
        .wrapping_add(core::mem::offset_of!(ExecRecord, cwd_len))
        .cast::<u32>();
    // SAFETY: a field of the event.
    unsafe { cwd_len.write_volatile(0) };
    let fs = read_ptr(task, off.task_fs).map_err(drop)?;
    let [root_mnt, root_dentry] = read::<[u64; 2]>(fs, off.fs_root + off.path_mnt).map_err(drop)?;
    let [mnt, dentry] = read::<[u64; 2]>(fs, off.fs_pwd + off.path_mnt).map_err(drop)?;
    let (mut mnt, mut dentry) = (mnt as *const u8, dentry as *const u8);
    let mut mnt_root = read_ptr(mnt, off.vfsmount_root).map_err(drop)?;
    let mut step = 0;
    while step < limits::CWD_DEPTH {
        step += 1;
        if dentry as u64 == root_dentry && mnt as u64 == root_mnt {
            return Ok(true);
        }
        if dentry == mnt_root {
            // The top of this mount: go on from its mount point in the parent mount.
            let mount = mnt.wrapping_sub(off.mount_mnt as usize);
            let parent = read_ptr(mount, off.mount_parent).map_err(drop)?;
            if parent == mount {
                // The namespace's root mount: the task's root is not above the cwd.
                return Ok(true);
            }
            dentry = read_ptr(mount, off.mount_mountpoint).map_err(drop)?;
            mnt = parent.wrapping_add(off.mount_mnt as usize);
            mnt_root = read_ptr(mnt, off.vfsmount_root).map_err(drop)?;
            continue;
        }
        // d_parent, then d_name's hash_len (length in the high half) and name.
        let [parent, hash_len, name] = read::<[u64; 3]>(dentry, off.dentry_parent).map_err(drop)?;
        let (parent, name) = (parent as *const u8, name as *const u8);
        if parent == dentry {
            return Ok(true); // a filesystem root with no mount above it
        }
        let len = (hash_len >> 32) as usize;
        // SAFETY: a field of the event.
        let used = unsafe { cwd_len.read_volatile() } as usize;
        if used + len + 1 > limits::CWD_LEN {
            return Ok(false);
        }
        // The path so far is cwd[CWD_LEN - used..]; this component goes just before it.
        let start = limits::CWD_LEN - used - len - 1;
        // SAFETY: start + 1 + len <= CWD_LEN, checked above. The masks restate it in a form
        // the verifier can check: it does not relate start and len, so it allows a reach of
        // up to 2 * CWD_LEN from `cwd`, which stays inside the event (`env` follows `cwd`).
        // black_box keeps LLVM from dropping a mask it can prove redundant.
        let slash = black_box(start) & MASK;
        let at = black_box(start + 1) & MASK;
        let size = black_box(len) & MASK;
        let ret = unsafe {
            *area.wrapping_add(slash) = b'/';
            bpf_probe_read_kernel(area.wrapping_add(at).cast(), size as u32, name.cast())
        };
        if ret != 0 {
            return Err(());
        }
        // SAFETY: a field of the event.
        unsafe { cwd_len.write_volatile((used + len + 1) as u32) };
        dentry = parent;
    }
    Ok(false)
}
