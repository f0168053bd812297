//! The inventory stage on a freshly loaded exec sensor, watching the pods of one node on the
//! test API server: what the inventory's kernel tests and its bench start from.

use std::path::Path;

use tokio::sync::mpsc::Receiver;
use youwatch_agent::{
    event::EnrichedExec,
    inventory::{self, InventoryConfig, InventoryMetrics, Targets},
    sensor::{
        SensorConfig,
        ebpf::{ExecSensor, WatchSet},
    },
};

use super::apiserver::ApiServer;

pub struct Stage {
    /// Enriched execs, as the rules would receive them.
    pub rx: Receiver<EnrichedExec>,
    /// The kernel's watched set.
    pub watch: WatchSet,
    /// Keeps the programs attached; dropping it ends the stage.
    pub sensor: ExecSensor,
}

/// Starts the stage for pods on `node`, with the kubelet's cgroup root at `kubepods`;
/// `config` supplies the other settings. Waits until the pod watch is open.
pub async fn start(
    server: &ApiServer,
    node: &str,
    kubepods: &Path,
    mut config: InventoryConfig,
) -> Stage {
    config.cgroup.kubepods = kubepods.display().to_string();
    let mut sensor = ExecSensor::load(&SensorConfig::default()).expect("loading the exec sensor");
    let watch = sensor.watch_set();
    let events = sensor.events(4096).unwrap();
    let targets = Targets::Cluster {
        client: server.client(),
        node_name: node.into(),
        own_namespace: Some("youwatch".into()),
    };
    let before = server.open_watches();
    let (rx, _task) = inventory::spawn(
        &config,
        targets,
        watch.clone(),
        inventory::Watching::default(),
        events,
        InventoryMetrics::default(),
    )
    .expect("starting the inventory");
    server
        .wait_for_watches(before + 1, std::time::Duration::from_secs(10))
        .await;
    Stage { rx, watch, sensor }
}
