//! Does an interface see the clients' own addresses? The node ban drops by source address,
//! so it is only right where the source is the client: behind a load balancer that proxies
//! (an HTTP load balancer, a TCP proxy speaking PROXY protocol) or that SNATs, the source is
//! the load balancer, and banning the addresses the WAF names would do nothing while a
//! mistaken ban of the load balancer would cut off everyone.
//!
//! So the program counts connection opens (TCP SYN) to the ingress ports
//! (`node_ban.visibility.ports`) by interface and source, and every `check_every` each
//! interface's sample is judged: once it holds `min_connections`, if fewer than
//! `min_client_share` of them come from client addresses — not this node's own addresses,
//! not `node_ban.proxies`, not `response.allowlist` (node, pod and service CIDRs) — the
//! interface is refused: the program is detached from it and the agent says why. A refused
//! interface stays refused until the agent restarts.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use super::{
    config::VisibilityConfig,
    guard::{KernelGuard, overlap},
    interfaces,
    kernel::{Attached, Programs, Sampler, sample::Sources},
    metrics::NetbanMetrics,
    netns::NetnsWorker,
    sync::SharedGuard,
};
use crate::stage::StopSignal;

/// Who a source is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One of this node's addresses (SNAT, a local proxy, hairpin traffic).
    Own,
    /// In `node_ban.proxies`.
    Proxy,
    /// In `response.allowlist`: another node, a pod, a service.
    Internal,
    Client,
}

pub fn kind(source: IpAddr, guard: &KernelGuard) -> Kind {
    let one = ipnet::IpNet::from(source);
    if source.is_loopback() || guard.own.contains(&source) {
        Kind::Own
    } else if guard.proxies.iter().any(|p| overlap(p, &one)) {
        Kind::Proxy
    } else if guard.allowlist.iter().any(|p| overlap(p, &one)) {
        Kind::Internal
    } else {
        Kind::Client
    }
}

/// What a sample says about an interface.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Fewer connections than `min_connections`: no opinion yet.
    TooFew {
        connections: u64,
    },
    Clients {
        share: f64,
    },
    /// Not the clients' addresses: the sources that carried most connections, with who
    /// they are.
    Proxied {
        share: f64,
        top: Vec<(IpAddr, Kind, u64)>,
    },
}

pub fn judge(sources: &Sources, guard: &KernelGuard, config: &VisibilityConfig) -> Verdict {
    let connections: u64 = sources.values().sum();
    if connections < config.min_connections.max(1) {
        return Verdict::TooFew { connections };
    }
    let clients: u64 = sources
        .iter()
        .filter(|(s, _)| kind(**s, guard) == Kind::Client)
        .map(|(_, n)| n)
        .sum();
    let share = clients as f64 / connections as f64;
    if share >= config.min_client_share {
        return Verdict::Clients { share };
    }
    let mut top: Vec<(IpAddr, Kind, u64)> = sources
        .iter()
        .map(|(s, n)| (*s, kind(*s, guard), *n))
        .collect();
    top.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    top.truncate(5);
    Verdict::Proxied { share, top }
}

/// An interface the program is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub how: Attached,
}

/// The periodic check.
pub struct Checker {
    pub worker: Arc<NetnsWorker<Programs>>,
    pub sampler: Arc<Mutex<Sampler>>,
    pub interfaces: Arc<Mutex<Vec<Interface>>>,
    pub guard: SharedGuard,
    pub config: VisibilityConfig,
    pub metrics: NetbanMetrics,
}

impl Checker {
    pub fn spawn(self, stop: StopSignal) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if self.config.ports.is_empty() {
                return;
            }
            loop {
                tokio::select! {
                    _ = stop.stopped() => return,
                    _ = tokio::time::sleep(self.config.check_every) => {}
                }
                self.check().await;
            }
        })
    }

    async fn check(&self) {
        // The node's addresses may have changed (a new address, a failover IP).
        let worker = self.worker.clone();
        if let Ok(Ok(Ok(own))) =
            tokio::task::spawn_blocking(move || worker.run(|_| interfaces::own_addresses())).await
        {
            self.guard.write().unwrap_or_else(|e| e.into_inner()).own = own;
        }
        let sample = self
            .sampler
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let guard = self.guard.read().unwrap_or_else(|e| e.into_inner()).clone();
        let attached = self
            .interfaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let empty = BTreeMap::new();
        for interface in attached {
            let sources = sample.get(&interface.ifindex).unwrap_or(&empty);
            match judge(sources, &guard, &self.config) {
                Verdict::TooFew { connections } => {
                    tracing::debug!(
                        interface = interface.name,
                        connections,
                        "too few connections to judge the sources yet"
                    );
                }
                Verdict::Clients { share } => {
                    tracing::debug!(
                        interface = interface.name,
                        share,
                        "connections come from clients"
                    );
                }
                Verdict::Proxied { share, top } => self.refuse(&interface, share, &top).await,
            }
        }
    }

    async fn refuse(&self, interface: &Interface, share: f64, top: &[(IpAddr, Kind, u64)]) {
        let sources: Vec<String> = top
            .iter()
            .map(|(s, k, n)| format!("{s} ({k:?}, {n})"))
            .collect();
        tracing::error!(
            interface = interface.name,
            client_share = share,
            sources = sources.join(", "),
            "the node ban refuses this interface: its connections come from proxies, load \
             balancers or the node itself, not from clients, so banning client addresses here \
             would do nothing (and banning a load balancer would cut off everyone). Keep \
             client addresses visible (externalTrafficPolicy: Local, a passthrough load \
             balancer, hostNetwork or hostPort controllers), or use the ingress-annotation \
             backend, which reads the client address the proxy forwards"
        );
        let name = interface.name.clone();
        let worker = self.worker.clone();
        let detached =
            tokio::task::spawn_blocking(move || worker.run(move |p| p.detach(&name))).await;
        if !matches!(detached, Ok(Ok(Ok(())))) {
            tracing::error!(
                interface = interface.name,
                "cannot detach the node ban from the refused interface"
            );
        }
        let mut attached = self.interfaces.lock().unwrap_or_else(|e| e.into_inner());
        attached.retain(|i| i.name != interface.name);
        self.metrics.interfaces.set(attached.len() as i64);
        self.metrics.interfaces_refused.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netban::guard::tests::guard;

    fn sample(pairs: &[(&str, u64)]) -> Sources {
        pairs
            .iter()
            .map(|(a, n)| (a.parse().unwrap(), *n))
            .collect()
    }

    #[test]
    fn clients_proxies_and_too_little_to_say() {
        let config = VisibilityConfig::default();
        let g = guard();
        assert_eq!(
            judge(&sample(&[("198.51.100.1", 5)]), &g, &config),
            Verdict::TooFew { connections: 5 }
        );
        let clients = sample(&[
            ("198.51.100.1", 10),
            ("198.51.100.2", 10),
            ("203.0.113.1", 5),
        ]);
        assert!(matches!(judge(&clients, &g, &config), Verdict::Clients { share } if share == 0.8));
        // An HTTP load balancer (two proxy nodes) and a few direct clients.
        let proxied = sample(&[
            ("203.0.113.1", 40),
            ("203.0.113.2", 30),
            ("198.51.100.1", 2),
        ]);
        let Verdict::Proxied { share, top } = judge(&proxied, &g, &config) else {
            panic!()
        };
        assert!(share < 0.05);
        assert_eq!(top[0], ("203.0.113.1".parse().unwrap(), Kind::Proxy, 40));
        // SNAT by the node itself or other nodes (externalTrafficPolicy: Cluster, second hop).
        let snat = sample(&[("192.168.1.10", 30), ("10.0.0.5", 30)]);
        assert!(matches!(judge(&snat, &g, &config), Verdict::Proxied { .. }));
        assert_eq!(kind("127.0.0.1".parse().unwrap(), &g), Kind::Own);
    }
}
