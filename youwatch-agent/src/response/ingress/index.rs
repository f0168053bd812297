//! The Ingresses the agent manages (those matching `deny_ip.ingress_selector`), from a
//! reflector ([`crate::cluster::reflect`]). Answers which Ingresses serve a host
//! ([`hosts`]) or route to some Services, and announces every change (expiry
//! rescans on it).
//!
//! Lookups scan the cached Ingresses (hundreds at most in a cluster; a host map would have to
//! be rebuilt on every re-list anyway).

use std::{collections::BTreeSet, sync::Arc, time::SystemTime};

use k8s_openapi::api::networking::v1::Ingress;
use kube::{
    Api, Client,
    core::Selector,
    runtime::{reflector::ObjectRef, watcher},
};
use tokio::sync::watch;

use super::{
    hosts,
    metrics::IngressMetrics,
    patch::IngressKey,
    routes::{self, RegexCache},
};
use crate::{
    cluster::reflect::{Reflected, WatchMetrics},
    correlate::suspicion::Workload,
    stage::StopSignal,
};

/// The managed Ingresses, as last seen; cheap to clone.
#[derive(Clone)]
pub struct IngressIndex {
    watched: Reflected<Ingress>,
}

impl IngressIndex {
    /// Starts watching; the task ends on `stop`.
    pub fn spawn(
        client: Client,
        selector: &Selector,
        metrics: IngressMetrics,
        stop: StopSignal,
    ) -> (IngressIndex, tokio::task::JoinHandle<()>) {
        let api: Api<Ingress> = crate::cluster::rbac::INGRESS_WATCH.all(client);
        let config = watcher::Config::default().labels_from(selector);
        let metrics = WatchMetrics {
            objects: metrics.managed,
            errors: metrics.watch_errors,
        };
        let (watched, task) = Reflected::spawn(api, config, "Ingress", metrics, stop);
        (IngressIndex { watched }, task)
    }

    /// Waits for the first complete list; false if the watch task ended first.
    pub async fn listed(&self) -> bool {
        self.watched.listed().await
    }

    /// [`listed`](Self::listed), until `deadline`.
    pub async fn ready(&self, deadline: SystemTime) -> bool {
        self.watched.ready(deadline).await
    }

    pub fn get(&self, key: &IngressKey) -> Option<Arc<Ingress>> {
        self.watched
            .store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    pub fn all(&self) -> Vec<Arc<Ingress>> {
        self.watched.all()
    }

    /// The Ingresses serving `host` as ingress-nginx routes it; `None`: every managed one.
    pub fn serving(&self, host: Option<&str>) -> Vec<IngressKey> {
        let all = self.watched.all();
        let mut keys: Vec<IngressKey> = match host {
            None => all.iter().map(|i| IngressKey::of(i)).collect(),
            Some(host) => hosts::serving(all.iter().map(|i| i.as_ref()), host)
                .into_iter()
                .map(IngressKey::of)
                .collect(),
        };
        keys.sort();
        keys
    }

    /// The Ingresses in `namespace` with a backend among `services`.
    pub fn routing_to(&self, namespace: &str, services: &BTreeSet<String>) -> Vec<IngressKey> {
        let mut keys: Vec<IngressKey> = self
            .watched
            .all()
            .iter()
            .filter(|i| i.metadata.namespace.as_deref() == Some(namespace))
            .filter(|i| backends(i).any(|s| services.contains(s)))
            .map(|i| IngressKey::of(i))
            .collect();
        keys.sort();
        keys
    }

    /// The Service a request for `host` and `path` reaches, as ingress-nginx routes it.
    pub fn route(
        &self,
        host: Option<&str>,
        path: &str,
        regexes: &mut RegexCache,
    ) -> Option<Workload> {
        let all = self.watched.all();
        routes::route(all.iter().map(|i| i.as_ref()), host, path, regexes)
    }

    /// Bumped after every change (once a re-list is complete).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.watched.changes()
    }

    /// How many Ingresses are managed.
    pub fn len(&self) -> usize {
        self.watched.len()
    }
}

/// The Service names an Ingress routes to: its rules' paths and its default backend.
pub fn backends(ingress: &Ingress) -> impl Iterator<Item = &str> {
    let spec = ingress.spec.as_ref();
    let default = spec
        .and_then(|s| s.default_backend.as_ref())
        .and_then(|b| b.service.as_ref())
        .map(|s| s.name.as_str());
    let paths = spec
        .and_then(|s| s.rules.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter())
        .filter_map(|p| p.backend.service.as_ref())
        .map(|s| s.name.as_str());
    default.into_iter().chain(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_of_rules_and_default() {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {
                "defaultBackend": {"service": {"name": "fallback", "port": {"number": 80}}},
                "rules": [{"host": "shop.example", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "juice-shop", "port": {"number": 3000}}}},
                ]}}],
            },
        }))
        .unwrap();
        assert_eq!(
            backends(&ingress).collect::<Vec<_>>(),
            ["fallback", "juice-shop"]
        );
    }
}
