//! Applying a batch of operations to one Ingress on the API server: compute the edit from
//! the Ingress as known, send it as a JSON merge patch carrying `metadata.resourceVersion`
//! (the API server refuses it with 409 if anyone wrote in between), and on 409 re-read and
//! recompute — so a user's concurrent edit and other agents' entries all survive. Transient
//! errors (5xx, timeouts, connection loss) are retried by [`with_retry`]. Used by the
//! coalesced patches, expiry, and the CLI.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime},
};

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};

use super::{
    edit::{Edit, Names, Op, edit},
    metrics::IngressMetrics,
};
use crate::response::{
    PlannedRequest,
    config::RetryConfig,
    retry::{Backoff, ErrorClass, Failure, with_retry},
};

/// The field manager named in the Ingress's managedFields.
const FIELD_MANAGER: &str = "youwatch-agent";

/// An Ingress by namespace and name (`namespace/name`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressKey {
    pub namespace: String,
    pub name: String,
}

impl IngressKey {
    pub fn of(ingress: &Ingress) -> IngressKey {
        IngressKey {
            namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
            name: ingress.metadata.name.clone().unwrap_or_default(),
        }
    }

    pub fn path(&self) -> String {
        format!(
            "/apis/networking.k8s.io/v1/namespaces/{}/ingresses/{}",
            self.namespace, self.name
        )
    }
}

impl std::fmt::Display for IngressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The annotations of `ingress` (empty when it has none).
pub fn annotations(ingress: &Ingress) -> BTreeMap<String, String> {
    ingress.metadata.annotations.clone().unwrap_or_default()
}

/// The merge patch for `changes`, with the resourceVersion precondition.
pub fn patch_body(
    resource_version: Option<&str>,
    changes: &BTreeMap<String, Option<String>>,
) -> serde_json::Value {
    let mut metadata = serde_json::json!({ "annotations": changes });
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = rv.into();
    }
    serde_json::json!({ "metadata": metadata })
}

/// The PATCH as `--dry-run` prints it.
pub fn planned(key: &IngressKey, ingress: Option<&Ingress>, edit: &Edit) -> PlannedRequest {
    let rv = ingress.and_then(|i| i.metadata.resource_version.as_deref());
    PlannedRequest {
        method: "PATCH",
        path: key.path(),
        body: patch_body(rv, &edit.changes),
    }
}

/// What a batch did to an Ingress.
pub struct Applied {
    pub edit: Edit,
    /// The Ingress after the patch (as read, when nothing changed).
    pub ingress: Ingress,
    /// A patch was accepted (with dryRun=All: validated, not stored).
    pub patched: bool,
}

/// Sends the patches; one per client.
pub struct Patcher {
    pub client: kube::Client,
    pub retry: RetryConfig,
    pub names: Names,
    /// `--dry-run=server`: every patch with dryRun=All.
    pub server_dry_run: bool,
    pub metrics: IngressMetrics,
}

impl Patcher {
    /// Applies `ops` to the Ingress `key`, starting from `known` (the watched copy; read
    /// from the API server when `None` or stale), until done or `deadline`.
    /// `on_retry` runs before each retry of a transient error.
    pub async fn apply(
        &self,
        key: &IngressKey,
        known: Option<Ingress>,
        ops: &[Op],
        deadline: SystemTime,
        on_retry: &(dyn Fn() + Sync),
    ) -> Result<Applied, Failure> {
        let api: Api<Ingress> =
            crate::cluster::rbac::INGRESS_PATCH.namespaced(self.client.clone(), &key.namespace);
        let params = PatchParams {
            dry_run: self.server_dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        let retried = AtomicBool::new(false);
        let note_retry = |_: &str| {
            retried.store(true, Ordering::Relaxed);
            on_retry();
        };
        let mut conflict_backoff = Backoff::new(Duration::from_millis(10), Duration::from_secs(1));
        let mut known = known;
        // An edit whose patch may have landed although its answer was lost.
        let mut unanswered: Option<Edit> = None;
        loop {
            let ingress = match known.take() {
                Some(i) => i,
                None => {
                    with_retry(&self.retry, deadline, note_retry, || api.get(&key.name)).await?
                }
            };
            let current = annotations(&ingress);
            let edit = edit(&current, &self.names, ops);
            if edit.changes.is_empty() {
                if let Some(prior) = unanswered.take()
                    && landed(&prior, &current)
                {
                    return Ok(Applied {
                        edit: prior,
                        ingress,
                        patched: true,
                    });
                }
                return Ok(Applied {
                    edit,
                    ingress,
                    patched: false,
                });
            }
            let body = Patch::Merge(patch_body(
                ingress.metadata.resource_version.as_deref(),
                &edit.changes,
            ));
            retried.store(false, Ordering::Relaxed);
            let result = with_retry(&self.retry, deadline, note_retry, || {
                api.patch(&key.name, &params, &body)
            })
            .await;
            match result {
                Ok(ingress) => {
                    self.metrics.patches.inc();
                    return Ok(Applied {
                        edit,
                        ingress,
                        patched: true,
                    });
                }
                Err(f) if f.class == ErrorClass::Conflict => {
                    self.metrics.conflicts.inc();
                    tracing::debug!(ingress = %key, "the Ingress changed since it was read; re-reading");
                    if retried.load(Ordering::Relaxed) {
                        unanswered = Some(edit);
                    }
                    let wait = conflict_backoff.next_delay();
                    if SystemTime::now() + wait >= deadline {
                        return Err(Failure {
                            class: ErrorClass::Transient,
                            message: format!(
                                "{key} kept changing under the agent's patches until the deadline: {f}"
                            ),
                        });
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(f) => return Err(f),
            }
        }
    }
}

/// Whether every change of `edit` is what `annotations` hold now.
fn landed(edit: &Edit, annotations: &BTreeMap<String, String>) -> bool {
    edit.changes
        .iter()
        .all(|(k, v)| annotations.get(k) == v.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_carries_the_precondition_and_removals() {
        let changes: BTreeMap<String, Option<String>> = [
            ("a".to_owned(), Some("1".to_owned())),
            ("b".to_owned(), None),
        ]
        .into();
        assert_eq!(
            patch_body(Some("42"), &changes),
            serde_json::json!({"metadata": {"resourceVersion": "42", "annotations": {"a": "1", "b": null}}})
        );
        let key = IngressKey {
            namespace: "shop".into(),
            name: "web".into(),
        };
        assert_eq!(
            key.path(),
            "/apis/networking.k8s.io/v1/namespaces/shop/ingresses/web"
        );
        assert_eq!(key.to_string(), "shop/web");
    }
}
