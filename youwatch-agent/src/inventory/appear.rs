//! Notices new cgroup directories at once (inotify `IN_CREATE` on the kubepods root and its
//! QoS directories), so a pod seen before its cgroup is watched as soon as the kubelet
//! creates it. The stage also re-checks on a timer, which covers inotify being unavailable
//! or its queue overflowing.

use std::path::PathBuf;

use futures::StreamExt;
use inotify::{EventStream, Inotify, WatchMask};

pub struct CgroupAppear {
    /// `None` when inotify could not be set up; then only the timer notices new cgroups.
    stream: Option<EventStream<Vec<u8>>>,
}

impl CgroupAppear {
    pub fn new() -> Self {
        let stream = Inotify::init().and_then(|i| i.into_event_stream(vec![0u8; 4096]));
        match stream {
            Ok(stream) => Self {
                stream: Some(stream),
            },
            Err(err) => {
                tracing::warn!(
                    %err,
                    "inotify unavailable: new pod cgroups are noticed by periodic re-checks only \
                     (inventory.cgroup.rescan_interval_ms)"
                );
                Self { stream: None }
            }
        }
    }

    /// Watches these directories for new subdirectories. Idempotent; directories that do not
    /// exist yet are skipped (call again later: a re-created directory gets a new watch).
    pub fn watch_dirs(&mut self, dirs: &[PathBuf]) {
        let Some(stream) = &self.stream else { return };
        let mut watches = stream.watches();
        for dir in dirs {
            if let Err(err) = watches.add(dir, WatchMask::CREATE | WatchMask::ONLYDIR)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                tracing::debug!(dir = %dir.display(), %err, "cannot watch cgroup directory");
            }
        }
    }

    /// Resolves when a directory was created in a watched one (or the queue overflowed);
    /// never, without inotify.
    pub async fn changed(&mut self) {
        match &mut self.stream {
            Some(stream) => match stream.next().await {
                Some(Ok(_)) => {}
                Some(Err(err)) => {
                    tracing::warn!(%err, "inotify failed: falling back to periodic re-checks");
                    self.stream = None;
                }
                None => self.stream = None,
            },
            None => std::future::pending().await,
        }
    }
}

impl Default for CgroupAppear {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_new_directories() {
        let dir = tempfile::tempdir().unwrap();
        let mut appear = CgroupAppear::new();
        appear.watch_dirs(&[dir.path().to_path_buf(), dir.path().join("missing")]);
        std::fs::create_dir(dir.path().join("kubepods-pod1.slice")).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), appear.changed())
            .await
            .expect("inotify reported the new directory");
    }
}
