//! Types and names shared by `youwatch-ebpf` (kernel) and `youwatch-agent` (user space).
//!
//! Everything here is `#[repr(C)]` and plain data: the kernel writes these bytes into the
//! ring buffer and user space reads them back with the same layout.
#![no_std]

/// Names of the maps and globals in the eBPF object. User space looks them up by name.
pub mod names {
    /// `HashMap<u64, u8>` of watched cgroup ids (pod-level cgroups, normally).
    pub const WATCHED_MAP: &str = "WATCHED";
    /// Ring buffer of [`crate::ExecEvent`].
    pub const EVENTS_MAP: &str = "EVENTS";
    /// `PerCpuArray<u64>` indexed by [`crate::counter`].
    pub const COUNTERS_MAP: &str = "COUNTERS";
    /// `Array<u32>` of one entry: 1 while the ring-buffer reader sleeps in poll(2) and wants a
    /// wake-up, 0 while it drains on its own schedule (see the exec program's `submit`).
    pub const READER_MAP: &str = "READER";
    /// The raw tracepoint program on `sched_process_exec`.
    pub const EXEC_PROGRAM: &str = "sched_process_exec";
    /// The tracepoint the exec program attaches to.
    pub const EXEC_TRACEPOINT: &str = "sched_process_exec";
    /// Read-only global holding a [`crate::KernelOffsets`], filled by user space from BTF.
    pub const OFFSETS_GLOBAL: &str = "OFFSETS";
}

/// Bounds of what one exec event carries.
pub mod limits {
    /// `TASK_COMM_LEN` in the kernel.
    pub const COMM_LEN: usize = 16;
    /// Bytes of the exec'd path (`linux_binprm.filename`), NUL included.
    pub const FILENAME_LEN: usize = 256;
    /// Bytes of the argument area (`mm->arg_start..arg_end`, NUL-separated). A power of two,
    /// so the kernel side can bound a read length with a mask the verifier understands.
    pub const ARGS_LEN: usize = 512;
    /// Arguments user space keeps from the argument area.
    pub const MAX_ARGS: usize = 16;
    /// Depth of cgroup ancestors the kernel checks against the watched map (root is level 0).
    pub const MAX_CGROUP_DEPTH: u32 = 32;
    /// Default size of the events ring buffer in bytes (a power of two, multiple of the page size):
    /// ~2,400 events of ~880 bytes, a quarter second of a 10,000 execs/s storm in guarded pods
    /// while the reader (draining every 200 µs when busy) is held off. Its pages count twice in
    /// the agent's RSS (the ring is mapped twice for wrap-around).
    pub const DEFAULT_RING_BYTES: u32 = 2 << 20;
    /// Capacity of the watched-cgroup map.
    pub const MAX_WATCHED: u32 = 16_384;
}

/// Indexes of the per-CPU counters in `COUNTERS`.
pub mod counter {
    /// Exec events that matched a watched cgroup (delivered or not).
    pub const MATCHED: u32 = 0;
    /// Matched events dropped because the ring buffer had no room.
    pub const RINGBUF_FULL: u32 = 1;
    /// Delivered events whose argument area was longer than [`crate::limits::ARGS_LEN`].
    pub const ARGS_TRUNCATED: u32 = 2;
    /// Delivered events whose filename filled [`crate::limits::FILENAME_LEN`].
    pub const FILENAME_TRUNCATED: u32 = 3;
    /// Delivered events where a kernel or user memory read failed (fields left empty).
    pub const READ_FAILED: u32 = 4;
    /// Number of counters.
    pub const COUNT: u32 = 5;
}

/// Bits of [`ExecEvent::flags`].
pub mod flags {
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    pub const FILENAME_TRUNCATED: u32 = 1 << 1;
    pub const ARGS_READ_FAILED: u32 = 1 << 2;
    pub const FILENAME_READ_FAILED: u32 = 1 << 3;
    pub const PARENT_READ_FAILED: u32 = 1 << 4;
    pub const TTY_READ_FAILED: u32 = 1 << 5;
}

/// Byte offsets of the kernel struct fields the exec program reads. Rust eBPF emits no CO-RE
/// relocations, so user space reads these from the running kernel's BTF and passes them in.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub signal_tty: u32,
    pub tty_index: u32,
    pub tty_driver: u32,
    pub driver_major: u32,
    pub driver_minor_start: u32,
    pub binprm_filename: u32,
    /// Non-zero once user space has filled the offsets; the program emits nothing before.
    pub ready: u32,
}

/// One successful exec in a watched cgroup subtree, as the kernel writes it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    /// `bpf_ktime_get_boot_ns()` at the tracepoint (CLOCK_BOOTTIME).
    pub ktime_ns: u64,
    /// cgroup v2 id of the task's own cgroup.
    pub cgroup_id: u64,
    /// The watched cgroup id that matched (the task's cgroup or its closest watched ancestor).
    pub watched_cgroup_id: u64,
    /// Thread id of the exec'ing task (equals `tgid` after a successful exec).
    pub pid: u32,
    pub tgid: u32,
    /// `real_parent->tgid`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Controlling tty as `new_encode_dev(MKDEV(major, minor_start) + index)`, the same value
    /// as field 7 of `/proc/<pid>/stat`; 0 when there is none.
    pub tty: u32,
    /// See [`flags`].
    pub flags: u32,
    /// Bytes valid in `args` (NUL-separated, not NUL-terminated if truncated).
    pub args_len: u32,
    pub comm: [u8; limits::COMM_LEN],
    pub parent_comm: [u8; limits::COMM_LEN],
    pub filename: [u8; limits::FILENAME_LEN],
    pub args: [u8; limits::ARGS_LEN],
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are #[repr(C)] plain integers and byte arrays; any bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ExecEvent {}
}
