//! Enforcement: whether an exec in an enforced cgroup is forbidden, and the kernel's answer
//! (names and modes in `youwatch_common::enforce`).
//!
//! An exec is forbidden when one of its names is in `FORBIDDEN`: the executed file's own name
//! (`bprm->file`'s dentry: the target of a symlink, the interpreter of a `#!` script), the last
//! component of the exec'd path (`bprm->filename`: `sh` where `sh` links to busybox) and of
//! the `#!` interpreter (`bprm->interp`). Everything here reads the bprm only: the exec
//! program (after the exec) and the LSM program (before it) share it.

use aya_ebpf::{
    helpers::generated::{bpf_probe_read_kernel_str, bpf_send_signal},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use youwatch_common::{
    KernelOffsets,
    enforce::{MAX_NAMES, NAME_LEN, NameKey, PATH_WINDOWS, counter, mode, verdict},
    limits,
};

use crate::kernel::{read, read_ptr};

/// Enforced cgroup ids (each also in `WATCHED`). Value unused.
#[map]
pub static ENFORCED: HashMap<u64, u8> = HashMap::with_max_entries(limits::MAX_WATCHED, 0);

/// Forbidden names, NUL-padded. Value unused.
#[map]
pub static FORBIDDEN: HashMap<NameKey, u8> = HashMap::with_max_entries(MAX_NAMES, 0);

/// Entry 0: the mode in force (`youwatch_common::enforce::mode`), written by user space.
#[map]
pub static ENFORCE_MODE: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `youwatch_common::enforce::counter`.
#[map]
pub static ENFORCE_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Where path lengths are measured: only the helper's return value is used, never the bytes,
/// so a program preempted on the same CPU (LSM programs are preemptible) cannot mislead it.
#[map]
static PATH_SCRATCH: PerCpuArray<[u8; limits::FILENAME_LEN]> = PerCpuArray::with_max_entries(1, 0);

const SIGKILL: u32 = 9;

#[inline(always)]
pub fn mode() -> u32 {
    ENFORCE_MODE
        .get_ptr(0)
        // SAFETY: a valid map slot; volatile so every run reads what user space last wrote.
        .map_or(mode::OFF, |m| unsafe { core::ptr::read_volatile(m) })
}

/// Adds one to an enforcement counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = ENFORCE_COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot; both programs run with migration disabled.
        unsafe { *slot += 1 };
    }
}

/// The exec program's answer to an exec in an enforced cgroup, after the new image is in
/// place: its verdict bits (0: allowed, or enforcement off), the matched name in `key`.
///
/// SIGKILL is only acted on when the task returns to user space, so the new program never
/// runs an instruction, its dynamic loader neither.
#[inline(always)]
pub fn at_exec(off: &KernelOffsets, bprm: *const u8, key: &mut NameKey) -> u32 {
    let mode = mode();
    if mode == mode::OFF {
        return 0;
    }
    let by = forbidden(off, bprm, key);
    if by == 0 {
        return 0;
    }
    if mode == mode::MONITOR {
        count(counter::WOULD_STOP);
        return by | verdict::WOULD_STOP;
    }
    // KILL, or DENY with an exec the LSM program did not see (under way when it attached).
    // SAFETY: plain helper call; the signal goes to the current task (the new image).
    if unsafe { bpf_send_signal(SIGKILL) } == 0 {
        count(counter::KILLED);
        by | verdict::KILLED
    } else {
        count(counter::SIGNAL_FAILED);
        by | verdict::SIGNAL_FAILED
    }
}

/// Which of the exec's names is forbidden: a `verdict::BY_*` bit with the name in `key`,
/// or 0.
#[inline(always)]
pub fn forbidden(off: &KernelOffsets, bprm: *const u8, key: &mut NameKey) -> u32 {
    if file_name(off, bprm, key) && is_forbidden(key) {
        return verdict::BY_FILE;
    }
    let Ok(filename) = read_ptr(bprm, off.binprm_filename) else {
        return 0;
    };
    if last_component(filename, key) && is_forbidden(key) {
        return verdict::BY_PATH;
    }
    // For a binary, interp is the filename pointer itself.
    match read_ptr(bprm, off.binprm_interp) {
        Ok(interp) if interp != filename && last_component(interp, key) && is_forbidden(key) => {
            verdict::BY_INTERP
        }
        _ => 0,
    }
}

#[inline(always)]
fn is_forbidden(key: &NameKey) -> bool {
    // SAFETY: the value is only tested for presence.
    unsafe { FORBIDDEN.get(key) }.is_some()
}

/// `bprm->file->f_path.dentry->d_name` into `key`; false when it is too long to be a
/// forbidden name, or unreadable.
#[inline(always)]
fn file_name(off: &KernelOffsets, bprm: *const u8, key: &mut NameKey) -> bool {
    let Ok(file) = read_ptr(bprm, off.binprm_file) else {
        return false;
    };
    let Ok(dentry) = read_ptr(file, off.file_dentry) else {
        return false;
    };
    // d_parent, then d_name's hash_len (the length in the high half) and name.
    let Ok([_, hash_len, name]) = read::<[u64; 3]>(dentry, off.dentry_parent) else {
        return false;
    };
    let len = hash_len >> 32;
    if len == 0 || len >= NAME_LEN as u64 {
        return false;
    }
    copy_name(name as *const u8, len, key)
}

/// The last component of the NUL-terminated path at `path` into `key`; false when it is too
/// long to be a forbidden name, or unreadable.
///
/// Names are shorter than `NAME_LEN`, so only the path's last `NAME_LEN` bytes matter: its
/// length is measured with whole-window string reads (no byte loop), then its tail is read
/// and searched backwards for the last `/`.
#[inline(always)]
fn last_component(path: *const u8, key: &mut NameKey) -> bool {
    let Some(len) = path_len(path) else {
        return false;
    };
    let tail_at = if len > NAME_LEN as u64 {
        path as u64 + len - NAME_LEN as u64
    } else {
        path as u64
    };
    // Up to NAME_LEN bytes and the NUL.
    let mut tail = [0u8; NAME_LEN + 1];
    // SAFETY: the helper tolerates any address and writes at most the buffer's size.
    let got = unsafe {
        bpf_probe_read_kernel_str(
            tail.as_mut_ptr().cast(),
            tail.len() as u32,
            tail_at as *const _,
        )
    };
    if got <= 1 {
        return false;
    }
    let chars = (got - 1) as usize; // without the NUL
    let mut start = 0usize; // in the tail, of the last component
    let mut i = chars;
    while i > 0 {
        if tail[(i - 1) & (NAME_LEN - 1)] == b'/' {
            start = i;
            break;
        }
        i -= 1;
    }
    // No `/` in the tail: the whole path is the name if it fits, else the name is too long.
    if start == 0 && len > NAME_LEN as u64 - 1 {
        return false;
    }
    let name_len = (chars - start) as u64;
    if name_len == 0 || name_len >= NAME_LEN as u64 {
        return false;
    }
    copy_name((tail_at + start as u64) as *const u8, name_len, key)
}

/// Length of the kernel string at `path` (without its NUL), measured a window at a time;
/// `None` past `PATH_WINDOWS` windows or on a read error.
#[inline(always)]
fn path_len(path: *const u8) -> Option<u64> {
    let window = PATH_SCRATCH.get_ptr_mut(0)?;
    let mut len: u64 = 0;
    let mut w = 0;
    while w < PATH_WINDOWS {
        w += 1;
        // SAFETY: the helper tolerates any address and writes at most the window's size.
        let got = unsafe {
            bpf_probe_read_kernel_str(
                window.cast(),
                limits::FILENAME_LEN as u32,
                (path as u64 + len) as *const _,
            )
        };
        if got <= 0 {
            return None;
        }
        let chars = got as u64 - 1;
        len += chars;
        if chars < limits::FILENAME_LEN as u64 - 1 {
            return Some(len);
        }
    }
    None
}

/// The NUL-terminated name of `len` bytes (< NAME_LEN) at `name` into `key`, NUL-padded;
/// false unless exactly those bytes were read (a name renamed meanwhile never matches).
#[inline(always)]
fn copy_name(name: *const u8, len: u64, key: &mut NameKey) -> bool {
    *key = [0; NAME_LEN];
    // SAFETY: the helper tolerates any address and writes at most NAME_LEN bytes.
    let got =
        unsafe { bpf_probe_read_kernel_str(key.as_mut_ptr().cast(), NAME_LEN as u32, name.cast()) };
    got > 0 && got as u64 == len + 1
}
