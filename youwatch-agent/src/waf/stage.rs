//! The live WAF stage: follow the audit log, decide each entry, send `Detection`s on, and
//! commit the tail cursor once a batch's detections are handed over.
//!
//! It runs on its own thread (file reads block, and parsing is CPU work that must not stall
//! the async runtime); the bounded channel gives back-pressure: a slow response stage slows
//! the reading, nothing is dropped.

use std::{
    path::{Path, PathBuf},
    thread::JoinHandle,
    time::Duration,
};

use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use super::{WafConfig, detect, metrics::WafMetrics, pipeline::Pipeline};
use crate::{
    detection::Detection,
    tail::{FollowOptions, Follower, Position, TailError, TailMetrics},
};

/// File name of the cursor in the agent's state directory.
pub const CURSOR_FILE: &str = "waf-audit-log.cursor";

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("invalid waf configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error("starting the WAF thread: {0}")]
    Thread(std::io::Error),
}

/// The WAF stage, ready to run.
pub struct WafStage {
    config: WafConfig,
    cursor: PathBuf,
    metrics: WafMetrics,
    tail_metrics: TailMetrics,
}

impl WafStage {
    /// `None` when `waf.audit_log` is not set.
    pub fn new(config: &WafConfig, state_dir: &Path) -> Result<Option<WafStage>, StageError> {
        if !config.enabled() {
            return Ok(None);
        }
        config.validate().map_err(StageError::Config)?;
        Ok(Some(WafStage {
            config: config.clone(),
            cursor: state_dir.join(CURSOR_FILE),
            metrics: WafMetrics::default(),
            tail_metrics: TailMetrics::default(),
        }))
    }

    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.tail_metrics
            .register(registry.sub_registry_with_label(("source".into(), "waf".into())));
    }

    /// Follow options for this configuration (`cursor`: where to save the position).
    pub fn follow_options(config: &WafConfig, cursor: Option<PathBuf>) -> FollowOptions {
        let mut opts = FollowOptions::new(&config.audit_log);
        opts.cursor_file = cursor;
        opts.start_at = config.start_at;
        opts.max_line_bytes = config.max_line_bytes;
        opts.poll_interval = config.poll_interval;
        opts.rotate_grace = config.rotate_grace;
        opts.inotify = config.inotify;

        opts
    }

    /// Starts the thread; it ends when `tx` is closed.
    pub fn spawn(self, tx: mpsc::Sender<Detection>) -> Result<JoinHandle<()>, StageError> {
        let opts = Self::follow_options(&self.config, Some(self.cursor.clone()));
        let follower = Follower::open(opts, self.tail_metrics.clone())?;
        tracing::info!(
            audit_log = %self.config.audit_log.display(),
            cursor = %self.cursor.display(),
            inotify = follower.uses_inotify(),
            "WAF stage following the audit log"
        );
        std::thread::Builder::new()
            .name("waf".into())
            .spawn(move || self.run(follower, tx))
            .map_err(StageError::Thread)
    }

    fn run(self, mut follower: Follower, tx: mpsc::Sender<Detection>) {
        let mut pipeline = Pipeline::new(&self.config, self.metrics.clone());
        let mut failing = false;
        let mut commit_failing = false;
        while !tx.is_closed() {
            let batch = match follower.next_batch(Duration::from_millis(500)) {
                Ok(batch) => batch,
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::error!(error = %e, "WAF audit log unreadable; retrying");
                    }
                    std::thread::sleep(self.config.poll_interval);
                    continue;
                }
            };
            if std::mem::replace(&mut failing, false) {
                tracing::info!("WAF audit log readable again");
            }
            let Some(end) = batch.end() else { continue };
            let now = detect::now_secs();
            let mut done = None;
            for line in batch {
                if let Ok(outcome) = pipeline.process(line.bytes, now)
                    && let Some(d) = detect::detection(&outcome, self.config.report)
                    && tx.blocking_send(d).is_err()
                {
                    // Shutting down: keep what was handed over, read the rest next time.
                    if let Some(done) = done {
                        commit(&mut follower, done, &mut commit_failing);
                    }
                    return;
                }
                done = Some(line.end);
            }
            commit(&mut follower, end, &mut commit_failing);
        }
    }
}

/// Saves the cursor; a failure is logged once until saving works again.
fn commit(follower: &mut Follower, end: Position, failing: &mut bool) {
    match follower.commit(end) {
        Err(e) if !std::mem::replace(failing, true) => {
            tracing::warn!(error = %e, "cannot save the WAF tail cursor; a restart may read some entries again");
        }
        Err(_) => {}
        Ok(()) => *failing = false,
    }
}
