//! Evidence for the other nodes: the ingress controller that saw a request and the pod that
//! ran the shell are often on different nodes, so each node publishes, per Service its WAF
//! saw suspicious requests to, one `events.k8s.io/v1` Event regarding that Service (named
//! for the Service and the node), whose annotation `youwatch.dev/suspicions` holds the
//! Service's most telling recent requests ([`evidence`]).
//!
//! Bounded API load: a Service's Event is written at once for its first request after a
//! quiet spell, then at most once per `cross_node.publish_interval` however many requests
//! arrive (coalesced), at most [`PER_ROUND`] Services per interval. Each write is one PATCH
//! of the annotation and the Event's `series` (an events.k8s.io/v1 note is immutable; the
//! series says how often it was updated), or one POST when the Event does not exist yet.
//! Events expire on their own (kube-apiserver's `--event-ttl`, 1 h after the last update).
//! A failed write is counted and tried again with the next request.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Mutex,
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::Notify;

use super::{Shared, now_secs};
use crate::{
    cluster::{REPORTING_CONTROLLER, rbac},
    correlate::{
        evidence::{self, ANNOTATION, LABEL, LABEL_VALUE, SERVICE_LABEL},
        suspicion::{Suspicion, Workload},
    },
    response::retry::{ErrorClass, classify},
};

/// Services written per interval at most; the others wait for the next.
pub const PER_ROUND: usize = 64;
/// Services waiting to be written, at most (they come from Ingress rules, not requests).
const MAX_DIRTY: usize = 4096;

/// Which Services have news; the writer task.
pub struct Publisher {
    dirty: Mutex<BTreeSet<Workload>>,
    notify: Notify,
    server_dry_run: bool,
}

impl Publisher {
    /// `server_dry_run`: writes carry `dryRun=All` (nothing is stored).
    pub fn new(server_dry_run: bool) -> Publisher {
        Publisher {
            dirty: Mutex::new(BTreeSet::new()),
            notify: Notify::new(),
            server_dry_run,
        }
    }

    fn dirty_set(&self) -> std::sync::MutexGuard<'_, BTreeSet<Workload>> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `workload` has a new request to publish.
    pub fn dirty(&self, workload: Workload) {
        {
            let mut dirty = self.dirty_set();
            if dirty.len() < MAX_DIRTY {
                dirty.insert(workload);
            }
        }
        self.notify.notify_one();
    }

    /// Writes what is dirty, then rests an interval; ends on stop.
    pub async fn run(self: std::sync::Arc<Self>, shared: std::sync::Arc<Shared>) {
        let mut series: HashMap<Workload, i32> = HashMap::new();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = shared.stop.stopped() => return,
            }
            let batch: Vec<Workload> = {
                let mut dirty = self.dirty_set();
                let batch: Vec<Workload> = dirty.iter().take(PER_ROUND).cloned().collect();
                for w in &batch {
                    dirty.remove(w);
                }
                if !dirty.is_empty() {
                    self.notify.notify_one();
                }
                batch
            };
            if series.len() > MAX_DIRTY {
                series.clear();
            }
            for w in batch {
                let ok = self.write(&shared, &w, &mut series).await;
                shared.metrics.write(ok.is_ok());
                match ok {
                    Err(e) if !std::mem::replace(&mut failing, true) => {
                        tracing::warn!(service = %w, error = e, "cannot publish suspicious requests for other nodes; retrying with the next ones (logged once until it works)");
                    }
                    Err(_) => {}
                    Ok(()) => failing = false,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(shared.config.cross_node.publish_interval) => {}
                _ = shared.stop.stopped() => return,
            }
        }
    }

    /// Writes `w`'s Event: a PATCH, or a POST when it does not exist.
    async fn write(
        &self,
        shared: &Shared,
        w: &Workload,
        series: &mut HashMap<Workload, i32>,
    ) -> Result<(), String> {
        let node = &shared.cluster.node_name;
        let body = evidence::encode(node, &published(shared, w));
        let api: Api<Event> =
            rbac::EVIDENCE_WRITE.namespaced(shared.cluster.client.clone(), &w.namespace);
        let name = event_name(w, node);
        let timeout = shared.retry.request_timeout;
        let count = series.entry(w.clone()).or_insert(1);
        *count = count.saturating_add(1);
        let patch_params = PatchParams {
            dry_run: self.server_dry_run,
            ..PatchParams::default()
        };
        let patch = |count| {
            let body = patch_body(&body, count);
            let api = &api;
            let params = &patch_params;
            let name = &name;
            async move {
                match tokio::time::timeout(timeout, api.patch(name, params, &Patch::Merge(&body)))
                    .await
                {
                    Ok(result) => result
                        .map(|_| ())
                        .map_err(|e| (classify(&e), e.to_string())),
                    Err(_) => Err((
                        ErrorClass::Transient,
                        format!("no answer within {timeout:?}"),
                    )),
                }
            }
        };
        match patch(*count).await {
            Ok(()) => return Ok(()),
            Err((ErrorClass::NotFound, _)) => {}
            Err((_, e)) => return Err(e),
        }
        *count = 1;
        let event = new_event(shared, w, &name, body.clone());
        let post_params = PostParams {
            dry_run: self.server_dry_run,
            ..PostParams::default()
        };
        match tokio::time::timeout(timeout, api.create(&post_params, &event)).await {
            Err(_) => Err(format!("no answer within {timeout:?}")),
            Ok(Ok(_)) => Ok(()),
            // Created meanwhile by this node's previous run, still finishing: update it.
            Ok(Err(e)) if classify(&e) == ErrorClass::Conflict => {
                *count = 2;
                patch(2).await.map_err(|(_, e)| e)
            }
            Ok(Err(e)) => Err(e.to_string()),
        }
    }
}

/// The Service's requests worth publishing: within the retention, the most telling first
/// (code execution, strong rules, newest), at most `cross_node.max_published`.
fn published(shared: &Shared, w: &Workload) -> Vec<Suspicion> {
    let since = now_secs().saturating_sub(shared.config.limits().retention_secs);
    let mut items = shared.log().between(w, since, u64::MAX);
    items.sort_by_key(|s| (s.tier(), !s.strong_attack(), Reverse(s.time)));
    items.truncate(shared.config.cross_node.max_published);
    items
}

/// `<service>.youwatch.<hash of the node name>`: one Event per Service and node, found
/// again after a restart.
pub fn event_name(w: &Workload, node: &str) -> String {
    // FNV-1a: stable across processes and versions (the name must not change).
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}.youwatch.{hash:016x}", w.service)
}

fn patch_body(annotation: &str, count: i32) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"annotations": {ANNOTATION: annotation}},
        "series": {"count": count, "lastObservedTime": MicroTime(jiff::Timestamp::now())},
    })
}

fn new_event(shared: &Shared, w: &Workload, name: &str, annotation: String) -> Event {
    let cluster = &shared.cluster;
    Event {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(w.namespace.clone()),
            labels: Some(BTreeMap::from([
                (LABEL.to_owned(), LABEL_VALUE.to_owned()),
                (SERVICE_LABEL.to_owned(), w.service.clone()),
            ])),
            annotations: Some(BTreeMap::from([(ANNOTATION.to_owned(), annotation)])),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(jiff::Timestamp::now())),
        action: Some("Observe".into()),
        reason: Some("SuspiciousRequests".into()),
        type_: Some("Warning".into()),
        note: Some(format!(
            "youwatch: the WAF on node {} flagged requests to this Service (CRS hits). The latest are in annotation {ANNOTATION}, for the agents on the nodes of its pods to tie them to runtime detections.",
            cluster.node_name
        )),
        regarding: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(w.namespace.clone()),
            name: Some(w.service.clone()),
            ..ObjectReference::default()
        }),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(cluster.reporting_instance.clone()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_name_per_service_and_node() {
        let w = Workload {
            namespace: "shop".into(),
            service: "juice-shop".into(),
        };
        let a = event_name(&w, "node-a");
        assert_eq!(a, event_name(&w, "node-a"));
        assert_ne!(a, event_name(&w, "node-b"));
        assert!(a.starts_with("juice-shop.youwatch."), "{a}");
        assert_eq!(a.len(), "juice-shop.youwatch.".len() + 16);
    }
}
