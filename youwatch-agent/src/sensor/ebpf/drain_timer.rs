//! The reader's drain timer: a periodic `timerfd` in the runtime's epoll. Tokio's own timers
//! round to whole milliseconds, too coarse for a sub-millisecond latency budget.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use tokio::io::unix::AsyncFd;

pub struct DrainTimer {
    fd: AsyncFd<OwnedFd>,
}

impl DrainTimer {
    /// A disarmed timer, registered with the current runtime.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned right away.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the OwnedFd keeps its fd open, and the same, for as long as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Fires every `interval` from now on; `Duration::ZERO` disarms it.
    pub fn set(&self, interval: Duration) -> io::Result<()> {
        let spec = libc::timespec {
            tv_sec: interval.as_secs() as libc::time_t,
            tv_nsec: interval.subsec_nanos() as _,
        };
        let value = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        // SAFETY: valid itimerspec; our own fd.
        if unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &value, std::ptr::null_mut()) }
            < 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits for the next expiry (returns at once if one is pending).
    pub async fn tick(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let read = guard.try_io(|fd| {
                let mut expirations = 0u64;
                // SAFETY: reading 8 bytes into a u64 from our own timerfd.
                let n = unsafe { libc::read(fd.as_raw_fd(), (&raw mut expirations).cast(), 8) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
            match read {
                Ok(result) => return result,
                // Not yet: try_io cleared the readiness; wait again.
                Err(_would_block) => continue,
            }
        }
    }
}
