//! The Ingresses the agent manages (those matching `deny_ip.ingress_selector`), from a
//! kube-rs reflector: a watch that resumes after dropped connections and re-lists after
//! `410 Gone`, errors retried with backoff. Answers which Ingresses serve a host
//! ([`hosts`](super::hosts)) or route to some Services, and announces every change (expiry
//! rescans on it).
//!
//! Lookups scan the cached Ingresses (hundreds at most in a cluster; a host map would have to
//! be rebuilt on every re-list anyway).

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, SystemTime},
};

use futures::StreamExt;
use k8s_openapi::api::networking::v1::Ingress;
use kube::{
    Api, Client,
    core::Selector,
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        utils::Backoff as KubeBackoff,
        watcher,
    },
};
use tokio::sync::watch;

use super::{
    hosts,
    metrics::IngressMetrics,
    patch::IngressKey,
    routes::{self, RegexCache},
};
use crate::{correlate::suspicion::Workload, response::retry::Backoff, stage::StopSignal};

/// The managed Ingresses, as last seen; cheap to clone.
#[derive(Clone)]
pub struct IngressIndex {
    store: Store<Ingress>,
    changes: watch::Receiver<u64>,
    /// Set once the first list is complete. (kube's `Store::wait_until_ready` wakes only
    /// the last of several concurrent waiters: a futures oneshot keeps one waker.)
    listed: watch::Receiver<bool>,
}

impl IngressIndex {
    /// Starts watching; the task ends on `stop`.
    pub fn spawn(
        client: Client,
        selector: &Selector,
        metrics: IngressMetrics,
        stop: StopSignal,
    ) -> (IngressIndex, tokio::task::JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let (tx, changes) = watch::channel(0u64);
        let (listed_tx, listed) = watch::channel(false);
        let api: Api<Ingress> = crate::cluster::rbac::INGRESS_WATCH.all(client);
        let config = watcher::Config::default().labels_from(selector);
        let reader = store.clone();
        let task = tokio::spawn(async move {
            let stream =
                reflector::reflector(writer, watcher(api, config)).backoff(WatchBackoff::default());
            let mut stream = std::pin::pin!(stream);
            let mut healthy = true;
            loop {
                let item = tokio::select! {
                    _ = stop.stopped() => return,
                    item = stream.next() => item,
                };
                match item {
                    None => return,
                    Some(Ok(event)) => {
                        if !healthy {
                            tracing::info!("Ingress watch recovered");
                            healthy = true;
                        }
                        if matches!(event, watcher::Event::InitDone) {
                            listed_tx.send_if_modified(|l| !std::mem::replace(l, true));
                        }
                        // Page by page during a (re-)list: announce once it is whole.
                        if !matches!(event, watcher::Event::Init | watcher::Event::InitApply(_)) {
                            metrics.managed.set(reader.len() as i64);
                            tx.send_modify(|n| *n = n.wrapping_add(1));
                        }
                    }
                    Some(Err(err)) => {
                        metrics.watch_errors.inc();
                        let error = format!("{:#}", anyhow::Error::from(err));
                        tracing::warn!(error, "Ingress watch failed; retrying");
                        healthy = false;
                    }
                }
            }
        });
        (
            IngressIndex {
                store,
                changes,
                listed,
            },
            task,
        )
    }

    /// Waits for the first complete list; false if the watch task ended first.
    pub async fn listed(&self) -> bool {
        self.listed.clone().wait_for(|l| *l).await.is_ok()
    }

    /// [`listed`](Self::listed), until `deadline`.
    pub async fn ready(&self, deadline: SystemTime) -> bool {
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::timeout(left, self.listed())
            .await
            .unwrap_or(false)
    }

    pub fn get(&self, key: &IngressKey) -> Option<Arc<Ingress>> {
        self.store
            .get(&ObjectRef::new(&key.name).within(&key.namespace))
    }

    pub fn all(&self) -> Vec<Arc<Ingress>> {
        self.store.state()
    }

    /// The Ingresses serving `host` as ingress-nginx routes it; `None`: every managed one.
    pub fn serving(&self, host: Option<&str>) -> Vec<IngressKey> {
        let all = self.store.state();
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
            .store
            .state()
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
        let all = self.store.state();
        routes::route(all.iter().map(|i| i.as_ref()), host, path, regexes)
    }

    /// Bumped after every change (once a re-list is complete).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    /// How many Ingresses are managed.
    pub fn len(&self) -> usize {
        self.store.len()
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

/// Watch retry delays: 200 ms doubling to 10 s with jitter, back to 200 ms after a success
/// (so a restarted API server is followed within seconds).
struct WatchBackoff(Backoff);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff(Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(10),
        ))
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0.next_delay())
    }
}

impl KubeBackoff for WatchBackoff {
    fn reset(&mut self) {
        self.0.reset();
    }
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
