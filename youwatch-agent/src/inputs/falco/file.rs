//! Falco's `file_output` (with `json_output: true`): one alert per line, followed like
//! `tail -F` with the shared follower ([`crate::tail`]). Each line becomes a detection; the
//! tailed-input runner saves the cursor once the batch's detections are taken by every bus
//! listener, so a restart (or a rotation) neither loses nor repeats alerts. A full queue
//! makes the reading wait, never drop.

use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;
use serde::Deserialize;

use super::{FalcoError, FalcoMetrics, payload};
use crate::{
    bus::Bus,
    detection::{Detection, Priority},
    inputs::tailed::{LineDecoder, TailedInput},
    stage::StageHandle,
    tail::{FollowConfig, TailMetrics},
};

/// File name of the cursor in the agent's state directory.
pub const CURSOR_FILE: &str = "falco-file-output.cursor";

/// `falco.file:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// Falco's `file_output.filename`. Empty: off.
    pub path: PathBuf,
    /// How the file is followed (start, rotation, polling).
    pub follow: FollowConfig,
}

/// The file input, ready to run.
pub struct FalcoFile {
    config: FileConfig,
    cursor: PathBuf,
    min_priority: Priority,
    metrics: FalcoMetrics,
    tail_metrics: TailMetrics,
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
    pub fn spawn(self, bus: Bus) -> Result<StageHandle, FalcoError> {
        let input = TailedInput {
            name: "falco-file",
            follow: self
                .config
                .follow
                .options(&self.config.path, Some(self.cursor.clone())),
            decoder: AlertLines {
                path: self.config.path.clone(),
                min_priority: self.min_priority,
                metrics: self.metrics,
                warned_not_json: false,
            },
            metrics: self.tail_metrics,
        };
        Ok(input.spawn(bus)?)
    }
}

/// One Falco JSON alert per line.
struct AlertLines {
    path: PathBuf,
    min_priority: Priority,
    metrics: FalcoMetrics,
    warned_not_json: bool,
}

impl LineDecoder for AlertLines {
    fn decode(&mut self, line: &[u8], out: &mut Vec<Detection>) {
        match payload::parse(line, 1) {
            Ok(parsed) => {
                for d in parsed {
                    self.metrics.received.inc();
                    if d.priority > self.min_priority {
                        self.metrics.ignored.inc();
                    } else {
                        out.push(d);
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
                if not_json && !std::mem::replace(&mut self.warned_not_json, true) {
                    tracing::warn!(
                        path = %self.path.display(),
                        "a line of Falco's file_output is not JSON: set json_output: true in falco.yaml"
                    );
                }
                tracing::debug!(error = %e, "skipped a Falco file_output line");
            }
        }
    }
}
