//! Exec sensor: one event per successful exec whose cgroup, or one of its ancestors, is watched.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        bpf_probe_read_kernel_str_bytes,
        generated::{bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns},
    },
    macros::raw_tracepoint,
    maps::ring_buf::RingBufEntry,
    programs::RawTracePointContext,
};
use aya_log_ebpf::{debug, warn};
use youwatch_common::{
    ExecRecord, KernelOffsets, counter,
    enforce::{NAME_LEN, NameKey},
    flags, limits,
};

use crate::{
    cwd::fill_cwd,
    enforce, guard,
    kernel::{copy_user_area, encode_dev, read, read_bytes, read_ptr},
    maps::{EVENTS, READER, count, offsets},
    process::fill_process,
};

/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`
///
/// Fires after the new image is in place: `current` is `p`, its comm and mm are the new ones.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    try_sched_process_exec(&ctx);
    0
}

fn try_sched_process_exec(ctx: &RawTracePointContext) {
    let off = offsets();
    if off.ready == 0 {
        return;
    }
    let Some(guard) = guard::current() else {
        return;
    };
    count(counter::MATCHED);
    let task: *const u8 = ctx.arg(0);
    let bprm: *const u8 = ctx.arg(2);
    // Decided (and the signal sent) before the event is reserved: a full ring buffer must
    // not let a forbidden exec run.
    let mut matched: NameKey = [0; NAME_LEN];
    let verdict = if guard.enforced {
        enforce::at_exec(&off, bprm, &mut matched)
    } else {
        0
    };
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        count(counter::RINGBUF_FULL);
        warn!(ctx, "ring buffer full: the exec of pid {} is lost", ctx.tgid());
        return;
    };
    // SAFETY: the reservation is exactly one ExecRecord, exclusively ours until submit.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    let failed = fill(ev, &off, task, bprm, guard.watched, Areas::User);
    if failed != 0 {
        warn!(ctx, "exec of pid {}: kernel reads failed (flags {:x})", ev.tgid, failed);
    }
    debug!(
        ctx,
        "exec of pid {} in watched cgroup {} (enforce {:x})", ev.tgid, guard.watched, verdict
    );
    ev.enforce = verdict;
    ev.matched = matched;
    submit(entry);
}

/// Commits the event and wakes the reader only if it sleeps in poll(2).
///
/// A ring-buffer wake-up costs the exec'ing task an irq_work self-interrupt (~10 µs on a VM,
/// against ~3 µs for the rest of the program), even when no reader waits. While exec events
/// flow the reader drains on a short timer instead, so most events need no wake-up at all.
///
/// Ordering (no lost wake-up): the commit is a full barrier, then the flag is read. The reader
/// sets the flag, fences, then polls, and poll sees any record reserved before that. So either
/// this program sees the flag, or the reader's poll sees this record.
#[inline(always)]
pub fn submit(entry: RingBufEntry<ExecRecord>) {
    entry.submit(BPF_RB_NO_WAKEUP as u64);
    let waiting = READER
        .get_ptr(0)
        // SAFETY: a valid map slot; volatile so the read stays after the commit.
        .is_some_and(|flag| unsafe { core::ptr::read_volatile(flag) } != 0);
    if waiting {
        // A discarded record is skipped by the reader but still rings the bell.
        if let Some(bell) = EVENTS.reserve::<u64>(0) {
            bell.discard(BPF_RB_FORCE_WAKEUP as u64);
        }
    }
}

/// Whether the event's argument and environment areas can be read from the current task's
/// memory: after the exec (its own), not before (the LSM hook: still the caller's).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Areas {
    User,
    NotYet,
}

/// Fills the record; returns the flags of the kernel reads that failed (0: none).
#[inline(always)]
pub fn fill(
    ev: &mut ExecRecord,
    off: &KernelOffsets,
    task: *const u8,
    bprm: *const u8,
    watched: u64,
    areas: Areas,
) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: plain helper calls.
    unsafe {
        ev.ktime_ns = bpf_ktime_get_boot_ns();
        ev.cgroup_id = bpf_get_current_cgroup_id();
    }
    ev.watched_cgroup_id = watched;
    ev.pid = pid_tgid as u32;
    ev.tgid = (pid_tgid >> 32) as u32;
    ev.uid = uid_gid as u32;
    ev.gid = (uid_gid >> 32) as u32;
    ev.flags = 0;
    // First: the walk is a loop, which the verifier checks once per distinct state it is
    // entered with; here there is one (flags set further on would make one per combination).
    // It also precedes the environment's copy, as its masked writes may reach `env`.
    fill_cwd(ev, off, task);
    ev.comm = bpf_get_current_comm().unwrap_or([0; limits::COMM_LEN]);

    fill_parent(ev, off, task);
    ev.tty = match tty_nr(off, task) {
        Ok(tty) => tty,
        Err(_) => {
            ev.flags |= flags::TTY_READ_FAILED;
            0
        }
    };
    fill_filename(ev, off, bprm);
    if areas == Areas::User {
        fill_user_areas(ev, off, task);
    } else {
        ev.args_len = 0;
        ev.env_len = 0;
    }
    fill_process(ev, off, task);
    let failed = flags::ARGS_READ_FAILED
        | flags::FILENAME_READ_FAILED
        | flags::PARENT_READ_FAILED
        | flags::ENV_READ_FAILED
        | flags::CWD_READ_FAILED
        | flags::EXE_READ_FAILED
        | flags::PIDNS_READ_FAILED
        | flags::CAPS_READ_FAILED;
    let failed = ev.flags & failed;
    if failed != 0 {
        count(counter::READ_FAILED);
    }
    failed
}

#[inline(always)]
fn fill_parent(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) {
    ev.ppid = 0;
    ev.parent_comm = [0; limits::COMM_LEN];
    let ok = read_ptr(task, off.task_real_parent).and_then(|parent| {
        ev.ppid = read::<i32>(parent, off.task_tgid)? as u32;
        read_bytes(parent, off.task_comm, &mut ev.parent_comm)
    });
    if ok.is_err() {
        ev.flags |= flags::PARENT_READ_FAILED;
    }
}

/// `task->signal->tty`, encoded as `/proc/<pid>/stat` does; 0 without a controlling tty.
#[inline(always)]
fn tty_nr(off: &KernelOffsets, task: *const u8) -> Result<u32, i32> {
    let signal = read_ptr(task, off.task_signal)?;
    let tty = read_ptr(signal, off.signal_tty)?;
    if tty.is_null() {
        return Ok(0);
    }
    let index = read::<i32>(tty, off.tty_index)? as u32;
    let driver = read_ptr(tty, off.tty_driver)?;
    let major = read::<i32>(driver, off.driver_major)? as u32;
    let minor_start = read::<i32>(driver, off.driver_minor_start)? as u32;
    Ok(encode_dev(major, minor_start.wrapping_add(index)))
}

#[inline(always)]
fn fill_filename(ev: &mut ExecRecord, off: &KernelOffsets, bprm: *const u8) {
    let name = match read_ptr(bprm, off.binprm_filename) {
        Ok(p) if !p.is_null() => p,
        _ => {
            ev.filename[0] = 0;
            ev.flags |= flags::FILENAME_READ_FAILED;
            return;
        }
    };
    // SAFETY: bpf_probe_read_kernel_str tolerates any address.
    match unsafe { bpf_probe_read_kernel_str_bytes(name, &mut ev.filename) } {
        Ok(s) => {
            if s.len() >= limits::FILENAME_LEN - 1 {
                ev.flags |= flags::FILENAME_TRUNCATED;
                count(counter::FILENAME_TRUNCATED);
            }
        }
        Err(_) => {
            ev.filename[0] = 0;
            ev.flags |= flags::FILENAME_READ_FAILED;
        }
    }
}

/// Copies the new image's argument area and environment (`mm->arg_start..arg_end`,
/// `mm->env_start..env_end`, NUL-separated).
#[inline(always)]
fn fill_user_areas(ev: &mut ExecRecord, off: &KernelOffsets, task: *const u8) {
    ev.args_len = 0;
    ev.env_len = 0;
    let bounds = read_ptr(task, off.task_mm).and_then(|mm| read::<[u64; 4]>(mm, off.mm_arg_start));
    let Ok([arg_start, arg_end, env_start, env_end]) = bounds else {
        ev.flags |= flags::ARGS_READ_FAILED | flags::ENV_READ_FAILED;
        return;
    };
    let args = copy_user_area(arg_start, arg_end, &mut ev.args);
    ev.args_len = area_outcome(ev, args, flags::ARGS_TRUNCATED, flags::ARGS_READ_FAILED);
    if ev.flags & flags::ARGS_TRUNCATED != 0 {
        count(counter::ARGS_TRUNCATED);
    }
    let env = copy_user_area(env_start, env_end, &mut ev.env);
    ev.env_len = area_outcome(ev, env, flags::ENV_TRUNCATED, flags::ENV_READ_FAILED);
    if ev.flags & flags::ENV_TRUNCATED != 0 {
        count(counter::ENV_TRUNCATED);
    }
}

/// The bytes a copy kept (0 on failure), flagging a cut or a failure.
#[inline(always)]
fn area_outcome(
    ev: &mut ExecRecord,
    copied: Result<(u32, bool), i32>,
    cut: u32,
    failed: u32,
) -> u32 {
    match copied {
        Ok((len, truncated)) => {
            if truncated {
                ev.flags |= cut;
            }
            len
        }
        Err(_) => {
            ev.flags |= failed;
            0
        }
    }
}
