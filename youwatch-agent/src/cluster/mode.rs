//! Cluster mode or node-local mode.
//!
//! `inventory.mode: auto` (the default) chooses cluster mode when a way to reach an API server
//! is present — `$KUBECONFIG`, `~/.kube/config`, or the in-cluster service environment
//! (`$KUBERNETES_SERVICE_HOST`, as in the DaemonSet) — and node-local mode otherwise: on a dev
//! VM without a cluster, containers are discovered from cgroupfs. `cluster` and `node-local`
//! force a mode; in cluster mode a configuration that does not work is an error, never a
//! silent fall-back.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InventoryMode {
    #[default]
    Auto,
    Cluster,
    NodeLocal,
}

/// The decision, and why (for the start-up log line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Cluster(String),
    NodeLocal(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error(
        "inventory mode is cluster ({why}) but no Kubernetes client could be configured: {message}. \
         Point $KUBECONFIG at a kubeconfig, run in a pod with a service account, \
         or set inventory.mode: node-local"
    )]
    Config { why: String, message: String },
    #[error(
        "inventory mode is cluster but the node name is unknown: set $NODE_NAME \
         (the DaemonSet sets it from spec.nodeName) or agent.node_name"
    )]
    NoNodeName,
}

/// Decides the mode from configuration and environment. `env` reads a variable;
/// `home_kubeconfig` is `~/.kube/config`, when a home directory is known.
pub fn decide(
    mode: InventoryMode,
    env: impl Fn(&str) -> Option<String>,
    home_kubeconfig: Option<PathBuf>,
) -> Decision {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    match mode {
        InventoryMode::Cluster => Decision::Cluster("inventory.mode is cluster".into()),
        InventoryMode::NodeLocal => Decision::NodeLocal("inventory.mode is node-local".into()),
        InventoryMode::Auto => {
            if let Some(path) = set("KUBECONFIG") {
                Decision::Cluster(format!("$KUBECONFIG is set ({path})"))
            } else if let Some(host) = set("KUBERNETES_SERVICE_HOST") {
                Decision::Cluster(format!(
                    "running in a cluster ($KUBERNETES_SERVICE_HOST={host})"
                ))
            } else if let Some(path) = home_kubeconfig.filter(|p| p.is_file()) {
                Decision::Cluster(format!("{} exists", path.display()))
            } else {
                Decision::NodeLocal(
                    "no $KUBECONFIG, no ~/.kube/config and not running in a cluster".into(),
                )
            }
        }
    }
}

/// Decides the mode for this process; for cluster mode, builds the client (lazily: nothing is
/// sent until a stage uses it).
pub async fn choose(mode: InventoryMode) -> Result<(Option<kube::Client>, Decision), ModeError> {
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config"));
    let decision = decide(mode, |name| std::env::var(name).ok(), home);
    let why = match &decision {
        Decision::NodeLocal(_) => return Ok((None, decision)),
        Decision::Cluster(why) => why.clone(),
    };
    let mut config = kube::Config::infer().await.map_err(|e| ModeError::Config {
        why: why.clone(),
        message: format!("{:#}", anyhow::Error::from(e)),
    })?;
    // Every stage retries with its own policy (the inventory backs off like client-go's
    // reflector; the response retries until an action's deadline). kube's built-in layer
    // would retry 429/503/504 up to 15 times (~3 min) underneath them, unseen.
    config.default_retry = false;
    let client = kube::Client::try_from(config).map_err(|e| ModeError::Config {
        why,
        message: format!("{:#}", anyhow::Error::from(e)),
    })?;
    Ok((Some(client), decision))
}

/// `$POD_NAMESPACE` (downward API), else the service account's namespace file.
pub fn own_namespace() -> Option<String> {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn auto_prefers_a_kubeconfig_then_in_cluster_then_node_local() {
        let auto = InventoryMode::Auto;
        assert!(matches!(
            decide(auto, env(&[("KUBECONFIG", "/k")]), None),
            Decision::Cluster(why) if why.contains("/k")
        ));
        assert!(matches!(
            decide(auto, env(&[("KUBERNETES_SERVICE_HOST", "10.0.0.1")]), None),
            Decision::Cluster(why) if why.contains("10.0.0.1")
        ));
        assert!(matches!(
            decide(
                auto,
                env(&[("KUBECONFIG", "")]),
                Some("/nonexistent/config".into())
            ),
            Decision::NodeLocal(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::write(&config, "").unwrap();
        assert!(matches!(
            decide(auto, env(&[]), Some(config)),
            Decision::Cluster(_)
        ));
    }

    #[test]
    fn forced_modes_ignore_the_environment() {
        assert!(matches!(
            decide(InventoryMode::NodeLocal, env(&[("KUBECONFIG", "/k")]), None),
            Decision::NodeLocal(_)
        ));
        assert!(matches!(
            decide(InventoryMode::Cluster, env(&[]), None),
            Decision::Cluster(_)
        ));
    }
}
