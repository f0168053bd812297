//! The floor under the agent's CPU per exec: what a runtime worker costs to wake with nothing
//! to do. The reader sleeps in the runtime's epoll and the kernel's ring-buffer wake-up puts
//! it back on a CPU; where execs come one by one (every exec further from the next than the
//! latency budget) each costs one such wake-up whatever the reader does with it. Here an
//! eventfd registered the same way is written at the same rate, with no read and no work, on
//! a runtime built as the agent's: the switch into the worker, `epoll_wait` returning, tokio's
//! own turn, and the switch out.

use std::{
    os::fd::{FromRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::io::unix::AsyncFd;

use crate::{
    attached,
    threads::{self, wait_for},
};

/// Wakes a task on an agent-like runtime `rate` times a second for `seconds`: the CPU of the
/// runtime's workers per wake-up.
pub fn per_wakeup(rate: u32, seconds: f64) -> Duration {
    let (runtime, workers) = attached::runtime();
    // SAFETY: plain syscall; the fd is owned right away.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    assert!(raw >= 0, "eventfd: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
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
    let total = (f64::from(rate) * seconds).round() as u64;
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let start = Instant::now();
    for i in 1..=total {
        let at = start + period * i as u32;
        if let Some(ahead) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(ahead);
        }
        let one = 1u64;
        // SAFETY: writing 8 bytes to our own eventfd.
        unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&writer),
                (&raw const one).cast(),
                8,
            )
        };
    }
    // Let the last wake-up land.
    std::thread::sleep(Duration::from_millis(20));
    let cpu = (threads::cpu(&workers) - before).cpu;
    let wakeups = woken.load(Ordering::Relaxed) - woken_before;
    task.abort();
    drop(runtime);
    cpu / wakeups.max(1) as u32
}
