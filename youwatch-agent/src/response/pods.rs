//! DeletePod: delete a compromised pod so its controller recreates it from the clean image.
//!
//! Guards, in order: never a protected namespace or the agent's own pod; only pods on this
//! node (a Falco alert may name any pod; that node's agent acts); at most
//! `max_per_workload` deletions per workload per `rate_window`; never below `min_available`
//! of the workload's desired replicas (held back and retried until `retry_for`). The DELETE
//! carries a `uid` precondition, so a same-named replacement is never deleted: a 409 or 404
//! means the compromised pod is already gone.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use k8s_openapi::api::{
    apps::v1::{DaemonSet, ReplicaSet, StatefulSet},
    core::v1::{ObjectReference, Pod},
};
use kube::api::{Api, DeleteParams, Preconditions};

use super::{
    Finished,
    action::{Decided, DeletePod},
    config::{DeletePodConfig, RetryConfig},
    dry_run::{DryRun, PlannedRequest, print_planned},
    events::{EventSink, Report},
    metrics::{Outcome, ResponseMetrics},
    pod_reads::{PodRead, PodReads},
    retry::{ErrorClass, Failure, with_retry},
};
use crate::cluster::{ClusterContext, rbac};

/// Workloads whose recent deletions are remembered for the rate limit.
const RATE_CAPACITY: usize = 1024;

pub struct PodDeleter {
    pub cluster: Option<Arc<ClusterContext>>,
    pub dry_run: DryRun,
    pub config: DeletePodConfig,
    pub protected_namespaces: Vec<String>,
    pub retry: RetryConfig,
    pub events: EventSink,
    pub metrics: ResponseMetrics,
    /// What was read of each pod before deleting it, for the correlation.
    pub reads: PodReads,
    recent: Mutex<RecentDeletions>,
}

/// What is known of the pod before deleting it.
struct Target {
    uid: Option<String>,
    /// The controller whose replicas the guard counts: (kind, name).
    controller: Option<(String, String)>,
    /// Rate-limit key: namespace/kind/name of the top owner, else of the pod.
    workload: String,
}

impl PodDeleter {
    pub fn new(
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
        config: DeletePodConfig,
        protected_namespaces: Vec<String>,
        retry: RetryConfig,
        events: EventSink,
        metrics: ResponseMetrics,
    ) -> PodDeleter {
        PodDeleter {
            cluster,
            dry_run,
            config,
            protected_namespaces,
            retry,
            events,
            metrics,
            reads: PodReads::default(),
            recent: Mutex::new(RecentDeletions::default()),
        }
    }

    /// Carries out one deletion.
    pub async fn run(&self, decided: &Decided, pod: &DeletePod) -> Finished {
        if let Some(why) = self.protected(pod) {
            return self.refuse(decided, pod, why);
        }
        let dry = if decided.dry_run {
            DryRun::Client
        } else {
            self.dry_run
        };
        let cluster = match (&self.cluster, dry) {
            (Some(c), DryRun::Off | DryRun::Server) => c.clone(),
            _ => {
                let request =
                    delete_request(pod, pod.uid.as_deref(), self.config.grace_period_seconds);
                print_planned(
                    decided,
                    &request,
                    pod.uid
                        .is_none()
                        .then_some("the pod's uid is read from the API server before deleting"),
                );
                return Finished::new(Outcome::DryRun, "planned (client dry-run)");
            }
        };
        let target = match self.target(&cluster, decided, pod).await {
            Ok(Ok(t)) => t,
            Ok(Err(finished)) => return finished,
            Err(f) => return self.failed(decided, pod, "reading the pod", f),
        };
        if let Some(why) = self.rate_limited(&target.workload) {
            return self.refuse(decided, pod, why);
        }
        if let Some(finished) = self
            .hold_for_replicas(&cluster, decided, pod, &target)
            .await
        {
            return finished;
        }
        let api: Api<Pod> = rbac::POD_DELETE.namespaced(cluster.client.clone(), &pod.namespace);
        let params = DeleteParams {
            dry_run: dry == DryRun::Server,
            grace_period_seconds: Some(self.config.grace_period_seconds),
            preconditions: target.uid.clone().map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let kind = decided.action.kind();
        let result = with_retry(
            &self.retry,
            decided.give_up_at,
            |_| self.metrics.retry(kind),
            || api.delete(&pod.name, &params),
        )
        .await;
        match result {
            Ok(_) if dry == DryRun::Server => {
                Finished::new(Outcome::DryRun, "accepted by the API server (dryRun=All)")
            }
            Ok(_) => {
                self.recent_deletions().record(&target.workload);
                self.events.emit(Report {
                    regarding: pod_ref(pod, target.uid.as_deref()),
                    reason: "PodDeleted",
                    action: "Delete",
                    note: format!(
                        "youwatch deleted this pod (playbook {}): {}",
                        decided.playbook,
                        decided.evidence.summary()
                    ),
                    warning: true,
                });
                Finished::new(Outcome::Applied, "deleted")
            }
            Err(Failure {
                class: ErrorClass::NotFound | ErrorClass::Conflict,
                ..
            }) => Finished::new(
                Outcome::AlreadyDone,
                "the pod is already gone (or replaced: the uid differs)",
            ),
            Err(f) => self.failed(decided, pod, "deleting the pod", f),
        }
    }

    fn protected(&self, pod: &DeletePod) -> Option<String> {
        if self.protected_namespaces.contains(&pod.namespace) {
            return Some(format!(
                "namespace {} is protected (response.protected_namespaces)",
                pod.namespace
            ));
        }
        let cluster = self.cluster.as_deref()?;
        if cluster.own_namespace.as_deref() == Some(pod.namespace.as_str()) {
            return Some(format!("namespace {} is the agent's own", pod.namespace));
        }
        None
    }

    /// The pod's uid and controller: from the detection when it knows them (own rules: the
    /// inventory only guards this node's pods), else read from the API server, which also
    /// says whether the pod is on this node.
    async fn target(
        &self,
        cluster: &ClusterContext,
        decided: &Decided,
        pod: &DeletePod,
    ) -> Result<Result<Target, Finished>, Failure> {
        let top = pod
            .owner
            .as_ref()
            .map(|(kind, name)| format!("{}/{kind}/{name}", pod.namespace));
        if pod.uid.is_some() && pod.owner.is_some() {
            return Ok(Ok(Target {
                uid: pod.uid.clone(),
                controller: controller_from_owner(pod),
                workload: top.unwrap_or_default(),
            }));
        }
        let api: Api<Pod> = rbac::POD_GET.namespaced(cluster.client.clone(), &pod.namespace);
        let kind = decided.action.kind();
        let live = match with_retry(
            &self.retry,
            decided.give_up_at,
            |_| self.metrics.retry(kind),
            || api.get(&pod.name),
        )
        .await
        {
            Ok(p) => p,
            Err(Failure {
                class: ErrorClass::NotFound,
                ..
            }) => {
                return Ok(Err(Finished::new(
                    Outcome::AlreadyDone,
                    "the pod no longer exists",
                )));
            }
            Err(f) => return Err(f),
        };
        let uid = live.metadata.uid.clone();
        self.reads.record(
            &pod.namespace,
            &pod.name,
            PodRead {
                uid: uid.clone(),
                labels: live.metadata.labels.clone().unwrap_or_default(),
            },
        );
        if let (Some(want), Some(have)) = (&pod.uid, &uid)
            && want != have
        {
            return Ok(Err(Finished::new(
                Outcome::AlreadyDone,
                "the pod was replaced (another uid); the replacement is not touched",
            )));
        }
        let node = live.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if node != Some(cluster.node_name.as_str()) {
            return Ok(Err(self.refuse(
                decided,
                pod,
                format!(
                    "the pod runs on node {}, not {}: that node's agent acts",
                    node.unwrap_or("(none)"),
                    cluster.node_name
                ),
            )));
        }
        if cluster.own_pod.as_deref() == Some(pod.name.as_str()) {
            return Ok(Err(self.refuse(
                decided,
                pod,
                "it is the agent's own pod".into(),
            )));
        }
        let controller = live
            .metadata
            .owner_references
            .unwrap_or_default()
            .into_iter()
            .find(|o| o.controller == Some(true))
            .map(|o| (o.kind, o.name));
        let workload = top.unwrap_or_else(|| match &controller {
            Some((kind, name)) => format!("{}/{kind}/{name}", pod.namespace),
            None => format!("{}/Pod/{}", pod.namespace, pod.name),
        });
        Ok(Ok(Target {
            uid,
            controller,
            workload,
        }))
    }

    fn rate_limited(&self, workload: &str) -> Option<String> {
        let n = self
            .recent_deletions()
            .count(workload, self.config.rate_window);
        (n >= self.config.max_per_workload as usize).then(|| {
            format!(
                "{n} pods of {workload} deleted in the last {} (response.delete_pod.max_per_workload {})",
                humantime::format_duration(self.config.rate_window),
                self.config.max_per_workload
            )
        })
    }

    /// Waits while deleting would leave the workload below `min_available`; `Some` when it
    /// gave up (or the guard could not be evaluated for good).
    async fn hold_for_replicas(
        &self,
        cluster: &ClusterContext,
        decided: &Decided,
        pod: &DeletePod,
        target: &Target,
    ) -> Option<Finished> {
        let (kind, name) = target.controller.as_ref()?;
        let mut backoff =
            super::retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
        let mut logged = false;
        loop {
            let counts = match self
                .replicas(cluster, decided, &pod.namespace, kind, name)
                .await
            {
                Ok(counts) => counts?,
                // The controller vanished: nothing to protect.
                Err(f) if f.class == ErrorClass::NotFound => return None,
                Err(f) => {
                    return Some(self.failed(decided, pod, "reading the workload's replicas", f));
                }
            };
            let (desired, available) = counts;
            // The last available pod may always go (its controller recreates it).
            let required = self
                .config
                .min_available
                .of(desired)
                .min(desired.saturating_sub(1));
            if available.saturating_sub(1) >= required {
                return None;
            }
            if !logged {
                logged = true;
                tracing::warn!(pod = %pod.name, namespace = %pod.namespace, workload = %name, desired, available, required, "pod deletion held back: it would leave too few replicas available; retrying");
            }
            let wait = backoff.next_delay();
            if SystemTime::now() + wait >= decided.give_up_at {
                return Some(self.refuse(
                    decided,
                    pod,
                    format!(
                        "{kind} {name} has {available} of {desired} replicas available; deleting would leave fewer than {required} (response.delete_pod.min_available)"
                    ),
                ));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// (desired, available) replicas of a controller; `None` for kinds without replicas.
    async fn replicas(
        &self,
        cluster: &ClusterContext,
        decided: &Decided,
        namespace: &str,
        kind: &str,
        name: &str,
    ) -> Result<Option<(u32, u32)>, Failure> {
        let client = cluster.client.clone();
        let get = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
        let retry = |_: &str| self.metrics.retry(decided.action.kind());
        let deadline = decided.give_up_at;
        Ok(match kind {
            "ReplicaSet" => {
                let api: Api<ReplicaSet> = rbac::REPLICASET_GET.namespaced(client, namespace);
                let rs = with_retry(&self.retry, deadline, retry, || api.get(name)).await?;
                Some((
                    get(rs.spec.and_then(|s| s.replicas)),
                    get(rs.status.and_then(|s| s.available_replicas)),
                ))
            }
            "StatefulSet" => {
                let api: Api<StatefulSet> = rbac::STATEFULSET_GET.namespaced(client, namespace);
                let ss = with_retry(&self.retry, deadline, retry, || api.get(name)).await?;
                Some((
                    get(ss.spec.and_then(|s| s.replicas)),
                    get(ss.status.and_then(|s| s.available_replicas)),
                ))
            }
            "DaemonSet" => {
                let api: Api<DaemonSet> = rbac::DAEMONSET_GET.namespaced(client, namespace);
                let ds = with_retry(&self.retry, deadline, retry, || api.get(name)).await?;
                ds.status.map(|s| {
                    (
                        get(Some(s.desired_number_scheduled)),
                        get(s.number_available),
                    )
                })
            }
            _ => None,
        })
    }

    fn refuse(&self, decided: &Decided, pod: &DeletePod, why: String) -> Finished {
        self.events.emit(Report {
            regarding: pod_ref(pod, pod.uid.as_deref()),
            reason: "DeletionRefused",
            action: "Refuse",
            note: format!(
                "youwatch did not delete this pod (playbook {}): {why}; detection: {}",
                decided.playbook,
                decided.evidence.summary()
            ),
            warning: true,
        });
        Finished::new(Outcome::Refused, why)
    }

    fn failed(&self, _decided: &Decided, _pod: &DeletePod, doing: &str, f: Failure) -> Finished {
        let outcome = if f.class == ErrorClass::Transient {
            Outcome::GaveUp
        } else {
            Outcome::Failed
        };
        Finished::new(outcome, format!("{doing}: {f}"))
    }

    fn recent_deletions(&self) -> std::sync::MutexGuard<'_, RecentDeletions> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The ReplicaSet behind a Deployment is `<deployment>-<pod-template-hash>`.
fn controller_from_owner(pod: &DeletePod) -> Option<(String, String)> {
    let (kind, name) = pod.owner.as_ref()?;
    if kind == "Deployment" {
        let hash = pod.labels.get("pod-template-hash")?;
        return Some(("ReplicaSet".into(), format!("{name}-{hash}")));
    }
    Some((kind.clone(), name.clone()))
}

fn pod_ref(pod: &DeletePod, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid: uid.map(str::to_owned),
        ..ObjectReference::default()
    }
}

/// The DELETE as `--dry-run` prints it.
pub fn delete_request(pod: &DeletePod, uid: Option<&str>, grace: u32) -> PlannedRequest {
    let mut body = serde_json::json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": grace,
    });
    if let Some(uid) = uid {
        body["preconditions"] = serde_json::json!({ "uid": uid });
    }
    PlannedRequest {
        method: "DELETE",
        path: format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.name),
        body,
    }
}

/// Deletion times per workload, for the rate limit.
#[derive(Default)]
struct RecentDeletions {
    by_workload: HashMap<String, VecDeque<Instant>>,
}

impl RecentDeletions {
    fn count(&mut self, workload: &str, window: Duration) -> usize {
        let Some(times) = self.by_workload.get_mut(workload) else {
            return 0;
        };
        while times.front().is_some_and(|t| t.elapsed() > window) {
            times.pop_front();
        }
        times.len()
    }

    fn record(&mut self, workload: &str) {
        if self.by_workload.len() >= RATE_CAPACITY && !self.by_workload.contains_key(workload) {
            // Forget the workload whose last deletion is oldest.
            if let Some(oldest) = self
                .by_workload
                .iter()
                .min_by_key(|(_, t)| t.back().copied())
                .map(|(k, _)| k.clone())
            {
                self.by_workload.remove(&oldest);
            }
        }
        self.by_workload
            .entry(workload.to_owned())
            .or_default()
            .push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_owner_names_its_replicaset() {
        let pod = DeletePod {
            namespace: "shop".into(),
            name: "juice-shop-7d9f8b6c5-x2x4z".into(),
            uid: None,
            owner: Some(("Deployment".into(), "juice-shop".into())),
            labels: [("pod-template-hash".to_owned(), "7d9f8b6c5".to_owned())].into(),
            grace_period_seconds: 0,
        };
        assert_eq!(
            controller_from_owner(&pod),
            Some(("ReplicaSet".into(), "juice-shop-7d9f8b6c5".into()))
        );
        let req = delete_request(&pod, Some("u"), 0);
        assert_eq!(
            req.path,
            "/api/v1/namespaces/shop/pods/juice-shop-7d9f8b6c5-x2x4z"
        );
        assert_eq!(req.body["preconditions"]["uid"], "u");
    }

    #[test]
    fn rate_window_forgets_old_deletions() {
        let mut r = RecentDeletions::default();
        r.record("w");
        r.record("w");
        assert_eq!(r.count("w", Duration::from_secs(60)), 2);
        assert_eq!(r.count("w", Duration::ZERO), 0);
        for i in 0..(RATE_CAPACITY + 5) {
            r.record(&format!("w{i}"));
        }
        assert!(r.by_workload.len() <= RATE_CAPACITY);
    }
}
