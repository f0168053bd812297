//! In-kernel enforcement: what the exec programs and user space share to stop a forbidden exec
//! in an enforced cgroup (names, modes, verdict bits, counters).
//!
//! An exec is forbidden when one of its names is in the `FORBIDDEN` map: the executed file's
//! own name (`bprm->file`'s dentry, so a symlink named otherwise still counts as its target),
//! the last component of the exec'd path (`bprm->filename`: `sh` for a busybox applet link) or
//! of the `#!` interpreter (`bprm->interp`).

/// Names of the enforcement maps and programs in the eBPF object.
pub mod names {
    /// `HashMap<u64, u8>`: cgroups whose subtree is enforced. The kernel looks a cgroup up only
    /// once it matched `WATCHED`, so an enforced cgroup must be watched too.
    pub const ENFORCED_MAP: &str = "ENFORCED";
    /// `HashMap<NameKey, u8>`: the forbidden names.
    pub const FORBIDDEN_MAP: &str = "FORBIDDEN";
    /// `Array<u32>` of one entry: the [`super::mode`] in force.
    pub const MODE_MAP: &str = "ENFORCE_MODE";
    /// `PerCpuArray<u64>` indexed by [`super::counter`].
    pub const COUNTERS_MAP: &str = "ENFORCE_COUNTERS";
    /// The BPF LSM program on `bprm_check_security`.
    pub const LSM_PROGRAM: &str = "bprm_check_security";
    /// The LSM hook it attaches to.
    pub const LSM_HOOK: &str = "bprm_check_security";
}

/// Values of `ENFORCE_MODE[0]`.
pub mod mode {
    /// Nothing is stopped or flagged.
    pub const OFF: u32 = 0;
    /// Forbidden execs run and are flagged [`super::verdict::WOULD_STOP`].
    pub const MONITOR: u32 = 1;
    /// `sched_process_exec` sends SIGKILL to a forbidden exec before its first instruction.
    pub const KILL: u32 = 2;
    /// The LSM program denies a forbidden exec (-EPERM); `sched_process_exec` still kills one
    /// that got past it (an exec already under way when the program attached).
    pub const DENY: u32 = 3;
}

/// Bits of `ExecRecord::enforce`.
pub mod verdict {
    /// Killed with SIGKILL at `sched_process_exec`.
    pub const KILLED: u32 = 1 << 0;
    /// Denied by the LSM program: the exec failed with EPERM, nothing of it ran.
    pub const DENIED: u32 = 1 << 1;
    /// Monitor mode: forbidden, left running.
    pub const WOULD_STOP: u32 = 1 << 2;
    /// Forbidden, but `bpf_send_signal` failed: it runs.
    pub const SIGNAL_FAILED: u32 = 1 << 3;
    /// Which name matched: the executed file's own name...
    pub const BY_FILE: u32 = 1 << 8;
    /// ... the exec'd path's last component ...
    pub const BY_PATH: u32 = 1 << 9;
    /// ... or the `#!` interpreter's.
    pub const BY_INTERP: u32 = 1 << 10;
    /// The outcome bits.
    pub const OUTCOME: u32 = KILLED | DENIED | WOULD_STOP | SIGNAL_FAILED;
}

/// Indexes of the per-CPU counters in `ENFORCE_COUNTERS`.
pub mod counter {
    pub const KILLED: u32 = 0;
    pub const DENIED: u32 = 1;
    pub const WOULD_STOP: u32 = 2;
    pub const SIGNAL_FAILED: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Bytes of a name key, NUL-padded. Names are at most `NAME_LEN - 1` bytes.
pub const NAME_LEN: usize = 32;
/// A forbidden name as the kernel compares it: the bytes, then NULs.
pub type NameKey = [u8; NAME_LEN];
/// Capacity of the forbidden-name map.
pub const MAX_NAMES: u32 = 256;
/// Windows of `FILENAME_LEN - 1` bytes scanned for a path's last component: `PATH_MAX` (4096)
/// fits in 17.
pub const PATH_WINDOWS: u32 = 17;
