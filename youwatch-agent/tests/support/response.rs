//! The response stage against the test API server: a bus with the stage as its lossless
//! listener and a capturing best-effort listener for its reports (alerts).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use youwatch_agent::{
    bus::{Bus, BusBuilder, BusMetrics, Delivery, Listener},
    cluster::ClusterContext,
    detection::{Detection, Origin, PodRef, Priority, Subject},
    response::{DryRun, ResponseConfig, ResponseStage},
    stage::StageHandle,
};

use super::apiserver::ApiServer;

pub const NODE: &str = "node-a";

pub struct Running {
    pub bus: Bus,
    pub reports: Listener,
    pub stage: StageHandle,
}

/// Starts the stage on `server` (or without a cluster), with its journal in `state`.
pub fn start(
    server: Option<&ApiServer>,
    config: &ResponseConfig,
    dry_run: DryRun,
    state: &Path,
) -> Running {
    let cluster = server.map(|s| Arc::new(ClusterContext::new(s.client(), NODE.into())));
    let stage = ResponseStage::new(config, cluster, dry_run, state).expect("valid config");
    let mut builder = BusBuilder::new(BusMetrics::default());
    let listener = builder.listen("response", 64, Delivery::Lossless);
    let reports = builder.listen("alerts", 1024, Delivery::BestEffort);
    let bus = builder.build();
    let stage = stage.spawn(listener, bus.reports_only());
    Running {
        bus,
        reports,
        stage,
    }
}

impl Running {
    /// Closes the bus and waits for the stage to finish its actions.
    pub async fn stop(self) {
        drop(self.bus);
        self.stage.join().await.unwrap();
    }

    /// The next action report (a "YouWatch response" alert; the detections themselves,
    /// which reach the alert listener too, are skipped), waiting up to 10 s.
    pub async fn report(&mut self) -> Detection {
        loop {
            let envelope = tokio::time::timeout(Duration::from_secs(10), self.reports.recv())
                .await
                .expect("an action report within 10 s")
                .expect("the bus is open");
            let d = (*envelope.detection).clone();
            envelope.done();
            if d.origin == Origin::Response {
                return d;
            }
        }
    }
}

/// A shell detection from our own rules in `namespace/name` (uid known).
pub fn shell_in(namespace: &str, name: &str, uid: Option<&str>) -> Detection {
    Detection {
        time: SystemTime::now(),
        origin: Origin::Rules,
        rule: "Shell in a Juice Shop pod".into(),
        priority: Priority::Critical,
        output: format!("A shell was spawned in {namespace}/{name}"),
        tags: vec!["shell".into()],
        output_fields: [
            ("proc.pid".to_owned(), serde_json::json!(4242)),
            ("proc.cmdline".to_owned(), serde_json::json!("sh -c id")),
        ]
        .into(),
        subject: Subject::Pod(PodRef {
            namespace: namespace.into(),
            name: name.into(),
            uid: uid.map(str::to_owned),
            ..PodRef::default()
        }),
    }
}

/// A pod of a Deployment's ReplicaSet on `node`.
pub fn deployment_pod(name: &str, node: &str, rs: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "juice-shop", "pod-template-hash": rs.rsplit('-').next().unwrap()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                 "uid": "rs-uid", "controller": true}],
        },
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}]},
    })
}

/// Polls `check` every 10 ms for up to 10 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
