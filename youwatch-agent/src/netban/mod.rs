//! The node ban: banned source addresses dropped in this node's kernel, before any ingress
//! controller sees them (a TC classifier or an XDP program on the interfaces that receive the
//! ingress traffic), from one ban ledger for the whole cluster — IPBan objects.
//!
//! - [`crd`]: the IPBan type; [`ledger`]: creating, extending and deleting IPBans (the
//!   response's `node-tc` backend writes them, `unban` deletes them).
//! - [`sync`]: every agent watches every IPBan ([`crate::cluster::reflect`]) and keeps its
//!   kernel's deny lists equal to the ledger ([`desired`], checked by [`guard`]), lifting each
//!   entry at its expiry; [`gc`]: expired objects are deleted (by their author first).
//! - [`kernel`]: the `youwatch-netban` object, its pinned lists, the program on interfaces,
//!   run on a thread in the right network namespace ([`netns`], [`interfaces`]).
//! - [`visibility`]: interfaces whose connections come from proxies rather than clients are
//!   refused.
//!
//! Under `--dry-run` nothing is attached: the stage follows the ledger in a table in memory and
//! logs what it would enforce.

pub mod config;
pub mod crd;
pub mod desired;
pub mod gc;
pub mod guard;
pub mod interfaces;
pub mod kernel;
pub mod ledger;
pub mod metrics;
pub mod netns;
pub mod sync;
pub mod visibility;

use std::sync::{Arc, Mutex, RwLock};

use ipnet::IpNet;
use kube::runtime::watcher;
use prometheus_client::registry::Registry;

pub use config::NodeBanConfig;

use self::{
    crd::IpBan,
    gc::Collector,
    guard::KernelGuard,
    kernel::{DenyTable, KernelTable, LoadOptions, Programs, Sampler, table::MemoryTable},
    ledger::Ledger,
    metrics::NetbanMetrics,
    netns::NetnsWorker,
    sync::{SharedGuard, SharedTable, Syncer},
    visibility::{Checker, Interface},
};
use crate::{
    cluster::{ClusterContext, reflect::Reflected},
    response::{DryRun, config::RetryConfig},
    stage::{StageHandle, StopSignal},
};

#[derive(Debug, thiserror::Error)]
pub enum NodeBanError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Kernel(#[from] kernel::KernelError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error(
        "node_ban.enabled needs a cluster: the ban ledger is the cluster's IPBan objects (set \
         $KUBECONFIG, or run the agent in a pod)"
    )]
    NoCluster,
    #[error(
        "node_ban.interfaces is empty and the network namespace has no default route ({0}): \
         name the interfaces that receive the ingress traffic"
    )]
    NoInterfaces(String),
}

/// The kernel side, attached.
struct Kernel {
    worker: Arc<NetnsWorker<Programs>>,
    sampler: Arc<Mutex<Sampler>>,
    interfaces: Arc<Mutex<Vec<Interface>>>,
}

/// The node ban, built (attached, unless dry-run) and ready to follow the ledger.
pub struct NodeBanStage {
    config: NodeBanConfig,
    cluster: Arc<ClusterContext>,
    ledger: Ledger,
    table: SharedTable,
    guard: SharedGuard,
    kernel: Option<Kernel>,
    /// Deletes expired IPBans (not under dry-run).
    collect: bool,
    metrics: NetbanMetrics,
}

impl NodeBanStage {
    /// Checks the config and attaches the program (not under dry-run); `None` when
    /// `node_ban.enabled` is false. `allowlist` is `response.allowlist`: never banned.
    pub fn new(
        config: &NodeBanConfig,
        allowlist: &[IpNet],
        retry: &RetryConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
    ) -> Result<Option<NodeBanStage>, NodeBanError> {
        if !config.enabled {
            return Ok(None);
        }
        config.validate()?;
        let cluster = cluster.ok_or(NodeBanError::NoCluster)?;
        if dry_run != DryRun::Off {
            tracing::info!(
                "dry-run: the node ban attaches nothing; it follows the IPBans and logs what it would enforce"
            );
            let table = Box::new(MemoryTable::new(config.max_entries as usize));
            let mut stage = NodeBanStage::without_kernel(config, allowlist, retry, cluster, table);
            stage.collect = false;
            return Ok(Some(stage));
        }
        let (table, kernel, own) = attach(config)?;
        let mut stage =
            NodeBanStage::without_kernel(config, allowlist, retry, cluster, Box::new(table));
        stage.guard.write().unwrap_or_else(|e| e.into_inner()).own = own;
        let attached = kernel.interfaces.lock().map_or(0, |i| i.len());
        stage.metrics.interfaces.set(attached as i64);
        stage.kernel = Some(kernel);
        Ok(Some(stage))
    }

    /// The node ban following the ledger into `table` with no program attached (a node
    /// that only keeps the ledger tidy, dry-run, tests): it enforces nothing itself.
    pub fn without_kernel(
        config: &NodeBanConfig,
        allowlist: &[IpNet],
        retry: &RetryConfig,
        cluster: Arc<ClusterContext>,
        table: Box<dyn DenyTable>,
    ) -> NodeBanStage {
        let guard = KernelGuard {
            own: Vec::new(),
            allowlist: allowlist.to_vec(),
            proxies: config.proxies.clone(),
        };
        NodeBanStage {
            config: config.clone(),
            ledger: Ledger {
                client: cluster.client.clone(),
                retry: retry.clone(),
                server_dry_run: false,
            },
            cluster,
            table: Arc::new(Mutex::new(table)),
            guard: Arc::new(RwLock::new(guard)),
            kernel: None,
            collect: true,
            metrics: NetbanMetrics::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The deny table (what the kernel holds), for tests and benchmarks.
    pub fn table(&self) -> SharedTable {
        self.table.clone()
    }

    /// Its metrics (tests read them).
    pub fn metrics(&self) -> NetbanMetrics {
        self.metrics.clone()
    }

    /// The interfaces attached to (none under dry-run).
    pub fn interfaces(&self) -> Vec<Interface> {
        self.kernel.as_ref().map_or_else(Vec::new, |k| {
            k.interfaces
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    /// Follows the ledger until stopped, then detaches (the pinned lists stay for the next
    /// start).
    pub fn spawn(self) -> StageHandle {
        let stop = StopSignal::new();
        let api = crate::cluster::rbac::IPBAN_WATCH.all::<IpBan>(self.cluster.client.clone());
        let (index, watch) = Reflected::spawn(
            api,
            watcher::Config::default(),
            "IPBan",
            self.metrics.ledger.clone(),
            stop.clone(),
        );
        let mut tasks = vec![watch];
        tasks.push(
            Syncer {
                index: index.clone(),
                table: self.table.clone(),
                guard: self.guard.clone(),
                metrics: self.metrics.clone(),
            }
            .spawn(stop.clone()),
        );
        if self.collect {
            tasks.push(
                Collector {
                    index,
                    ledger: self.ledger.clone(),
                    node: self.cluster.node_name.clone(),
                    grace: self.config.gc_grace,
                    metrics: self.metrics.clone(),
                }
                .spawn(stop.clone()),
            );
        }
        if let Some(kernel) = &self.kernel {
            tasks.push(
                Checker {
                    worker: kernel.worker.clone(),
                    sampler: kernel.sampler.clone(),
                    interfaces: kernel.interfaces.clone(),
                    guard: self.guard.clone(),
                    config: self.config.visibility.clone(),
                    metrics: self.metrics.clone(),
                }
                .spawn(stop.clone()),
            );
        }
        let kernel = self.kernel;
        let table = self.table;
        // Detaching runs on the namespace's thread; its join blocks.
        let detach = async move {
            let _ = tokio::task::spawn_blocking(move || {
                drop(kernel);
                drop(table);
            })
            .await;
            tracing::info!("node ban detached");
        };
        StageHandle::tasks("node_ban", stop, tasks, detach)
    }
}

/// Loads the program, attaches it to the configured interfaces (or the default routes'),
/// and reads the node's own addresses, all in the configured network namespace.
fn attach(
    config: &NodeBanConfig,
) -> Result<(KernelTable, Kernel, Vec<std::net::IpAddr>), NodeBanError> {
    let options = LoadOptions {
        max_entries: config.max_entries,
        pin_dir: (!config.pin_dir.as_os_str().is_empty()).then(|| config.pin_dir.clone()),
        xdp: config.attach == kernel::AttachMode::Xdp,
    };
    let (programs, mut maps) = kernel::load(&options)?;
    maps.sampler.set_ports(&config.visibility.ports)?;
    let netns = (!config.netns.as_os_str().is_empty()).then_some(config.netns.as_path());
    let worker = NetnsWorker::spawn(netns, programs)?;
    let configured = config.interfaces.clone();
    let mode = config.attach;
    let (interfaces, own) = worker.run(move |programs| {
        let names = if configured.is_empty() {
            interfaces::default_route_interfaces()
                .map_err(|e| NodeBanError::NoInterfaces(e.to_string()))?
        } else {
            configured
        };
        if names.is_empty() {
            return Err(NodeBanError::NoInterfaces("none found".into()));
        }
        let mut attached = Vec::new();
        for name in names {
            let how = programs.attach(&name, mode)?;
            let ifindex = ifindex(&name);
            tracing::info!(
                interface = name,
                ifindex,
                how = how.as_str(),
                "node ban attached"
            );
            attached.push(Interface { name, ifindex, how });
        }
        let own = interfaces::own_addresses().unwrap_or_default();
        Ok((attached, own))
    })??;
    let kernel = Kernel {
        worker: Arc::new(worker),
        sampler: Arc::new(Mutex::new(maps.sampler)),
        interfaces: Arc::new(Mutex::new(interfaces)),
    };
    Ok((maps.table, kernel, own))
}

/// The interface's index in the calling thread's namespace (0 if gone).
fn ifindex(name: &str) -> u32 {
    std::ffi::CString::new(name)
        // SAFETY: a valid NUL-terminated name.
        .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) })
        .unwrap_or(0)
}
