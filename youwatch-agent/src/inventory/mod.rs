//! Workload inventory: which cgroups to watch, and who (pod, container, process lineage) did
//! each exec.
//!
//! The stage sits between the sensor and the rules: it keeps the kernel's watched-cgroup set
//! in step with the pods this node guards (or, without a cluster, with the containers selected
//! on this host) and turns each [`ExecEvent`](crate::event::ExecEvent) into an
//! [`EnrichedExec`](crate::event::EnrichedExec).
//!
//! - [`mode`] decides between cluster mode (a kubeconfig or in-cluster service account) and
//!   node-local mode (containers discovered from cgroupfs).
//! - [`source`] watches this node's pods through the API server; [`pod`] extracts what we keep;
//!   [`select`] decides which pods are guarded.
//! - [`layout`] finds a pod's cgroup from its UID; [`appear`] notices cgroups created later.
//! - [`cgroup_index`], [`container_id`], [`lineage`], [`users`] answer "who" for one exec;
//!   [`stage`] ties them together.

pub mod appear;
pub mod bounded;
pub mod cgroup_index;
pub mod container_id;
pub mod image;
pub mod labels;
pub mod layout;
pub mod lineage;
pub mod metrics;
pub mod mode;
pub mod mounts;
pub mod node_local;
pub mod pod;
pub mod procfs;
pub mod select;
pub mod source;
pub mod stage;
pub mod users;

use serde::Deserialize;

pub use metrics::InventoryMetrics;
pub use mode::{InventoryMode, Targets};
pub use stage::{CgroupWatch, InventoryError, spawn};

use std::path::PathBuf;

use tokio::sync::mpsc;

use crate::event::{EnrichedExec, ExecEvent};

/// Chooses the mode (logging which and why), then starts the stage: see [`mode::choose`] and
/// [`spawn`]. `explicit` are the `--watch-cgroup` cgroups (path, id).
pub async fn start<W: CgroupWatch>(
    config: &InventoryConfig,
    node_name: String,
    watch: W,
    explicit: Vec<(PathBuf, u64)>,
    execs: mpsc::Receiver<ExecEvent>,
    metrics: InventoryMetrics,
) -> Result<mpsc::Receiver<EnrichedExec>, InventoryError> {
    let (targets, decision) = mode::choose(config.mode, node_name).await?;
    match &decision {
        mode::Decision::Cluster(why) => tracing::info!(why, "inventory mode: cluster"),
        mode::Decision::NodeLocal(why) => {
            tracing::info!(why, "inventory mode: node-local (no cluster)")
        }
    }
    let (enriched, _task) = spawn(config, targets, watch, explicit, execs, metrics)?;
    Ok(enriched)
}

/// `inventory:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// Where the guarded workloads come from: `auto`, `cluster` or `node-local` (see [`mode`]).
    pub mode: InventoryMode,
    /// Namespaces whose pods may be guarded.
    pub namespaces: NamespaceConfig,
    /// Kubernetes label selector (`kubectl -l` syntax) a pod must match. Empty: any labels.
    pub label_selector: String,
    /// Glob on the pod name (`*` any run of characters, `?` one). Empty: any name.
    pub pod_name_pattern: String,
    pub cgroup: CgroupConfig,
    /// How long an exec from a container the pod's status does not list yet (a
    /// `kubectl debug` container's first shell) waits for the status, in milliseconds, before
    /// it goes on with the best attribution available. 0: never wait.
    pub attribution_wait_ms: u64,
    /// Processes remembered for lineage (`proc.pname`, `proc.aname[n]`). Oldest forgotten first.
    pub process_table_size: usize,
    /// Ancestors reported per exec (`proc.aname[1]` to `proc.aname[max_ancestors]`).
    pub max_ancestors: usize,
    /// Enriched execs buffered between this stage and the rules.
    pub channel_capacity: usize,
    pub node_local: NodeLocalConfig,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            mode: InventoryMode::Auto,
            namespaces: NamespaceConfig::default(),
            label_selector: String::new(),
            pod_name_pattern: "*juice-shop*".to_owned(),
            cgroup: CgroupConfig::default(),
            attribution_wait_ms: 2000,
            process_table_size: 8192,
            max_ancestors: 8,
            channel_capacity: 4096,
            node_local: NodeLocalConfig::default(),
        }
    }
}

/// `inventory.namespaces:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NamespaceConfig {
    /// Only these namespaces. Empty: every namespace not excluded.
    pub include: Vec<String>,
    /// Never these namespaces (wins over `include`).
    pub exclude: Vec<String>,
    /// Also exclude the agent's own namespace (`$POD_NAMESPACE`, else the service account's).
    pub exclude_own: bool,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: vec!["kube-system".to_owned()],
            exclude_own: true,
        }
    }
}

/// `inventory.cgroup:`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// The kubelet's pod cgroup root (`kubepods.slice` for the systemd driver, `kubepods` for
    /// cgroupfs), absolute or relative to the cgroup v2 mount. Empty: auto-detect.
    pub kubepods: String,
    /// Safety-net re-check of pods whose cgroup has not appeared yet, in milliseconds (new
    /// cgroups are normally noticed at once through inotify).
    pub rescan_interval_ms: u64,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            kubepods: String::new(),
            rescan_interval_ms: 1000,
        }
    }
}

/// `inventory.node_local:` — selection when there is no cluster.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeLocalConfig {
    /// Globs on container cgroup paths (absolute, or relative to the cgroup v2 mount), e.g.
    /// `system.slice/docker-*.scope`.
    pub cgroup_globs: Vec<String>,
    /// Container ids (full, or a prefix of at least 12 hex characters).
    pub container_ids: Vec<String>,
    /// How often cgroupfs is rescanned for containers that started or stopped, in milliseconds.
    pub rescan_interval_ms: u64,
}

impl Default for NodeLocalConfig {
    fn default() -> Self {
        Self {
            cgroup_globs: Vec::new(),
            container_ids: Vec::new(),
            rescan_interval_ms: 2000,
        }
    }
}
