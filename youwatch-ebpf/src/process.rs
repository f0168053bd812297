//! What the new image runs as: pid-namespace ids, audit login uid, capabilities, and where its
//! executable lives (overlayfs layer, memfd). Read the way Falco's modern driver reads them at
//! `sched_process_exec`.

use youwatch_common::{ExecRecord, KernelOffsets, MEMFD_PREFIX, OVERLAYFS_SUPER_MAGIC, flags};

use crate::kernel::{read, read_ptr};

#[inline(always)]
pub fn fill_process(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) {
    if pid_ns_ids(ev, off, task).is_err() {
        ev.flags |= flags::PIDNS_READ_FAILED;
    }
    ev.loginuid = if off.task_loginuid == 0 {
        u32::MAX
    } else {
        read::<u32>(task, off.task_loginuid).unwrap_or(u32::MAX)
    };
    if capabilities(ev, off, task).is_err() {
        ev.flags |= flags::CAPS_READ_FAILED;
    }
    match exe_flags(off, task) {
        Ok(bits) => ev.flags |= bits,
        Err(_) => ev.flags |= flags::EXE_READ_FAILED,
    }
}

/// `vpid` and `vpgid` as seen from the task's own (active) pid namespace: `task_tgid_vnr`
/// and `task_pgrp_vnr`. After exec the task leads its thread group, so its pid is its tgid.
#[inline(always)]
fn pid_ns_ids(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) -> Result<(), i32> {
    ev.vpid = 0;
    ev.vpgid = 0;
    let pid = read_ptr(task, off.task_thread_pid)?;
    let level = read::<u32>(pid, off.pid_level)?;
    let (nr, ns) = upid(pid, off, level)?;
    ev.vpid = nr;
    let signal = read_ptr(task, off.task_signal)?;
    let pgrp = read_ptr(signal, off.signal_pgrp)?;
    // pid_nr_ns(): a group created in an ancestor namespace has no number in this one.
    if !pgrp.is_null() && read::<u32>(pgrp, off.pid_level)? >= level {
        let (nr, theirs) = upid(pgrp, off, level)?;
        if theirs == ns {
            ev.vpgid = nr;
        }
    }
    Ok(())
}

/// `pid->numbers[level]`: the number and its namespace.
#[inline(always)]
fn upid(pid: *const u8, off: &KernelOffsets, level: u32) -> Result<(u32, u64), i32> {
    let at =
        off.pid_numbers as usize + level as usize * off.upid_size as usize + off.upid_nr as usize;
    let [nr, ns] = read::<[u64; 2]>(pid.wrapping_add(at), 0)?;
    Ok((nr as u32, ns))
}

/// `kernel_cap_t` is 64 bits (`u32[2]` before 6.3, little-endian; `u64` since): user space
/// checks its size in BTF.
#[inline(always)]
fn capabilities(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) -> Result<(), i32> {
    ev.cap_inheritable = 0;
    ev.cap_permitted = 0;
    ev.cap_effective = 0;
    let cred = read_ptr(task, off.task_cred)?;
    [ev.cap_inheritable, ev.cap_permitted, ev.cap_effective] =
        read::<[u64; 3]>(cred, off.cred_caps)?;
    Ok(())
}

/// `mm->exe_file`: on an overlayfs upper or lower layer, or a memfd.
#[inline(always)]
fn exe_flags(off: &KernelOffsets, task: *const u8) -> Result<u32, i32> {
    let mm = read_ptr(task, off.task_mm)?;
    let file = read_ptr(mm, off.mm_exe_file)?;
    let dentry = read_ptr(file, off.file_dentry)?;
    let mut bits = 0;
    // memfd_create files are pseudo dentries (their own parent) named "memfd:<name>".
    let [parent, _, name] = read::<[u64; 3]>(dentry, off.dentry_parent)?;
    if parent as *const u8 == dentry && read::<[u8; 6]>(name as *const u8, 0)? == *MEMFD_PREFIX {
        bits |= flags::EXE_FROM_MEMFD;
    }
    let sb = read_ptr(dentry, off.dentry_sb)?;
    if read::<u64>(sb, off.sb_magic)? == OVERLAYFS_SUPER_MAGIC {
        // An overlay inode has an upper dentry once the file exists in the upper layer
        // (written in the container, or copied up); a positive one means upper.
        let inode = read_ptr(dentry, off.dentry_inode)?;
        let upper = read_ptr(inode, off.ovl_upperdentry)?;
        let upper_inode = if upper.is_null() {
            core::ptr::null()
        } else {
            read_ptr(upper, off.dentry_inode)?
        };
        let upper_ino = if upper_inode.is_null() {
            0
        } else {
            read::<u64>(upper_inode, off.inode_ino)?
        };
        bits |= if upper_ino != 0 {
            flags::EXE_UPPER_LAYER
        } else {
            flags::EXE_LOWER_LAYER
        };
    }
    Ok(bits)
}
