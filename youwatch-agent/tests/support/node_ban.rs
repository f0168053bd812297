//! The node ban against the test API server: IPBans served, a node's ledger follower with a
//! deny table in memory (or the real kernel's), the objects as stored.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use youwatch_agent::{
    cluster::ClusterContext,
    netban::{
        NodeBanConfig, NodeBanStage,
        crd::{self, IpBan, IpBanSpec},
        kernel::{DenyTable, table::MemoryTable},
        ledger::{Ledger, Recorded},
        sync::SharedTable,
    },
    response::{
        DryRun, ResponseConfig,
        config::{DenyBackend, DenyBackends},
    },
    stage::StageHandle,
};

use super::{
    apiserver::{ApiServer, resources::ResourceType},
    response::{Running, start_as},
};

pub const IPBANS: &str = "youwatch.dev/ipbans";

/// Serves the IPBan CRD (cluster-scoped), as `deploy/base/ipban-crd.yaml` declares it.
pub fn serve_ipbans(server: &ApiServer) {
    server.add_resource(
        ResourceType::new("youwatch.dev", "v1alpha1", "ipbans", "IPBan", false)
            .with_subresources(&[]),
    );
}

/// The test API server, serving IPBans.
pub async fn server() -> ApiServer {
    let server = ApiServer::start().await;
    serve_ipbans(&server);
    server
}

/// Short timings for tests.
pub fn config() -> NodeBanConfig {
    NodeBanConfig {
        enabled: true,
        gc_grace: Duration::from_millis(500),
        ..NodeBanConfig::default()
    }
}

/// The response config with the WAF playbook banning through `backends`, short timings.
pub fn response_config(backends: &[DenyBackend]) -> ResponseConfig {
    let mut c = ResponseConfig::default();
    c.deny_ip.coalesce = Duration::from_millis(50);
    c.retry.initial_backoff = Duration::from_millis(20);
    c.retry.max_backoff = Duration::from_millis(200);
    c.shutdown_grace = Duration::from_secs(2);
    let waf = c
        .playbooks
        .iter_mut()
        .find(|p| p.name == "deny-waf-attacker")
        .expect("the default WAF playbook");
    waf.deny_ip_backends = DenyBackends(backends.to_vec());
    c
}

/// A node's ledger follower with its deny table in memory.
pub struct Node {
    pub table: SharedTable,
    pub stage: StageHandle,
}

impl Node {
    pub fn start(
        server: &ApiServer,
        name: &str,
        config: &NodeBanConfig,
        allowlist: &[ipnet::IpNet],
    ) -> Node {
        let table: Box<dyn DenyTable> = Box::new(MemoryTable::new(1024));
        let cluster = Arc::new(ClusterContext::new(server.client(), name.into()));
        let stage = NodeBanStage::without_kernel(
            config,
            allowlist,
            &ResponseConfig::default().retry,
            cluster,
            table,
        );
        let table = stage.table();
        Node {
            table,
            stage: stage.spawn(),
        }
    }

    /// The ranges in the table.
    pub fn holds(&self) -> Vec<String> {
        let table = self.table.lock().unwrap();
        table.entries().keys().map(|n| n.to_string()).collect()
    }

    pub async fn stop(self) {
        self.stage.stop();
        self.stage.join().await.unwrap();
    }
}

/// Starts a node for each of `names`, with no allowlist, and waits until all watch.
pub async fn nodes<const N: usize>(
    server: &ApiServer,
    config: &NodeBanConfig,
    names: [&str; N],
) -> [Node; N] {
    let nodes = names.map(|name| Node::start(server, name, config, &[]));
    server.wait_for_watches(N, Duration::from_secs(10)).await;
    nodes
}

/// The IPBans stored, through the real client.
pub async fn ipbans(server: &ApiServer) -> Vec<IpBan> {
    let api: kube::Api<IpBan> = kube::Api::all(server.client());
    api.list(&Default::default())
        .await
        .expect("listing IPBans")
        .items
}

/// The ledger through the real client, with the short retries of [`response_config`].
pub fn ledger(server: &ApiServer) -> Ledger {
    Ledger {
        client: server.client(),
        retry: response_config(&[]).retry,
        server_dry_run: false,
    }
}

/// A ban of `address` until `expires`, decided on `node` for its `offenses`-th offense.
pub fn spec_until(address: &str, expires: SystemTime, node: &str, offenses: u32) -> IpBanSpec {
    let net = crd::parse_address(address).unwrap();
    crd::spec(
        &net,
        expires,
        "WAF attacker to ban (sqli)",
        "evidence",
        node,
        offenses,
        None,
    )
}

/// Records [`spec_until`] in `ledger` (retrying for up to 20 s); what it did.
pub async fn record(
    ledger: &Ledger,
    address: &str,
    expires: SystemTime,
    node: &str,
    offenses: u32,
) -> Recorded {
    let spec = spec_until(address, expires, node, offenses);
    ledger.record(&spec, in_secs(20), &|| {}).await.unwrap()
}

/// Whole seconds from now (what an IPBan keeps).
pub fn in_secs(s: u64) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(now + s)
}

/// node-a's response stage, its WAF playbook banning through `backends`; state in `state`.
pub fn response_on_node_a(
    server: &ApiServer,
    backends: &[DenyBackend],
    dry_run: DryRun,
    state: &Path,
) -> Running {
    start_as(
        "node-a",
        Some(server),
        &response_config(backends),
        dry_run,
        state,
    )
}
