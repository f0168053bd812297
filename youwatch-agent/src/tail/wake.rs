//! Waiting for a followed file to change: inotify on the directories involved, with plain
//! polling as the fallback (inotify unavailable, watch limit reached, network file systems).
//!
//! Events are not interpreted: any event, or the poll interval elapsing, only means "look
//! again". The follower's checks (stat, fstat, fingerprint) are the source of truth, so a
//! missed or coalesced event can delay a line by at most one poll interval, never lose it.

use std::{
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    time::Duration,
};

use inotify::{Inotify, WatchDescriptor, WatchMask};

pub(crate) struct Waker {
    inotify: Option<Inotify>,
    watched: Vec<(PathBuf, WatchDescriptor)>,
    poll_interval: Duration,
}

fn mask() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::CLOSE_WRITE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
}

impl Waker {
    pub(crate) fn new(use_inotify: bool, poll_interval: Duration) -> Waker {
        // `Inotify::init` opens the descriptor non-blocking: reads below never wait.
        let inotify = use_inotify
            .then(Inotify::init)
            .and_then(|r| {
                r.map_err(|err| {
                    tracing::warn!(%err, "inotify unavailable; polling every {poll_interval:?} instead");
                })
                .ok()
            });
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
        let Some(inotify) = &self.inotify else { return };
        let mut watches = inotify.watches();
        self.watched.retain(|(dir, wd)| {
            let keep = dirs.contains(dir);
            if !keep {
                let _ = watches.remove(wd.clone());
            }
            keep
        });
        for dir in dirs {
            if self.watched.iter().any(|(d, _)| d == dir) {
                continue;
            }
            match watches.add(dir, mask()) {
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
        let Some(inotify) = &mut self.inotify else {
            std::thread::sleep(timeout);
            return;
        };
        if self.watched.is_empty() {
            std::thread::sleep(timeout);
            return;
        }
        let mut pfd = libc::pollfd {
            fd: inotify.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        let mut buf = [0u8; 4096];
        // Drain (the descriptor is non-blocking: an empty queue is an error, which ends it).
        while let Ok(mut events) = inotify.read_events(&mut buf) {
            if events.next().is_none() {
                break;
            }
        }
    }
}
