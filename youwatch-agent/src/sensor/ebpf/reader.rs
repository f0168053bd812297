//! Ring-buffer reader: kernel records → decoded events on a bounded channel.
//!
//! A dedicated thread, not an async task: it blocks in `poll(2)` on the ring's fd and runs at a
//! raised priority (`sensor.reader_nice`), so a node whose CPUs are saturated — often the very
//! moment something is wrong — still sees exec events within a millisecond.
//!
//! When the channel is full the reader waits; the ring buffer then fills and the kernel counts
//! what it cannot store (`RINGBUF_FULL`). Nothing is dropped in user space without a count.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    thread::JoinHandle,
};

use aya::maps::{Array, MapData, RingBuf};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::mpsc;

use super::decode::{BootClock, boottime_ns, decode};
use crate::event::ExecEvent;

/// Stops the reader: it drains what is left in the ring, then closes the channel. Call it after
/// the program is detached, so that nothing arrives after the final drain.
pub struct StopReader {
    wake: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl StopReader {
    pub fn stop(mut self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our own eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&raw const one).cast(), 8) };
        // The thread may be blocked on a full channel whose receiver is this thread's caller:
        // do not join, it ends on its own once the channel is drained or dropped.
        drop(self.thread.take());
    }
}

/// The reader's half of the wake-up protocol with the exec program (see its `submit`): the
/// kernel rings the ring buffer's wake-up only while this flag says the reader sleeps in poll.
pub struct WakeFlag(Array<MapData, u32>);

impl WakeFlag {
    pub fn new(map: Array<MapData, u32>) -> Self {
        Self(map)
    }

    /// Tells the kernel whether the reader needs a wake-up; false if the kernel could not be told.
    fn set(&mut self, waiting: bool) -> bool {
        let ok = self.0.set(0, u32::from(waiting), 0).is_ok();
        // The flag store must be visible before the ring is checked again (poll or drain).
        std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
        ok
    }
}

/// Sees each event on the reader thread, before it is queued for the next stage: what must
/// react within the reader's latency, whatever the stages behind it hold (enforcement's
/// disarmer). It must not block.
pub trait ExecTap: Send + 'static {
    fn on_exec(&mut self, event: &ExecEvent);
}

/// Starts the reader thread. `nice` is applied to it (lower is more urgent); without the
/// privilege to raise priority it runs at the default and says so once.
pub fn spawn_reader(
    ring: RingBuf<MapData>,
    wake_flag: WakeFlag,
    capacity: usize,
    nice: i32,
    latency: Histogram,
    mut tap: Option<Box<dyn ExecTap>>,
) -> std::io::Result<(mpsc::Receiver<ExecEvent>, StopReader)> {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    // SAFETY: plain syscall; the fd is owned right away.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd we own.
    let wake = unsafe { OwnedFd::from_raw_fd(raw) };
    let wake_fd = wake.try_clone()?;
    let thread = std::thread::Builder::new()
        .name("yw-exec-reader".into())
        .spawn(move || {
            set_nice(nice);
            let mut deliver = |event: ExecEvent| {
                if let Some(tap) = tap.as_mut() {
                    tap.on_exec(&event);
                }
                tx.blocking_send(event).is_ok()
            };
            read_loop(ring, wake_flag, &wake_fd, &mut deliver, &latency);
        })?;
    Ok((
        rx,
        StopReader {
            wake,
            thread: Some(thread),
        },
    ))
}

/// While events keep coming the reader drains on this timer instead of waiting in poll(2),
/// and tells the kernel not to wake it: a wake-up costs the exec'ing task more than the rest
/// of the exec program together. Bounds the added latency.
const BUSY_INTERVAL: std::time::Duration = std::time::Duration::from_micros(200);
/// Empty drains in a row before the reader goes back to waiting in poll(2).
const BUSY_ROUNDS: u32 = 5;

fn read_loop(
    mut ring: RingBuf<MapData>,
    mut wake_flag: WakeFlag,
    wake: &OwnedFd,
    deliver: &mut impl FnMut(ExecEvent) -> bool,
    latency: &Histogram,
) {
    let mut idle_rounds = BUSY_ROUNDS;
    // Without the flag the kernel never wakes us: then the reader stays on its timer.
    let mut flag_works = true;
    loop {
        // Idle: ask the kernel for a wake-up first. poll then returns at once if a record
        // arrived before the kernel could see the flag.
        let mut idle = idle_rounds >= BUSY_ROUNDS && flag_works;
        if idle && !wake_flag.set(true) {
            flag_works = false;
            idle = false;
            tracing::error!(
                "cannot ask the exec program for wake-ups; the reader polls every {BUSY_INTERVAL:?}"
            );
        }
        let stopping = if idle {
            let woken = wait_readable(&ring, wake);
            wake_flag.set(false);
            match woken {
                Ok(stopping) => stopping,
                Err(err) => {
                    tracing::error!(%err, "polling the exec ring buffer failed; exec events stop");
                    return;
                }
            }
        } else {
            std::thread::sleep(BUSY_INTERVAL);
            readable(wake, 0)
        };
        match drain(&mut ring, deliver, latency) {
            None => return,
            Some(0) => idle_rounds = idle_rounds.saturating_add(1),
            Some(_) => idle_rounds = 0,
        }
        if stopping {
            // The program is detached: what was in the ring is all there will be.
            return;
        }
    }
}

/// Blocks until the ring or the stop eventfd is readable; true when stop was requested.
fn wait_readable(ring: &RingBuf<MapData>, wake: &OwnedFd) -> std::io::Result<bool> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: ring.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid array of two pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } >= 0 {
            return Ok(fds[1].revents != 0);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// True when `fd` is readable within `timeout_ms`.
fn readable(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}

/// Hands every record in the ring to `deliver`: how many, or `None` when it says the
/// receiver is gone.
fn drain(
    ring: &mut RingBuf<MapData>,
    deliver: &mut impl FnMut(ExecEvent) -> bool,
    latency: &Histogram,
) -> Option<usize> {
    let clock = BootClock::now();
    let mut count = 0;
    while let Some(record) = ring.next() {
        count += 1;
        let event = decode(&record, clock);
        // Release the record to the kernel before possibly waiting on a full channel.
        drop(record);
        match event {
            Ok(event) => {
                latency.observe(boottime_ns().saturating_sub(event.ktime_ns) as f64 / 1e9);
                if !deliver(event) {
                    return None;
                }
            }
            Err(err) => tracing::error!(%err, "dropping an undecodable exec record"),
        }
    }
    Some(count)
}

/// Sets this thread's nice value. Raising priority needs CAP_SYS_NICE.
fn set_nice(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: plain syscalls on the calling thread's own id.
    let (tid, rc) = unsafe {
        let tid = libc::gettid();
        (
            tid,
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice),
        )
    };
    if rc != 0 {
        tracing::info!(
            nice,
            tid,
            err = %std::io::Error::last_os_error(),
            "exec reader keeps the default priority (raising it needs CAP_SYS_NICE)"
        );
    }
}
