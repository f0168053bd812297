//! Types and names shared by `youwatch-ebpf` (kernel) and `youwatch-agent` (user space).
//!
//! Everything here is `#[repr(C)]` and plain data: the kernel writes these bytes into the
//! ring buffer and user space reads them back with the same layout.
#![no_std]

pub mod enforce;
pub mod netban;

/// Names of the maps and globals in the eBPF object. User space looks them up by name.
pub mod names {
    /// `HashMap<u64, u8>` of watched cgroup ids (pod-level cgroups, normally).
    pub const WATCHED_MAP: &str = "WATCHED";
    /// Ring buffer of [`crate::ExecRecord`].
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
    /// Bytes of the environment area (`mm->env_start..env_end`, NUL-separated). A power of
    /// two, for the same reason as [`ARGS_LEN`]. Falco's driver keeps 4096; a pod's
    /// environment (image variables, `KUBERNETES_*` and the service links of its namespace) is
    /// typically 0.5–2 KiB, so 2048 holds it whole while keeping the event at ~3.2 KiB.
    pub const ENV_LEN: usize = 2048;
    /// Variables user space keeps from the environment area.
    pub const MAX_ENV: usize = 128;
    /// Bytes of the working-directory path, built from its last component backwards. A power
    /// of two (the kernel bounds each write with a mask).
    pub const CWD_LEN: usize = 256;
    /// Dentries and mount crossings walked from the working directory towards the task's
    /// root; a deeper path is reported as truncated.
    pub const CWD_DEPTH: u32 = 32;
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
    /// Delivered events whose environment was longer than [`crate::limits::ENV_LEN`].
    pub const ENV_TRUNCATED: u32 = 5;
    /// Delivered events whose working directory did not fit [`crate::limits::CWD_LEN`] or
    /// [`crate::limits::CWD_DEPTH`].
    pub const CWD_TRUNCATED: u32 = 6;
    /// Number of counters.
    pub const COUNT: u32 = 7;
}

/// Bits of [`ExecRecord::flags`].
pub mod flags {
    pub const ARGS_TRUNCATED: u32 = 1 << 0;
    pub const FILENAME_TRUNCATED: u32 = 1 << 1;
    pub const ARGS_READ_FAILED: u32 = 1 << 2;
    pub const FILENAME_READ_FAILED: u32 = 1 << 3;
    pub const PARENT_READ_FAILED: u32 = 1 << 4;
    pub const TTY_READ_FAILED: u32 = 1 << 5;
    pub const ENV_TRUNCATED: u32 = 1 << 6;
    pub const ENV_READ_FAILED: u32 = 1 << 7;
    pub const CWD_TRUNCATED: u32 = 1 << 8;
    pub const CWD_READ_FAILED: u32 = 1 << 9;
    /// The executable is on an overlayfs mount and its inode has an upper-layer dentry
    /// (written or copied up in the container), as Falco's `proc.is_exe_upper_layer`.
    pub const EXE_UPPER_LAYER: u32 = 1 << 10;
    /// The executable is on an overlayfs mount, lower layer only (from the image).
    pub const EXE_LOWER_LAYER: u32 = 1 << 11;
    /// The executable is a `memfd_create` file (executed through its descriptor).
    pub const EXE_FROM_MEMFD: u32 = 1 << 12;
    pub const EXE_READ_FAILED: u32 = 1 << 13;
    /// `vpid`/`vpgid` could not be read.
    pub const PIDNS_READ_FAILED: u32 = 1 << 14;
    /// The capability sets could not be read.
    pub const CAPS_READ_FAILED: u32 = 1 << 15;
}

/// `OVERLAYFS_SUPER_MAGIC` (`include/uapi/linux/magic.h`): part of the kernel ABI, not a layout.
pub const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;
/// Name prefix the kernel gives `memfd_create` files (`mm/memfd.c`).
pub const MEMFD_PREFIX: &[u8; 6] = b"memfd:";

/// Byte offsets of the kernel struct fields the exec program reads. Rust eBPF emits no CO-RE
/// relocations, so user space reads these from the running kernel's BTF and passes them in.
///
/// Fields that sit next to each other are read in one go (each read is a helper call): the
/// offsets documented as "then ..." start such a run, which user space checks in BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_real_parent: u32,
    pub task_tgid: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub task_signal: u32,
    /// `arg_start`, then `arg_end`, `env_start`, `env_end`: four consecutive u64.
    pub mm_arg_start: u32,
    pub signal_tty: u32,
    pub tty_index: u32,
    pub tty_driver: u32,
    pub driver_major: u32,
    pub driver_minor_start: u32,
    pub binprm_filename: u32,
    /// `linux_binprm.file` (the file being run: the interpreter's, once `#!` is resolved)
    /// and `linux_binprm.interp` (the `#!` interpreter's path; the same pointer as
    /// `filename` for a binary): the names enforcement compares.
    pub binprm_file: u32,
    pub binprm_interp: u32,
    // Process state of the new image (pid namespace, credentials, environment).
    pub task_thread_pid: u32,
    pub task_cred: u32,
    /// `task_struct.loginuid`; 0 when the kernel has no audit support (loginuid unknown).
    pub task_loginuid: u32,
    /// `signal_struct.pids[PIDTYPE_PGID]`: the process group's `struct pid *`.
    pub signal_pgrp: u32,
    pub pid_level: u32,
    pub pid_numbers: u32,
    /// `sizeof(struct upid)`, the stride of `pid.numbers[]`.
    pub upid_size: u32,
    /// `upid.nr` (an int, in the low half of a u64), then `upid.ns` 8 bytes on.
    pub upid_nr: u32,
    /// `cred.cap_inheritable`, then `cap_permitted`, `cap_effective` (u64 each).
    pub cred_caps: u32,
    // Working directory: `task->fs->pwd` walked up to `task->fs->root`.
    pub task_fs: u32,
    pub fs_root: u32,
    pub fs_pwd: u32,
    /// `path.mnt`, then `path.dentry`.
    pub path_mnt: u32,
    /// `dentry.d_parent`, then `d_name`: its `hash_len` (the length in the high half) and
    /// `name`.
    pub dentry_parent: u32,
    /// `struct vfsmount` inside `struct mount` (`real_mount()` subtracts it).
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub vfsmount_root: u32,
    // Executable file: overlayfs layer and memfd.
    pub mm_exe_file: u32,
    /// `file.f_path.dentry`.
    pub file_dentry: u32,
    pub dentry_inode: u32,
    pub dentry_sb: u32,
    pub sb_magic: u32,
    pub inode_ino: u32,
    /// From an overlayfs inode (`&ovl_inode.vfs_inode`) to `ovl_inode.__upperdentry`.
    pub ovl_upperdentry: u32,
    /// Non-zero once user space has filled the offsets; the program emits nothing before.
    pub ready: u32,
}

/// One successful exec in a watched cgroup subtree, as the kernel writes it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecRecord {
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
    /// The process's pid (tgid) in its own pid namespace (`proc.vpid`).
    pub vpid: u32,
    /// Its process group id in that namespace; 0 when the group's leader is outside it.
    pub vpgid: u32,
    /// Audit login uid (`/proc/<pid>/loginuid`); `u32::MAX` when unset or unknown.
    pub loginuid: u32,
    /// Bytes valid in `env` (NUL-separated, not NUL-terminated if truncated).
    pub env_len: u32,
    /// Bytes of the working directory path, which ends `cwd` (`cwd[CWD_LEN - cwd_len..]`).
    pub cwd_len: u32,
    /// Enforcement verdict bits ([`enforce::verdict`]); 0 when the exec was not forbidden.
    pub enforce: u32,
    /// Capability sets (`cred->cap_*`), bit n = capability n.
    pub cap_inheritable: u64,
    pub cap_permitted: u64,
    pub cap_effective: u64,
    pub comm: [u8; limits::COMM_LEN],
    pub parent_comm: [u8; limits::COMM_LEN],
    pub filename: [u8; limits::FILENAME_LEN],
    pub args: [u8; limits::ARGS_LEN],
    /// The working directory, right-aligned: built from the last component backwards. The
    /// kernel's masked writes may reach past its end into `env`, which is filled after it.
    pub cwd: [u8; limits::CWD_LEN],
    pub env: [u8; limits::ENV_LEN],
    /// The forbidden name that matched (NUL-padded) when `enforce` is not 0.
    pub matched: enforce::NameKey,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: both are #[repr(C)] plain integers and byte arrays; any bit pattern is valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
    unsafe impl aya::Pod for super::ExecRecord {}
}
