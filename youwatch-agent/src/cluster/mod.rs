//! The cluster context: what every stage that talks to the API server shares — one client,
//! this node's name, the agent's own namespace and pod (never guarded, never acted on), and
//! the name it reports Events under. Built once in `run.rs` (as kube-rs controllers build
//! their `Context`) and handed to the inventory and the response stage.
//!
//! Without a cluster (node-local mode, a dev VM) there is no context: the inventory discovers
//! containers from cgroupfs and the response stage can only plan (dry-run).

pub mod mode;
pub mod rbac;
pub mod reflect;
pub mod rescan;

use std::sync::Arc;

pub use mode::{Decision, InventoryMode, ModeError};

/// The controller name on the Events the agent writes (`reportingController`).
pub const REPORTING_CONTROLLER: &str = "youwatch.dev/agent";

/// Shared by the stages that use the API server; cheap to clone.
#[derive(Clone)]
pub struct ClusterContext {
    pub client: kube::Client,
    /// The node this agent runs on (only its pods are guarded and deleted).
    pub node_name: String,
    /// The agent's namespace (`$POD_NAMESPACE`, else the service account's).
    pub own_namespace: Option<String>,
    /// The agent's pod (`$POD_NAME`), never deleted.
    pub own_pod: Option<String>,
    /// `reportingInstance` on Events: the agent's pod, else the node.
    pub reporting_instance: String,
}

impl std::fmt::Debug for ClusterContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterContext")
            .field("node_name", &self.node_name)
            .field("own_namespace", &self.own_namespace)
            .field("own_pod", &self.own_pod)
            .finish_non_exhaustive()
    }
}

impl ClusterContext {
    /// A context for `client` on `node_name`, the agent's identity from the environment.
    pub fn new(client: kube::Client, node_name: String) -> ClusterContext {
        let own_pod = std::env::var("POD_NAME").ok().filter(|n| !n.is_empty());
        ClusterContext {
            client,
            reporting_instance: own_pod.clone().unwrap_or_else(|| node_name.clone()),
            node_name,
            own_namespace: mode::own_namespace(),
            own_pod,
        }
    }
}

/// Decides the mode (logging which and why) and, in cluster mode, builds the context.
pub async fn connect(
    mode: InventoryMode,
    node_name: String,
) -> Result<Option<Arc<ClusterContext>>, ModeError> {
    let (client, decision) = mode::choose(mode).await?;
    match &decision {
        Decision::Cluster(why) => tracing::info!(why, "agent mode: cluster"),
        Decision::NodeLocal(why) => tracing::info!(why, "agent mode: node-local (no cluster)"),
    }
    let Some(client) = client else {
        return Ok(None);
    };
    if node_name.is_empty() {
        return Err(ModeError::NoNodeName);
    }
    Ok(Some(Arc::new(ClusterContext::new(client, node_name))))
}
