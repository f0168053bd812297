//! The node ban against the test API server: IPBans served, a node's ledger follower with a
//! deny table in memory (or the real kernel's), the objects as stored.

use std::{sync::Arc, time::Duration};

use youwatch_agent::{
    cluster::ClusterContext,
    netban::{
        NodeBanConfig, NodeBanStage,
        crd::IpBan,
        kernel::{DenyTable, table::MemoryTable},
        sync::SharedTable,
    },
    response::{
        ResponseConfig,
        config::{DenyBackend, DenyBackends},
    },
    stage::StageHandle,
};

use super::apiserver::{ApiServer, resources::ResourceType};

pub const IPBANS: &str = "youwatch.dev/ipbans";

/// Serves the IPBan CRD (cluster-scoped), as `deploy/base/ipban-crd.yaml` declares it.
pub fn serve_ipbans(server: &ApiServer) {
    server.add_resource(
        ResourceType::new("youwatch.dev", "v1alpha1", "ipbans", "IPBan", false)
            .with_subresources(&[]),
    );
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

/// The IPBans stored, through the real client.
pub async fn ipbans(server: &ApiServer) -> Vec<IpBan> {
    let api: kube::Api<IpBan> = kube::Api::all(server.client());
    api.list(&Default::default())
        .await
        .expect("listing IPBans")
        .items
}
