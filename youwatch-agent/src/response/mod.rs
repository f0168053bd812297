//! Response: turns detections into Kubernetes actions (delete pod, deny IP on the Ingress,
//! quarantine), by playbook, with dry-run, allowlists, rate limits, expiry and Events.
//!
//! The stage is the bus's lossless listener: it takes each detection (journaling the actions
//! a playbook decides before it acknowledges), so a decided action survives a restart.

mod dry_run;

use std::sync::Arc;

use prometheus_client::registry::Registry;
use serde::Deserialize;

pub use dry_run::DryRun;

use crate::{
    bus::Listener,
    cluster::ClusterContext,
    stage::{StageHandle, StopSignal},
};

/// `response:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {}

/// The response stage, ready to run.
pub struct ResponseStage {
    #[allow(dead_code)]
    cluster: Option<Arc<ClusterContext>>,
    #[allow(dead_code)]
    dry_run: DryRun,
}

impl ResponseStage {
    pub fn new(
        _config: &ResponseConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
    ) -> Result<ResponseStage, ResponseError> {
        Ok(ResponseStage { cluster, dry_run })
    }

    pub fn register(&self, _registry: &mut Registry) {}

    /// Starts the stage on its bus listener; it ends once the bus has closed and what it
    /// took is handled.
    pub fn spawn(self, mut detections: Listener) -> StageHandle {
        let stop = StopSignal::new();
        let task = tokio::spawn(async move {
            while let Some(envelope) = detections.recv().await {
                envelope.done();
            }
        });
        StageHandle::task("response", stop, task)
    }
}
