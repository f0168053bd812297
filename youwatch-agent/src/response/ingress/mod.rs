//! DenyIp and Quarantine through the Ingress (ingress-nginx annotations).
//!
//! (Being built: for now every action is planned, as in client dry-run.)

use std::sync::Arc;

use super::{
    Finished,
    action::{Action, Decided},
    config::ResponseConfig,
    dry_run::{DryRun, PlannedRequest, print_planned},
    events::EventSink,
    metrics::{Outcome, ResponseMetrics},
};
use crate::{
    cluster::ClusterContext,
    stage::{StageHandle, StopSignal},
};

#[derive(Debug, thiserror::Error)]
pub enum IngressError {}

/// The Ingress side of the response, ready to run.
pub struct IngressResponder {
    #[allow(dead_code)]
    cluster: Option<Arc<ClusterContext>>,
    #[allow(dead_code)]
    dry_run: DryRun,
}

impl IngressResponder {
    pub fn new(
        _config: &ResponseConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
        _events: EventSink,
        _metrics: ResponseMetrics,
    ) -> Result<IngressResponder, IngressError> {
        Ok(IngressResponder { cluster, dry_run })
    }

    /// Starts its background work (Ingress watch, coalesced patches, expiry); the handle
    /// takes actions.
    pub fn spawn(self) -> (IngressHandle, StageHandle) {
        let stop = StopSignal::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { stop.stopped().await }
        });
        (IngressHandle {}, StageHandle::task("ingress", stop, task))
    }
}

/// Takes DenyIp and Quarantine actions; cheap to clone.
#[derive(Clone)]
pub struct IngressHandle {}

impl IngressHandle {
    /// Carries out a DenyIp or Quarantine; resolves once applied (or refused, or given up).
    pub async fn run(&self, decided: &Decided) -> Finished {
        let request = match &decided.action {
            Action::DenyIp(d) => PlannedRequest {
                method: "PATCH",
                path: "/apis/networking.k8s.io/v1/namespaces/<of the Ingress>/ingresses/<serving the host>".into(),
                body: serde_json::json!({"deny": d.ip.to_string(), "host": d.host}),
            },
            Action::Quarantine(q) => PlannedRequest {
                method: "PATCH",
                path: "/apis/networking.k8s.io/v1/namespaces/<of the Ingress>/ingresses/<of the app>".into(),
                body: serde_json::to_value(&q.target).unwrap_or_default(),
            },
            Action::DeletePod(_) => return Finished::new(Outcome::Failed, "not an Ingress action"),
        };
        print_planned(
            decided,
            &request,
            Some("the Ingress backend is not built yet"),
        );
        Finished::new(Outcome::DryRun, "planned")
    }
}
