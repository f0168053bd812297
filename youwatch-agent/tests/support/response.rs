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
    correlate::{Correlation, CorrelationConfig, SuspicionSink},
    detection::{Detection, Origin, PodRef, Priority, Subject},
    response::{DryRun, ResponseConfig, ResponseStage},
    stage::StageHandle,
    waf::config::ScoringConfig,
};

use super::apiserver::ApiServer;

pub const NODE: &str = "node-a";

pub struct Running {
    pub bus: Bus,
    pub reports: Listener,
    pub stage: StageHandle,
    /// The stage's metrics.
    pub registry: prometheus_client::registry::Registry,
}

/// Starts the stage on `server` (or without a cluster), with its journal in `state`.
pub fn start(
    server: Option<&ApiServer>,
    config: &ResponseConfig,
    dry_run: DryRun,
    state: &Path,
) -> Running {
    start_as(NODE, server, config, dry_run, state)
}

/// [`start`] as the agent of `node`.
pub fn start_as(
    node: &str,
    server: Option<&ApiServer>,
    config: &ResponseConfig,
    dry_run: DryRun,
    state: &Path,
) -> Running {
    start_with(node, server, config, dry_run, state, None)
}

/// [`start_as`] with the correlation on; also returns the WAF's end of its queue.
pub fn start_correlating(
    node: &str,
    server: &ApiServer,
    config: &ResponseConfig,
    correlation: &CorrelationConfig,
    state: &Path,
) -> (Running, SuspicionSink) {
    let (correlation, sink) = Correlation::new(correlation, &ScoringConfig::default())
        .expect("a valid correlation config")
        .expect("the correlation is enabled");
    let running = start_with(
        node,
        Some(server),
        config,
        DryRun::Off,
        state,
        Some(correlation),
    );
    (running, sink)
}

fn start_with(
    node: &str,
    server: Option<&ApiServer>,
    config: &ResponseConfig,
    dry_run: DryRun,
    state: &Path,
    correlation: Option<Correlation>,
) -> Running {
    let cluster = server.map(|s| Arc::new(ClusterContext::new(s.client(), node.into())));
    let mut stage = ResponseStage::new(config, cluster, dry_run, state).expect("valid config");
    let mut registry = prometheus_client::registry::Registry::default();
    stage.register(&mut registry);
    if let Some(correlation) = correlation {
        correlation.register(&mut registry);
        stage = stage.with_correlation(correlation);
    }
    let mut builder = BusBuilder::new(BusMetrics::default());
    let listener = builder.listen("response", 64, Delivery::Lossless);
    let reports = builder.listen("alerts", 1024, Delivery::BestEffort);
    let bus = builder.build();
    let stage = stage.spawn(listener, bus.reports_only());
    Running {
        bus,
        reports,
        stage,
        registry,
    }
}

impl Running {
    /// Closes the bus and waits for the stage to finish its actions.
    pub async fn stop(self) {
        drop(self.bus);
        self.stage.join().await.unwrap();
    }

    /// Publishes a detection to the stage.
    pub async fn publish(&self, detection: Detection) {
        self.bus.publish(detection).await.expect("the bus is open");
    }

    /// The value of a metric sample as exposed (`name{labels}`), 0 when absent.
    pub fn metric(&self, sample: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
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

/// The Juice Shop image as a registry names it.
pub const JUICE_SHOP_IMAGE: &str = "docker.io/bkimminich/juice-shop:v17.1.1";

/// [`deployment_pod`] running (BestEffort): its app container ([`JUICE_SHOP_IMAGE`]) has the
/// containerd id `container_id`, as the inventory finds it in the pod's cgroup.
pub fn running_pod(name: &str, node: &str, rs: &str, container_id: &str) -> serde_json::Value {
    let mut pod = deployment_pod(name, node, rs);
    pod["spec"]["containers"][0]["image"] = serde_json::json!(JUICE_SHOP_IMAGE);
    pod["status"] = serde_json::json!({"qosClass": "BestEffort", "containerStatuses": [{
        "name": "app", "image": JUICE_SHOP_IMAGE, "imageID": "sha256:1", "ready": true,
        "restartCount": 0, "containerID": format!("containerd://{container_id}")}]});
    pod
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

/// A WAF ban decision: `ip` attacked `host`, banned for `ban_for`.
pub fn waf_ban(ip: &str, host: Option<&str>, ban_for: Duration, offense: u32) -> Detection {
    Detection {
        time: SystemTime::now(),
        origin: Origin::Waf,
        rule: youwatch_agent::waf::detect::RULE_BAN.into(),
        priority: Priority::Critical,
        output: format!("WAF attacker {ip} to ban"),
        tags: vec!["waf".into()],
        output_fields: [
            ("waf.client_ip".to_owned(), serde_json::json!(ip)),
            ("waf.rule_id".to_owned(), serde_json::json!(942100)),
            ("waf.classes".to_owned(), serde_json::json!("sqli")),
            ("waf.offense".to_owned(), serde_json::json!(offense)),
        ]
        .into(),
        subject: Subject::Attacker {
            ip: ip.parse().expect("a test IP"),
            host: host.map(str::to_owned),
            ban_for: Some(ban_for),
        },
    }
}

/// An Ingress with one rule per host (routing to `backend`) and these annotations.
pub fn ingress(
    name: &str,
    hosts: &[&str],
    backend: &str,
    annotations: &[(&str, &str)],
) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = hosts
        .iter()
        .map(|h| {
            serde_json::json!({"host": h, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": backend, "port": {"number": 80}}}}]}})
        })
        .collect();
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
        .collect();
    serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": name, "labels": {"youwatch.dev/managed": "true"}, "annotations": annotations},
        "spec": {"ingressClassName": "nginx", "rules": rules},
    })
}
