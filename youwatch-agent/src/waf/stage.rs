//! The live WAF stage: follow the audit log with the shared tailed-input runner, decide each
//! entry, and publish the detections on the bus. The runner saves the cursor only once every
//! listener has taken a batch's detections, so a ban decided is never lost to a restart.
//!
//! It runs on its own thread (file reads block, and parsing is CPU work that must not stall
//! the async runtime); a full listener queue slows the reading, nothing is dropped. With the
//! correlation on, every entry with a CRS hit is also offered as a suspicion (never waiting:
//! a full queue loses it, counted).

use std::path::{Path, PathBuf};

use prometheus_client::registry::Registry;

use super::{
    WafConfig, client_ip::ClientIpPolicy, detect, metrics::WafMetrics, pipeline::Pipeline, suspect,
};
use crate::{
    bus::Bus,
    correlate::SuspicionSink,
    detection::Detection,
    inputs::tailed::{LineDecoder, TailedInput},
    stage::StageHandle,
    tail::{FollowOptions, TailError, TailMetrics},
};

/// File name of the cursor in the agent's state directory.
pub const CURSOR_FILE: &str = "waf-audit-log.cursor";

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("invalid waf configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Tail(#[from] TailError),
}

/// The WAF stage, ready to run.
pub struct WafStage {
    config: WafConfig,
    cursor: PathBuf,
    metrics: WafMetrics,
    tail_metrics: TailMetrics,
    suspicions: Option<SuspicionSink>,
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
            suspicions: None,
        }))
    }

    /// Also offers every entry with a CRS hit to the correlation.
    pub fn with_suspicions(mut self, sink: SuspicionSink) -> WafStage {
        self.suspicions = Some(sink);
        self
    }

    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.tail_metrics
            .register(registry.sub_registry_with_label(("source".into(), "waf".into())));
    }

    /// Follow options for this configuration (`cursor`: where to save the position).
    pub fn follow_options(config: &WafConfig, cursor: Option<PathBuf>) -> FollowOptions {
        config.follow.options(&config.audit_log, cursor)
    }

    /// Opens the audit log (a bad path fails here, by name) and starts the thread.
    pub fn spawn(self, bus: Bus) -> Result<StageHandle, StageError> {
        let input = TailedInput {
            name: "waf",
            follow: Self::follow_options(&self.config, Some(self.cursor.clone())),
            decoder: Entries {
                pipeline: Pipeline::new(&self.config, self.metrics.clone()),
                report: self.config.report,
                now: detect::now_secs(),
                suspicions: self
                    .suspicions
                    .map(|sink| (sink, ClientIpPolicy::from_config(&self.config.client_ip))),
            },
            metrics: self.tail_metrics,
        };
        Ok(input.spawn(bus)?)
    }
}

/// One audit-log entry per line, decided by the pipeline.
struct Entries {
    pipeline: Pipeline,
    report: super::config::Report,
    now: u64,
    suspicions: Option<(SuspicionSink, ClientIpPolicy)>,
}

impl LineDecoder for Entries {
    fn begin_batch(&mut self) {
        self.now = detect::now_secs();
    }

    fn decode(&mut self, line: &[u8], out: &mut Vec<Detection>) {
        // Bad lines are counted by the pipeline's metrics.
        let Ok(outcome) = self.pipeline.process(line, self.now) else {
            return;
        };
        if let Some((sink, policy)) = &self.suspicions
            && let Some(s) = suspect::suspicion(&outcome, policy, self.now)
        {
            sink.offer(s);
        }
        if let Some(d) = detect::detection(&outcome, self.report) {
            out.push(d);
        }
    }
}
