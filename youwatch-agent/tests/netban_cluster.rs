//! The node ban end to end, in network namespaces: two agents' node bans (each attached to its
//! own "node" namespace, the same client addresses in front of both) follow the test API
//! server's IPBans. A WAF ban decided by node-a's response is dropped by both kernels; unban
//! lets the client in on both; expiry lifts it on node-b after node-a is gone; a restart
//! keeps the bans in force from the pinned lists before the API server answers; an interface
//! whose connections come from a proxy is refused; a wrong interface fails the start by name.

mod support;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use aya::programs::{SchedClassifier, TcAttachType};
use support::{
    apiserver::ApiServer,
    netlab::{Bpffs, Lab, SERVER_IF, runnable},
    node_ban::{IPBANS, in_secs, ledger, record, response_on_node_a, server},
    response::{eventually, waf_ban},
};
use youwatch_agent::{
    cluster::ClusterContext,
    netban::{NodeBanConfig, NodeBanStage, crd},
    response::{DryRun, ResponseConfig, config::DenyBackend},
    stage::StageHandle,
};

const PORT: u16 = 8080;
const WAIT: Duration = Duration::from_millis(400);

/// A node: its lab and its running node ban.
struct Node {
    lab: Lab,
    stage: StageHandle,
    metrics: youwatch_agent::netban::metrics::NetbanMetrics,
    interfaces: usize,
}

fn node_config(lab: &Lab) -> NodeBanConfig {
    NodeBanConfig {
        enabled: true,
        interfaces: vec![SERVER_IF.into()],
        netns: lab.server_netns(),
        pin_dir: "".into(),
        gc_grace: Duration::from_millis(500),
        ..NodeBanConfig::default()
    }
}

fn start(server: &ApiServer, name: &str, lab: Lab, config: &NodeBanConfig) -> Node {
    let cluster = Arc::new(ClusterContext::new(server.client(), name.into()));
    let stage = NodeBanStage::new(
        config,
        &[],
        &ResponseConfig::default().retry,
        Some(cluster),
        DryRun::Off,
    )
    .expect("the node ban starts")
    .expect("enabled");
    let interfaces = stage.interfaces().len();
    let metrics = stage.metrics();
    Node {
        lab,
        stage: stage.spawn(),
        metrics,
        interfaces,
    }
}

impl Node {
    fn served(&self, from: std::net::IpAddr) -> bool {
        self.lab.connects(from, self.lab.server_v4, PORT, WAIT)
    }

    async fn stop(self) -> Lab {
        self.stage.stop();
        self.stage.join().await.unwrap();
        self.lab
    }
}

/// Two labs with the same addresses: one client seen by two nodes.
fn labs(tag: &str) -> (Lab, Lab) {
    let a = Lab::with_subnet(tag, 0, 40);
    let b = Lab::with_subnet(tag, 1, 40);
    a.serve(PORT);
    b.serve(PORT);
    (a, b)
}

/// Polls `check` (which blocks: connections) every 50 ms for up to 10 s.
async fn until(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_decided_on_one_node_is_dropped_by_every_nodes_kernel() {
    if !runnable("a_ban_decided_on_one_node_is_dropped_by_every_nodes_kernel") {
        return;
    }
    let server = server().await;
    let (lab_a, lab_b) = labs("conv");
    let (attacker, other) = (lab_a.client_a, lab_a.client_b);
    let (config_a, config_b) = (node_config(&lab_a), node_config(&lab_b));
    let a = start(&server, "node-a", lab_a, &config_a);
    let b = start(&server, "node-b", lab_b, &config_b);
    assert_eq!((a.interfaces, b.interfaces), (1, 1));
    server.wait_for_watches(2, Duration::from_secs(10)).await;
    assert!(
        a.served(attacker) && b.served(attacker),
        "served before the ban"
    );

    let state = tempfile::tempdir().unwrap();
    let response = response_on_node_a(&server, &[DenyBackend::NodeTc], DryRun::Off, state.path());
    response
        .publish(waf_ban(
            &attacker.to_string(),
            Some("shop.example"),
            Duration::from_secs(600),
            1,
        ))
        .await;
    until("refused on both nodes", || {
        !a.served(attacker) && !b.served(attacker)
    })
    .await;
    assert!(
        a.served(other) && b.served(other),
        "an unrelated address is served"
    );
    eventually("counted", || {
        a.metrics.entries.get() == 1 && b.metrics.entries.get() == 1
    })
    .await;

    // unban: the object goes, both kernels let the client in.
    let name = crd::name_for(&attacker.into());
    let api: kube::Api<crd::IpBan> = kube::Api::all(server.client());
    let ban = api.get(&name).await.unwrap();
    assert!(
        ledger(&server)
            .delete(&ban, SystemTime::now() + Duration::from_secs(10))
            .await
            .unwrap()
    );
    until("served on both nodes again", || {
        a.served(attacker) && b.served(attacker)
    })
    .await;

    // A short ban by node-a; node-a goes away; node-b lifts it at its expiry.
    response
        .publish(waf_ban(
            &attacker.to_string(),
            None,
            Duration::from_secs(3),
            2,
        ))
        .await;
    until("refused again", || {
        !a.served(attacker) && !b.served(attacker)
    })
    .await;
    response.stop().await;
    let _lab_a = a.stop().await;
    until("node-b lets it in at the expiry", || b.served(attacker)).await;
    eventually("node-b deletes the object its author left", || {
        server.get(IPBANS, "", &name).is_none()
    })
    .await;
    let lab_b = b.stop().await;
    assert_eq!(tcx_programs(&lab_b), 0, "stopped: detached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_enforces_the_pinned_bans_before_the_api_server_answers() {
    if !runnable("a_restart_enforces_the_pinned_bans_before_the_api_server_answers") {
        return;
    }
    let server = server().await;
    let lab = Lab::new("restart", 50);
    lab.serve(PORT);
    let attacker = lab.client_a;
    let bpffs = Bpffs::mount();
    let mut config = node_config(&lab);
    config.pin_dir = bpffs.path();
    let node = start(&server, "node-a", lab, &config);
    server.wait_for_watches(1, Duration::from_secs(10)).await;
    record(
        &ledger(&server),
        &attacker.to_string(),
        in_secs(600),
        "node-a",
        1,
    )
    .await;
    until("refused", || !node.served(attacker)).await;
    let lab = node.stop().await;
    assert!(
        lab.connects(attacker, lab.server_v4, PORT, WAIT),
        "stopped: detached"
    );

    // The API server is down while the agent restarts.
    server.stop();
    let node = start(&server, "node-a", lab, &config);
    assert!(
        !node.served(attacker),
        "banned at once, from the pinned list"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interface_whose_connections_come_from_a_proxy_is_refused() {
    if !runnable("an_interface_whose_connections_come_from_a_proxy_is_refused") {
        return;
    }
    let server = server().await;
    let lab = Lab::new("proxied", 60);
    lab.serve(PORT);
    let proxy = lab.client_a;
    let mut config = node_config(&lab);
    config.proxies = vec![ipnet::IpNet::from(proxy)];
    config.visibility.ports = vec![PORT];
    config.visibility.check_every = Duration::from_millis(300);
    config.visibility.min_connections = 5;
    let node = start(&server, "node-a", lab, &config);
    assert_eq!(tcx_programs(&node.lab), 1);
    // Every connection comes through the "load balancer".
    for _ in 0..8 {
        assert!(node.served(proxy));
    }
    eventually("the interface is refused", || {
        node.metrics.interfaces_refused.get() == 1
    })
    .await;
    assert_eq!(node.metrics.interfaces.get(), 0);
    assert_eq!(
        tcx_programs(&node.lab),
        0,
        "detached from the refused interface"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_interface_fails_the_start_by_name() {
    if !runnable("a_wrong_interface_fails_the_start_by_name") {
        return;
    }
    let server = server().await;
    let lab = Lab::new("wrong-if", 70);
    let cluster = Arc::new(ClusterContext::new(server.client(), "node-a".into()));
    for (interface, says) in [("eth9", "no such interface"), ("lo", "not Ethernet")] {
        let mut config = node_config(&lab);
        config.interfaces = vec![interface.into()];
        let err = NodeBanStage::new(
            &config,
            &[],
            &ResponseConfig::default().retry,
            Some(cluster.clone()),
            DryRun::Off,
        )
        .err()
        .expect("refused")
        .to_string();
        assert!(
            err.contains(&format!("interface {interface}:")) && err.contains(says),
            "{err}"
        );
    }
    assert_eq!(
        tcx_programs(&lab),
        0,
        "nothing left attached after a failed start"
    );
}

fn tcx_programs(lab: &Lab) -> usize {
    Lab::within(&lab.server_ns, || {
        SchedClassifier::query_tcx(SERVER_IF, TcAttachType::Ingress)
            .map(|(_, programs)| programs.len())
            .unwrap_or(0)
    })
}
