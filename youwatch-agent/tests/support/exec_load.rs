//! Execs on demand inside a cgroup, for benches: a few long-lived "exec servers" that each
//! exec once per byte written to a pipe they share, and a pacer that writes those bytes at a
//! steady rate against absolute deadlines (so the rate is exact whatever the wake-up jitter).
//!
//! On x86-64 a server is a 184-byte static program that reads one byte from stdin and
//! re-execs itself (no fork, no dynamic loader: ~45 µs of CPU per exec here, against ~500 µs
//! for `sh` running `/bin/true`), so rates of 10,000 execs/s fit on a small machine. Elsewhere
//! it is `sh` running `/bin/true` once per line.

use std::{
    io::Write,
    os::fd::{FromRawFd, OwnedFd},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::cgroup_tree::CgroupTree;

/// The server, as machine code (x86-64, Linux syscalls):
///
/// ```text
/// _start: xor eax,eax; xor edi,edi; lea rsi,[rsp-8]; mov edx,1; syscall  ; read(0, buf, 1)
///         cmp rax,1; jne done                                           ; EOF: exit 0
///         mov rdi,[rsp+8]; lea rsi,[rsp+8]; mov rax,[rsp]
///         lea rdx,[rsp+rax*8+16]; mov eax,59; syscall                   ; execve(argv[0], argv, envp)
///         mov edi,1; jmp leave                                          ; exec failed: exit 1
/// done:   xor edi,edi
/// leave:  mov eax,231; syscall                                          ; exit_group
/// ```
#[cfg(target_arch = "x86_64")]
const SERVER_CODE: [u8; 64] = [
    0x31, 0xc0, 0x31, 0xff, 0x48, 0x8d, 0x74, 0x24, 0xf8, 0xba, 0x01, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0x48, 0x83, 0xf8, 0x01, 0x75, 0x21, 0x48, 0x8b, 0x7c, 0x24, 0x08, 0x48, 0x8d, 0x74, 0x24, 0x08,
    0x48, 0x8b, 0x04, 0x24, 0x48, 0x8d, 0x54, 0xc4, 0x10, 0xb8, 0x3b, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0xbf, 0x01, 0x00, 0x00, 0x00, 0xeb, 0x02, 0x31, 0xff, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x0f, 0x05,
];

/// The program a server runs, and its arguments.
struct Program {
    path: PathBuf,
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

#[cfg(target_arch = "x86_64")]
fn program() -> Program {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("yw-exec-server");
    super::marker_elf::write_static(&path, &SERVER_CODE);
    Program {
        path,
        args: Vec::new(),
        _dir: Some(dir),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn program() -> Program {
    Program {
        path: "/bin/sh".into(),
        args: vec!["-c".into(), "while read -r _; do /bin/true; done".into()],
        _dir: None,
    }
}

/// Exec servers inside a cgroup. Each byte written to [`ExecServers::trigger`] makes one of
/// them exec once.
pub struct ExecServers {
    trigger: std::fs::File,
    children: Vec<Child>,
    _program: Program,
}

impl ExecServers {
    /// Starts `count` servers in cgroup `rel` of `tree`, at nice value `nice`. Each server's
    /// own start is one exec in the cgroup.
    pub fn start(tree: &CgroupTree, rel: &str, count: usize, nice: i32) -> Self {
        let program = program();
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two fds we then own.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: fresh fds from pipe2.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let children = (0..count)
            .map(|_| {
                let mut cmd = tree.command_in(rel, program.path.to_str().unwrap());
                cmd.args(&program.args)
                    .stdin(Stdio::from(read.try_clone().unwrap()))
                    .env_clear();
                set_nice(&mut cmd, nice);
                cmd.spawn().expect("starting an exec server")
            })
            .collect();
        Self {
            trigger: write.into(),
            children,
            _program: program,
        }
    }

    /// Asks for `n` execs.
    pub fn trigger(&mut self, n: usize) {
        const CHUNK: [u8; 4096] = [b'\n'; 4096];
        let mut left = n;
        while left > 0 {
            let now = left.min(CHUNK.len());
            self.trigger
                .write_all(&CHUNK[..now])
                .expect("triggering execs");
            left -= now;
        }
    }

    /// Lets the servers finish what was asked and exit; their CPU time (user + system), which
    /// holds every exec's cost in the kernel, the exec program's included.
    pub fn finish(self) -> Duration {
        drop(self.trigger);
        self.children.into_iter().map(reap).sum()
    }
}

/// Waits for `child`; its CPU time.
fn reap(child: Child) -> Duration {
    let mut status = 0;
    // SAFETY: zeroed rusage is valid; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: our own child, reaped once (Child::wait is never called on it).
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "an exec server failed (status {status:#x})"
    );
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn set_nice(cmd: &mut Command, nice: i32) {
    use std::os::unix::process::CommandExt;
    if nice == 0 {
        return;
    }
    // SAFETY: setpriority is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            libc::setpriority(libc::PRIO_PROCESS, 0, nice);
            Ok(())
        });
    }
}

/// How a paced run went.
pub struct Paced {
    /// Execs asked for.
    pub execs: u64,
}

/// Asks `servers` for `rate` execs per second during `duration`, from a thread of its own
/// (at nice `nice`), against absolute deadlines: a late wake-up catches up at once, so the
/// count over the run is exact. The pacer wakes at most every `min_tick` and then asks for
/// every exec that is due.
pub fn pace(
    mut servers: ExecServers,
    rate: u32,
    duration: Duration,
    min_tick: Duration,
    nice: i32,
) -> std::thread::JoinHandle<(ExecServers, Paced)> {
    std::thread::Builder::new()
        .name("yw-bench-pacer".into())
        .spawn(move || {
            // SAFETY: plain syscall on this thread.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
            let total = (f64::from(rate) * duration.as_secs_f64()).round() as u64;
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let tick = period.max(min_tick);
            let start = Instant::now();
            let mut sent = 0u64;
            let mut next = start;
            while sent < total {
                sleep_until(next);
                let due = ((start.elapsed().as_secs_f64() * f64::from(rate)).floor() as u64 + 1)
                    .min(total);
                if due > sent {
                    servers.trigger((due - sent) as usize);
                    sent = due;
                }
                next += tick;
            }
            (servers, Paced { execs: sent })
        })
        .expect("starting the pacer")
}

/// Sleeps until `at` on the monotonic clock (an absolute deadline: no drift).
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        // Instant is CLOCK_MONOTONIC on Linux; clock_nanosleep(TIMER_ABSTIME) needs a timespec.
        let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: clock_gettime fills ts.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let ahead = at - now;
        let nanos = ts.tv_nsec as u64 + u64::from(ahead.subsec_nanos());
        ts.tv_sec += ahead.as_secs() as libc::time_t + (nanos / 1_000_000_000) as libc::time_t;
        ts.tv_nsec = (nanos % 1_000_000_000) as _;
        // SAFETY: valid timespec; EINTR just ends the sleep early (the caller re-checks).
        unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
    }
}

/// The calling thread's CPU time.
pub fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime fills ts.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// What the servers run, for reports.
pub const SERVER: &str = if cfg!(target_arch = "x86_64") {
    "a 184-byte static program that re-execs itself"
} else {
    "sh running /bin/true"
};
