//! The Services of a pod (for a quarantine by pod and the correlation): those in the pod's
//! namespace whose selector picks the pod's labels (listed from the API server: RBAC
//! `services list`, nothing else); and the managed Ingresses routing to any of them.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::SystemTime,
};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use super::{index::IngressIndex, patch::IngressKey};
use crate::response::{
    config::RetryConfig,
    retry::{Failure, with_retry},
};

/// The names of the Services in `namespace` selecting a pod with `labels` (a Service
/// without a selector selects nothing: its endpoints are managed by hand).
pub fn selecting<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    labels: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    services
        .into_iter()
        .filter(|s| {
            let selector = s.spec.as_ref().and_then(|spec| spec.selector.as_ref());
            selector.is_some_and(|sel| {
                !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
        })
        .filter_map(|s| s.metadata.name.clone())
        .collect()
}

/// The managed Ingresses routing to the pod `namespace/name` (labels as known; read from
/// the pod when unknown).
pub async fn ingresses_of_pod(
    client: &kube::Client,
    index: &IngressIndex,
    retry: &RetryConfig,
    deadline: SystemTime,
    on_retry: impl FnMut(&str),
    pod: (&str, &str, &BTreeMap<String, String>),
) -> Result<Vec<IngressKey>, Failure> {
    let names = services_of_pod(client, retry, deadline, on_retry, pod).await?;
    Ok(index.routing_to(pod.0, &names))
}

/// The names of the Services selecting the pod `namespace/name` (labels as known; read from
/// the pod when unknown): RBAC `services list`, and `pods get` without labels.
pub async fn services_of_pod(
    client: &kube::Client,
    retry: &RetryConfig,
    deadline: SystemTime,
    mut on_retry: impl FnMut(&str),
    (namespace, name, labels): (&str, &str, &BTreeMap<String, String>),
) -> Result<BTreeSet<String>, Failure> {
    let read;
    let labels = if labels.is_empty() {
        let pod = read_pod(client, retry, deadline, &mut on_retry, namespace, name).await?;
        read = pod.metadata.labels.unwrap_or_default();
        &read
    } else {
        labels
    };
    let api: Api<Service> =
        crate::cluster::rbac::SERVICE_LIST.namespaced(client.clone(), namespace);
    let params = ListParams::default();
    let services = with_retry(retry, deadline, &mut on_retry, || api.list(&params)).await?;
    Ok(selecting(&services.items, labels))
}

/// The pod `namespace/name` as the API server has it (RBAC `pods get`).
pub async fn read_pod(
    client: &kube::Client,
    retry: &RetryConfig,
    deadline: SystemTime,
    on_retry: impl FnMut(&str),
    namespace: &str,
    name: &str,
) -> Result<Pod, Failure> {
    let pods: Api<Pod> = crate::cluster::rbac::POD_GET.namespaced(client.clone(), namespace);
    with_retry(retry, deadline, on_retry, || pods.get(name)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, selector: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name}, "spec": {"selector": selector},
        }))
        .unwrap()
    }

    #[test]
    fn services_whose_selector_picks_the_pod() {
        let labels: BTreeMap<String, String> = [
            ("app".to_owned(), "juice-shop".to_owned()),
            ("tier".to_owned(), "web".to_owned()),
        ]
        .into();
        let all = [
            service("web", serde_json::json!({"app": "juice-shop"})),
            service(
                "both",
                serde_json::json!({"app": "juice-shop", "tier": "web"}),
            ),
            service("db", serde_json::json!({"app": "juice-shop", "tier": "db"})),
            service("manual", serde_json::json!({})),
        ];
        assert_eq!(
            selecting(&all, &labels).into_iter().collect::<Vec<_>>(),
            ["both", "web"]
        );
    }
}
