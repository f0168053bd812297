//! BPF LSM program on `bprm_check_security`: a forbidden exec in an enforced cgroup fails with
//! EPERM before anything of it runs. User space loads it only where the kernel allows BPF LSM
//! programs, and otherwise relies on the exec program's SIGKILL.
//!
//! The hook runs once per binary format round: for a `#!` script, with the script, then with
//! its interpreter (`bprm->interp` set, `bprm->file` the interpreter's).

use aya_ebpf::{helpers::generated::bpf_get_current_task, macros::lsm, programs::LsmContext};
use youwatch_common::{
    ExecRecord, counter,
    enforce::{self, NAME_LEN, NameKey, verdict},
    flags,
};

use crate::{
    enforce::{count, forbidden, mode},
    exec::{Areas, fill, submit},
    guard,
    maps::{self, EVENTS, offsets},
};

const EPERM: i32 = 1;

/// `LSM_HOOK(int, 0, bprm_check_security, struct linux_binprm *bprm)`, then the previous
/// program's return value.
#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 {
        return previous;
    }
    if check(&ctx) { -EPERM } else { 0 }
}

/// True when the exec must be denied.
#[inline(always)]
fn check(ctx: &LsmContext) -> bool {
    let off = offsets();
    if off.ready == 0 || mode() != enforce::mode::DENY {
        return false;
    }
    let Some(guard) = guard::current() else {
        return false;
    };
    if !guard.enforced {
        return false;
    }
    let bprm: *const u8 = ctx.arg(0);
    let mut matched: NameKey = [0; NAME_LEN];
    let by = forbidden(&off, bprm, &mut matched);
    if by == 0 {
        return false;
    }
    count(enforce::counter::DENIED);
    // The exec never reaches sched_process_exec: report it from here.
    maps::count(counter::MATCHED);
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        maps::count(counter::RINGBUF_FULL);
        return true;
    };
    // SAFETY: plain helper call; the current task is the one exec'ing.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: the reservation is exactly one ExecRecord, exclusively ours until submit.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill(ev, &off, task, bprm, guard.watched, Areas::NotYet);
    // Still the caller's image: its executable says nothing about the denied one.
    ev.flags &= !(flags::EXE_UPPER_LAYER | flags::EXE_LOWER_LAYER | flags::EXE_FROM_MEMFD);
    ev.flags |= flags::EXE_READ_FAILED;
    ev.enforce = by | verdict::DENIED;
    ev.matched = matched;
    submit(entry);
    true
}
