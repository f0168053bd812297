//! The floor under the agent's CPU per exec: what a runtime worker costs to wake with nothing
//! to do. The reader sleeps in the runtime's epoll and the kernel's ring-buffer wake-up puts
//! it back on a CPU; where execs come one by one (every exec further from the next than the
//! latency budget) each costs one such wake-up whatever the reader does with it. Here an
//! eventfd registered the same way is written at the same rate, with no read and no work, on
//! a runtime built as the agent's: the switch into the worker, `epoll_wait` returning, tokio's
//! own turn, and the switch out. And the kernel's part alone: a plain thread blocked in
//! `read(2)` on an eventfd, woken the same way.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use crate::{
    attached,
    support::exec_load,
    threads::{self, wait_for},
};

/// CPU per wake-up of a sleeping thread with nothing to do.
pub struct Floor {
    /// A plain thread blocked in read(2).
    pub kernel: Duration,
    /// A task on an agent-like runtime, as the reader waits.
    pub runtime: Duration,
}

/// Both floors at `rate` wake-ups a second, `seconds` each.
pub fn measure(rate: u32, seconds: f64) -> Floor {
    Floor {
        kernel: kernel(rate, seconds),
        runtime: runtime(rate, seconds),
    }
}

impl Floor {
    /// The lower of two measurements, each floor apart: what the machine's noise added to
    /// one of them is not the price of a wake-up.
    pub fn min(self, other: Self) -> Self {
        Self {
            kernel: self.kernel.min(other.kernel),
            runtime: self.runtime.min(other.runtime),
        }
    }
}

fn eventfd(flags: i32) -> OwnedFd {
    // SAFETY: plain syscall; the fd is owned right away.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | flags) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

fn add(fd: &OwnedFd, value: u64) {
    // SAFETY: writing 8 bytes to our own eventfd.
    unsafe { libc::write(fd.as_raw_fd(), (&raw const value).cast(), 8) };
}

/// Adds one to `fd` `rate` times a second for `seconds`, against absolute deadlines.
fn ring(fd: &OwnedFd, rate: u32, seconds: f64) {
    let total = (f64::from(rate) * seconds).round() as u32;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    for i in 1..=total {
        if let Some(ahead) = (start + period * i).checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
        add(fd, 1);
    }
    // Let the last wake-up land.
    std::thread::sleep(Duration::from_millis(20));
}

/// CPU per wake-up of a plain thread blocked in read(2) on an eventfd.
fn kernel(rate: u32, seconds: f64) -> Duration {
    /// Added to end the thread: far above any count of ones.
    const STOP: u64 = 1 << 40;
    let fd = eventfd(0);
    let reader = fd.try_clone().unwrap();
    let thread = std::thread::spawn(move || {
        let (mut wakeups, mut value) = (0u64, 0u64);
        let before = exec_load::thread_cpu();
        while value < STOP {
            // SAFETY: reading 8 bytes from our own eventfd into a u64.
            let n = unsafe { libc::read(reader.as_raw_fd(), (&raw mut value).cast(), 8) };
            assert_eq!(n, 8, "read: {}", std::io::Error::last_os_error());
            wakeups += 1;
        }
        // The last read was the stop: not a paced wake-up.
        (exec_load::thread_cpu() - before) / (wakeups - 1).max(1) as u32
    });
    ring(&fd, rate, seconds);
    add(&fd, STOP);
    thread.join().expect("floor thread")
}

/// CPU per wake-up of the workers of an agent-like runtime whose only task waits on an
/// eventfd as the reader waits on the ring.
fn runtime(rate: u32, seconds: f64) -> Duration {
    let (runtime, workers) = attached::runtime();
    let fd = eventfd(libc::EFD_NONBLOCK);
    let writer = fd.try_clone().unwrap();
    let woken = Arc::new(AtomicU64::new(0));
    let count = woken.clone();
    let ready = Arc::new(AtomicU64::new(0));
    let registered = ready.clone();
    let task = runtime.spawn(async move {
        // SAFETY: the OwnedFd keeps its fd open, and the same, while the AsyncFd holds it.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.unwrap();
        registered.store(1, Ordering::Release);
        loop {
            // As the reader: clear the readiness and go back to sleep; no read(2).
            fd.readable().await.unwrap().clear_ready();
            count.fetch_add(1, Ordering::Relaxed);
        }
    });
    wait_for(|| (ready.load(Ordering::Acquire) == 1).then_some(()))
        .expect("the floor task registers its eventfd");
    let before = threads::cpu(&workers);
    let woken_before = woken.load(Ordering::Relaxed);
    ring(&writer, rate, seconds);
    let cpu = (threads::cpu(&workers) - before).cpu;
    let wakeups = woken.load(Ordering::Relaxed) - woken_before;
    task.abort();
    drop(runtime);
    cpu / wakeups.max(1) as u32
}
