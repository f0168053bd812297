//! Falco's `file_output` (with `json_output: true`): one alert per line, followed like
//! `tail -F` with the shared follower ([`crate::tail`]). Each line becomes a detection; the
//! cursor is saved once the batch's detections are queued, so a restart (or a rotation)
//! neither loses nor repeats alerts. A full queue makes the reading wait, never drop.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::{FalcoError, FalcoMetrics, payload};
use crate::{
    detection::Priority,
    tail::{FollowOptions, Follower, Position, StartAt, TailMetrics},
    telemetry::alert::DetectionSender,
};

/// File name of the cursor in the agent's state directory.
pub const CURSOR_FILE: &str = "falco-file-output.cursor";

/// `falco.file:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Falco's `file_output.filename`. Empty: off.
    pub path: PathBuf,
    /// First run only (no saved cursor): `end` or `beginning`.
    pub start_at: StartAt,
    /// Longer lines are skipped and counted.
    pub max_line_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub rotate_grace: Duration,
    pub inotify: bool,
}

impl Default for FileConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::new(),
            start_at: StartAt::End,
            max_line_bytes: 1 << 20,
            poll_interval: Duration::from_secs(1),
            rotate_grace: Duration::from_secs(2),
            inotify: true,
        }
    }
}

/// The file input, ready to run.
pub struct FalcoFile {
    config: FileConfig,
    cursor: PathBuf,
    min_priority: Priority,
    metrics: FalcoMetrics,
    tail_metrics: TailMetrics,
}

/// A running file input; [`FalcoFileHandle::stop`] ends it after the batch in hand.
pub struct FalcoFileHandle {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl FalcoFileHandle {
    /// Stops reading and waits for the thread (at most one poll interval).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            tracing::error!("the Falco file input thread panicked");
        }
    }
}

impl FalcoFile {
    /// `None` when `falco.file.path` is empty.
    pub fn new(
        config: &FileConfig,
        min_priority: Priority,
        state_dir: &Path,
        metrics: FalcoMetrics,
    ) -> Option<FalcoFile> {
        if config.path.as_os_str().is_empty() {
            return None;
        }
        Some(FalcoFile {
            config: config.clone(),
            cursor: state_dir.join(CURSOR_FILE),
            min_priority,
            metrics,
            tail_metrics: TailMetrics::default(),
        })
    }

    pub fn register(&self, registry: &mut Registry) {
        self.tail_metrics
            .register(registry.sub_registry_with_label(("source".into(), "falco".into())));
    }

    /// Opens the file (a bad path fails here, by name) and starts the reading thread.
    pub fn spawn(self, detections: DetectionSender) -> Result<FalcoFileHandle, FalcoError> {
        let mut opts = FollowOptions::new(&self.config.path);
        opts.cursor_file = Some(self.cursor.clone());
        opts.start_at = self.config.start_at;
        opts.max_line_bytes = self.config.max_line_bytes;
        opts.poll_interval = self.config.poll_interval;
        opts.rotate_grace = self.config.rotate_grace;
        opts.inotify = self.config.inotify;
        let follower = Follower::open(opts, self.tail_metrics.clone())?;
        tracing::info!(
            path = %self.config.path.display(),
            cursor = %self.cursor.display(),
            "following Falco's file_output"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("falco-file".into())
            .spawn(move || self.run(follower, &detections, &flag))
            .map_err(FalcoError::Thread)?;
        Ok(FalcoFileHandle { stop, thread })
    }

    fn run(self, mut follower: Follower, detections: &DetectionSender, stop: &AtomicBool) {
        let mut unreadable = false;
        let mut warned_not_json = false;
        while !stop.load(Ordering::Relaxed) {
            let batch = match follower
                .next_batch(self.config.poll_interval.min(Duration::from_millis(500)))
            {
                Ok(batch) => batch,
                Err(e) => {
                    if !std::mem::replace(&mut unreadable, true) {
                        tracing::error!(error = %e, "Falco's file_output is unreadable; retrying");
                    }
                    std::thread::sleep(self.config.poll_interval);
                    continue;
                }
            };
            if std::mem::replace(&mut unreadable, false) {
                tracing::info!("Falco's file_output is readable again");
            }
            let Some(end) = batch.end() else { continue };
            let mut done: Option<Position> = None;
            for line in batch {
                match payload::parse(line.bytes, 1) {
                    Ok(parsed) => {
                        for d in parsed {
                            self.metrics.received.inc();
                            if d.priority > self.min_priority {
                                self.metrics.ignored.inc();
                            } else if detections.wait_send(d).is_err() {
                                // Shutting down: keep what was handed over.
                                if let Some(done) = done {
                                    let _ = follower.commit(done);
                                }
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let not_json = matches!(e, payload::PayloadError::Json(_));
                        self.metrics.rejected(if not_json {
                            "bad_json"
                        } else {
                            "invalid_alert"
                        });
                        if not_json && !std::mem::replace(&mut warned_not_json, true) {
                            tracing::warn!(
                                path = %self.config.path.display(),
                                "a line of Falco's file_output is not JSON: set json_output: true in falco.yaml"
                            );
                        }
                        tracing::debug!(error = %e, "skipped a Falco file_output line");
                    }
                }
                done = Some(line.end);
            }
            if let Err(e) = follower.commit(end) {
                tracing::warn!(error = %e, "cannot save the Falco file cursor; a restart may read some alerts again");
            }
        }
    }
}
