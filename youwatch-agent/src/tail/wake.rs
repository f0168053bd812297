//! Waiting for a followed file to change: inotify on the directories involved, with plain
//! polling as the fallback (inotify unavailable, watch limit reached, network file systems).
//!
//! Events are not interpreted: any event, or the poll interval elapsing, only means "look
//! again". The follower's checks (stat, fstat, fingerprint) are the source of truth, so a
//! missed or coalesced event can delay a line by at most one poll interval, never lose it.

use std::{
    ffi::CString,
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
    time::Duration,
};

pub(crate) struct Waker {
    inotify: Option<OwnedFd>,
    watched: Vec<(PathBuf, i32)>,
    poll_interval: Duration,
}

const MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

impl Waker {
    pub(crate) fn new(use_inotify: bool, poll_interval: Duration) -> Waker {
        let inotify = if use_inotify {
            // SAFETY: plain syscall; the returned fd is owned below.
            let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
            if fd < 0 {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "inotify unavailable; polling every {poll_interval:?} instead"
                );
                None
            } else {
                // SAFETY: fd is a fresh descriptor nobody else owns.
                Some(unsafe { OwnedFd::from_raw_fd(fd) })
            }
        } else {
            None
        };
        Waker {
            inotify,
            watched: Vec::new(),
            poll_interval,
        }
    }

    /// Whether changes are noticed by inotify (else by polling alone).
    pub(crate) fn uses_inotify(&self) -> bool {
        self.inotify.is_some()
    }

    /// Watches exactly these directories (adds the new ones, drops the others).
    pub(crate) fn watch_dirs(&mut self, dirs: &[PathBuf]) {
        let Some(fd) = &self.inotify else { return };
        let fd = fd.as_raw_fd();
        self.watched.retain(|(dir, wd)| {
            let keep = dirs.contains(dir);
            if !keep {
                // SAFETY: removing a watch descriptor we added.
                unsafe { libc::inotify_rm_watch(fd, *wd) };
            }
            keep
        });
        for dir in dirs {
            if self.watched.iter().any(|(d, _)| d == dir) {
                continue;
            }
            match add_watch(fd, dir) {
                Ok(wd) => self.watched.push((dir.clone(), wd)),
                // A missing directory is polled; one that appears later is watched on the
                // next call.
                Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "not watching"),
            }
        }
    }

    /// Sleeps until something changes in a watched directory or `timeout` (capped at the poll
    /// interval) elapses.
    pub(crate) fn wait(&mut self, timeout: Duration) {
        let timeout = timeout.min(self.poll_interval);
        let Some(fd) = &self.inotify else {
            std::thread::sleep(timeout);
            return;
        };
        if self.watched.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        self.drain();
    }

    fn drain(&self) {
        let Some(fd) = &self.inotify else { return };
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a local buffer of the given length.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
        }
    }
}

fn add_watch(fd: i32, dir: &Path) -> std::io::Result<i32> {
    let c = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: valid fd and NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), MASK) };
    if wd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(wd)
    }
}
