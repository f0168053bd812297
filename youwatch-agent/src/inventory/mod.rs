//! Workload inventory: which cgroups to watch, and who (pod, container, process lineage) did
//! each exec.
//!
//! The stage sits between the sensor and the rules: it keeps the kernel's watched-cgroup set
//! in step with the pods this node guards (or, without a cluster, with the containers selected
//! on this host) and turns each [`ExecEvent`] into an
//! [`EnrichedExec`].
//!
//! - [`Targets`]: cluster mode (this node's pods, from the shared
//!   [`ClusterContext`]) or node-local mode (containers
//!   discovered from cgroupfs); [`crate::cluster`] decides which.
//! - [`source`] watches this node's pods through the API server, recovering from its failures
//!   as [`recovery`] and [`backoff`] say; [`pod`] extracts what we keep; [`select`] decides
//!   which pods are guarded.
//! - [`layout`] finds a pod's cgroup from its UID; [`appear`] notices cgroups created later.
//! - [`cgroup_index`], [`container_id`], [`lineage`], [`users`] answer "who" for one exec.
//! - [`stage`] is the task; in it, `mode` decides what to watch (`ClusterPods` or
//!   `LocalContainers`, one `Mode` trait), `keeper` writes the kernel's watched and enforced
//!   sets and remembers whose each cgroup is, and `enrich` answers "who did this exec".

pub mod appear;
pub mod backoff;
pub mod cgroup_index;
pub mod container_id;
pub mod enforce;
mod enrich;
pub mod fifo;
pub mod image;
mod keeper;
pub mod labels;
pub mod layout;
pub mod lineage;
pub mod metrics;
mod mode;
pub mod mounts;
pub mod node_local;
pub mod pod;
pub mod procfs;
pub mod recovery;
pub mod select;
pub mod source;
pub mod stage;
pub mod users;

use serde::Deserialize;

pub use crate::cluster::InventoryMode;
pub use enforce::EnforceSelection;
pub use metrics::InventoryMetrics;
pub use stage::{CgroupWatch, InventoryError, spawn};

use std::{path::PathBuf, time::Duration};

use tokio::sync::mpsc;

use crate::{
    cluster::ClusterContext,
    event::{EnrichedExec, ExecEvent},
};

/// What the stage guards.
#[derive(Clone)]
pub enum Targets {
    /// Pods on `node_name`, from the API server behind `client`.
    Cluster {
        client: kube::Client,
        node_name: String,
        /// The agent's own namespace (excluded by default).
        own_namespace: Option<String>,
    },
    /// Containers on this host, from cgroupfs.
    NodeLocal,
}

impl Targets {
    /// This node's pods with a cluster, else the host's containers.
    pub fn from_cluster(cluster: Option<&ClusterContext>) -> Targets {
        match cluster {
            Some(c) => Targets::Cluster {
                client: c.client.clone(),
                node_name: c.node_name.clone(),
                own_namespace: c.own_namespace.clone(),
            },
            None => Targets::NodeLocal,
        }
    }
}

/// Starts the stage (see [`spawn`]). `explicit` are the `--watch-cgroup` cgroups (path, id);
/// `enforce` says which watched cgroups are enforced (`None`: enforcement off).
pub fn start<W: CgroupWatch>(
    config: &InventoryConfig,
    cluster: Option<&ClusterContext>,
    watch: W,
    explicit: Vec<(PathBuf, u64)>,
    enforce: Option<EnforceSelection>,
    execs: mpsc::Receiver<ExecEvent>,
    metrics: InventoryMetrics,
) -> Result<(mpsc::Receiver<EnrichedExec>, tokio::task::JoinHandle<()>), InventoryError> {
    spawn(
        config,
        Targets::from_cluster(cluster),
        watch,
        Watching { explicit, enforce },
        execs,
        metrics,
    )
}

/// What the stage watches besides the selected workloads, and what it enforces.
#[derive(Default)]
pub struct Watching {
    /// The `--watch-cgroup` cgroups (path, id), watched for the agent's whole life.
    pub explicit: Vec<(PathBuf, u64)>,
    /// Which watched cgroups are enforced; `None`: none.
    pub enforce: Option<EnforceSelection>,
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
    /// Cluster mode: how often this node's pods are listed again, in milliseconds, to correct
    /// what a lost watch event left wrong (at least 1000). 0: only when the watch cannot resume.
    pub pod_relist_interval_ms: u64,
    pub node_local: NodeLocalConfig,
}

impl InventoryConfig {
    /// The periodic pod re-list interval; `None` when disabled. At least a second: each
    /// re-list is a request to the API server.
    pub fn pod_relist_every(&self) -> Option<Duration> {
        (self.pod_relist_interval_ms > 0)
            .then(|| Duration::from_millis(self.pod_relist_interval_ms.max(1000)))
    }
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
            pod_relist_interval_ms: 300_000,
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
