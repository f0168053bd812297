//! Other nodes' evidence: for each Service of the pod, one LIST of the evidence Events
//! regarding it (by label: `youwatch.dev/evidence=waf,youwatch.dev/service=<name>`, at most
//! [`LIMIT`] of them, one per node whose WAF saw requests to it). This node's own Event is
//! skipped: its requests are in the local log already.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};

use super::Shared;
use crate::cluster::rbac;
use crate::correlate::{
    evidence::{self, ANNOTATION, LABEL, LABEL_VALUE, SERVICE_LABEL},
    rank::Candidate,
    suspicion::Workload,
};

/// Evidence Events read per Service at most (one per ingress node).
pub const LIMIT: u32 = 100;

/// The requests other nodes published for `services`; an error names the Service.
pub async fn evidence(shared: &Shared, services: &[Workload]) -> Result<Vec<Candidate>, String> {
    let mut found = Vec::new();
    for w in services {
        let events = list(shared, w).await;
        shared.metrics.read(events.is_ok());
        let events = events
            .map_err(|e| format!("other nodes' evidence for Service {w} could not be read: {e}"))?;
        for event in events {
            let Some(text) = event
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION))
            else {
                continue;
            };
            let Some(published) = evidence::decode(text) else {
                continue;
            };
            if published.node == shared.cluster.node_name {
                continue;
            }
            found.extend(published.items.into_iter().map(|suspicion| Candidate {
                suspicion,
                workload: w.clone(),
                seen_by: Some(published.node.clone()),
            }));
        }
    }
    Ok(found)
}

async fn list(shared: &Shared, w: &Workload) -> Result<Vec<Event>, String> {
    let api: Api<Event> =
        rbac::EVIDENCE_LIST.namespaced(shared.cluster.client.clone(), &w.namespace);
    let params = ListParams::default()
        .labels(&format!(
            "{LABEL}={LABEL_VALUE},{SERVICE_LABEL}={}",
            w.service
        ))
        .limit(LIMIT);
    let timeout = shared.retry.request_timeout;
    match tokio::time::timeout(timeout, api.list(&params)).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}
