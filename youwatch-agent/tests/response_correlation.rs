//! The response stage correlating runtime detections with the web requests before them,
//! against the test API server through the real kube client: one stage (the WAF and the pod
//! on one node) and two (the WAF's node publishes evidence, the pod's node reads it). The
//! requests are offered as the WAF stage offers them; `tests/e2e_correlation.rs` runs the
//! same scenes with the agent binary, its eBPF sensor and a real WAF.

mod support;

use std::{
    net::IpAddr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use support::{
    apiserver::ApiServer,
    correlation::{self, APP_NODE, INGRESSES, NS, RS, WAF_NODE, denied},
    response::{Running, deployment_pod, eventually, shell_in, start_correlating},
};
use youwatch_agent::{
    correlate::{CorrelationConfig, Suspicion, SuspicionSink, incident::RULE},
    detection::{Detection, Origin, Subject},
    response::ResponseConfig,
    waf::classify::{Class, ClassSet},
};

const LEDGER: &str = "youwatch.dev/denied-sources";

fn response_config() -> ResponseConfig {
    let mut c = ResponseConfig::default();
    c.deny_ip.coalesce = Duration::from_millis(20);
    c.retry.initial_backoff = Duration::from_millis(20);
    c.retry.max_backoff = Duration::from_millis(200);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

fn correlation_config(wait: Duration) -> CorrelationConfig {
    let mut c = CorrelationConfig {
        wait,
        ..CorrelationConfig::default()
    };
    c.cross_node.publish_interval = Duration::from_millis(200);
    c
}

/// The test API server with the correlation's cluster (two Services, their Ingresses).
async fn cluster() -> ApiServer {
    let server = ApiServer::start().await;
    correlation::cluster(&server);
    server
}

/// A WAF node and an app node on one cluster.
async fn two_nodes() -> (ApiServer, Node, Node) {
    let server = cluster().await;
    let waf = node(&server, WAF_NODE, Duration::from_secs(3));
    let app = node(&server, APP_NODE, Duration::from_secs(3));
    (server, waf, app)
}

/// The Events in the namespace `params` select.
async fn events(server: &ApiServer, params: &ListParams) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(server.client(), NS);
    events.list(params).await.unwrap().items
}

/// The evidence Events in the namespace matching `labels`.
async fn evidence(server: &ApiServer, labels: &str) -> Vec<Event> {
    events(server, &ListParams::default().labels(labels)).await
}

/// The Incident Event on pod `name`.
async fn incident_event(server: &ApiServer, name: &str) -> Event {
    let fields = format!("regarding.name={name}");
    let on_pod = events(server, &ListParams::default().fields(&fields)).await;
    on_pod
        .iter()
        .find(|e| e.reason.as_deref() == Some("Incident"))
        .cloned()
        .unwrap_or_else(|| panic!("no Incident Event in {on_pod:?}"))
}

/// A juice-shop pod on the app node; the shell detection our rules would make in it.
fn pod(server: &ApiServer, name: &str) -> Detection {
    let created = server.create("pods", NS, deployment_pod(name, APP_NODE, RS));
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let mut shell = shell_in(NS, name, Some(uid));
    let Subject::Pod(pod) = &mut shell.subject else {
        unreachable!()
    };
    pod.labels = [("app".to_owned(), "juice-shop".to_owned())].into();
    shell
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A request from `ip` to `host` made `ago` seconds ago, as the WAF stage offers it: a
/// detection-only RCE (932160, reliable) unless `class` says otherwise.
fn request(ip: &str, host: &str, ago: u64, class: Class) -> Suspicion {
    let classes: ClassSet = [class].into_iter().collect();
    Suspicion {
        ip: ip.parse::<IpAddr>().unwrap(),
        protected: false,
        time: now_secs() - ago,
        host: Some(host.into()),
        method: "GET".into(),
        uri: "/ping?host=127.0.0.1%3Bid".into(),
        path: "/ping".into(),
        rule_ids: vec![932160],
        classes,
        strong: classes,
        blocked: false,
        score: 5,
        unique_id: format!("{ip}-{ago}"),
    }
}

struct Node {
    running: Running,
    sink: SuspicionSink,
    _state: tempfile::TempDir,
}

fn node(server: &ApiServer, name: &str, wait: Duration) -> Node {
    let state = tempfile::tempdir().unwrap();
    let (running, sink) = start_correlating(
        name,
        server,
        &response_config(),
        &correlation_config(wait),
        state.path(),
    );
    Node {
        running,
        sink,
        _state: state,
    }
}

impl Node {
    /// Offers `s` and waits until the stage has routed it.
    async fn offer(&self, s: Suspicion) {
        let before = self.routed();
        assert!(self.sink.offer(s));
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.routed() == before {
            assert!(Instant::now() < deadline, "the request was not routed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn routed(&self) -> f64 {
        ["recorded", "unrouted"]
            .iter()
            .map(|o| {
                self.running.metric(&format!(
                    "youwatch_correlation_suspicions_total{{outcome=\"{o}\"}}"
                ))
            })
            .sum()
    }

    /// A shell in a new pod `name`: waits for the pod's deletion, then its incident alert.
    async fn shell(&mut self, server: &ApiServer, name: &str) -> Detection {
        self.running.publish(pod(server, name)).await;
        pod_deleted(server, name).await;
        self.incident().await
    }

    /// The next incident alert.
    async fn incident(&mut self) -> Detection {
        loop {
            let report = self.running.report().await;
            if report.rule == RULE {
                return report;
            }
        }
    }
}

fn candidates(incident: &Detection) -> Vec<Value> {
    incident.output_fields["incident.candidates"]
        .as_array()
        .unwrap()
        .clone()
}

fn ingress_patches(server: &ApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH /apis/networking.k8s.io"))
        .count()
}

async fn pod_deleted(server: &ApiServer, name: &str) {
    eventually("the pod is deleted", || {
        server.get("pods", NS, name).is_none()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_node_a_detection_only_rce_then_a_shell_bans_its_client() {
    let server = cluster().await;
    let mut app = node(&server, APP_NODE, Duration::from_secs(2));
    app.offer(request("203.0.113.9", "shop.example", 5, Class::Rce))
        .await;
    let incident = app.shell(&server, "juice-shop-1").await;
    let found = candidates(&incident);
    assert_eq!(found.len(), 1, "{incident:?}");
    assert_eq!(found[0]["ip"], "203.0.113.9");
    assert_eq!(found[0]["service"], "shop/juice-shop");
    assert_eq!(found[0]["seconds_before"], 5);
    assert_eq!(found[0]["seen_by"], "this node");
    assert_eq!(
        incident.output_fields["incident.ban"],
        json!(["203.0.113.9"])
    );
    eventually("the client is denied on the shop's Ingress", || {
        denied(&server, "juice-shop") == "203.0.113.9/32"
    })
    .await;
    assert_eq!(
        denied(&server, "other"),
        "",
        "only the attacked host's Ingress"
    );
    let ledger: Value = serde_json::from_str(
        server.get(INGRESSES, NS, "juice-shop").unwrap()["metadata"]["annotations"][LEDGER]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let entry = &ledger["203.0.113.9/32"];
    assert_eq!(entry["offense"], 2, "a repeat offender's ban: {entry}");
    assert_eq!(entry["node"], APP_NODE);
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .starts_with("Shell in a Juice Shop pod (rce)"),
        "{entry}"
    );
    // The Event on the pod names the incident.
    let incident_event = incident_event(&server, "juice-shop-1").await;
    assert!(
        incident_event
            .note
            .as_deref()
            .unwrap()
            .contains("203.0.113.9 GET /ping"),
        "{incident_event:?}"
    );
    app.running.stop().await;
}

/// A Falco alert names a pod by namespace and name only, and the deletion (which reads the
/// pod first) is done milliseconds later: the look-back still finds the pod's Services and
/// its uid, from what the deletion read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_falco_alert_naming_only_the_pod_still_bans_the_client() {
    let server = cluster().await;
    let mut app = node(&server, APP_NODE, Duration::from_secs(2));
    app.offer(request("203.0.113.7", "shop.example", 3, Class::Rce))
        .await;
    let created = server.create("pods", NS, deployment_pod("juice-shop-f", APP_NODE, RS));
    let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
    let mut alert = shell_in(NS, "juice-shop-f", None);
    alert.origin = Origin::Falco;
    app.running.publish(alert).await;
    pod_deleted(&server, "juice-shop-f").await;
    let incident = app.incident().await;
    assert_eq!(
        incident.output_fields["incident.ban"],
        json!(["203.0.113.7"]),
        "{incident:?}"
    );
    eventually("the client is denied on the shop's Ingress", || {
        denied(&server, "juice-shop") == "203.0.113.7/32"
    })
    .await;
    let incident_event = incident_event(&server, "juice-shop-f").await;
    assert_eq!(
        incident_event.regarding.as_ref().unwrap().uid.as_deref(),
        Some(uid.as_str())
    );
    app.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_request_another_workload_or_outside_the_window_bans_nobody() {
    let server = cluster().await;
    let mut app = node(&server, APP_NODE, Duration::from_millis(500));
    // A shell with no request before it.
    let incident = app.shell(&server, "juice-shop-1").await;
    assert!(candidates(&incident).is_empty(), "{incident:?}");
    assert!(
        incident
            .output
            .contains("no suspicious request reached its Services (shop/juice-shop)")
    );
    // A request to another workload is not blamed.
    app.offer(request("203.0.113.20", "other.example", 1, Class::Rce))
        .await;
    // Nor one made before the window (60 s, and 2 s of slack).
    app.offer(request("203.0.113.21", "shop.example", 63, Class::Rce))
        .await;
    // Nor a request no Ingress routes.
    app.offer(request("203.0.113.22", "nowhere.example", 1, Class::Rce))
        .await;
    let incident = app.shell(&server, "juice-shop-2").await;
    assert!(candidates(&incident).is_empty(), "{incident:?}");
    assert_eq!(ingress_patches(&server), 0);
    assert_eq!(
        app.running
            .metric("youwatch_correlation_suspicions_total{outcome=\"unrouted\"}"),
        1.0
    );
    // Just inside the window: blamed.
    app.offer(request("203.0.113.23", "shop.example", 61, Class::Rce))
        .await;
    let incident = app.shell(&server, "juice-shop-3").await;
    assert_eq!(candidates(&incident)[0]["ip"], "203.0.113.23");
    eventually("the client in the window is denied", || {
        denied(&server, "juice-shop") == "203.0.113.23/32"
    })
    .await;
    app.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weak_or_anomalous_requests_are_named_but_not_banned() {
    let server = cluster().await;
    let mut app = node(&server, APP_NODE, Duration::from_millis(300));
    let mut weak = request("203.0.113.30", "shop.example", 3, Class::Rce);
    weak.strong = ClassSet::EMPTY;
    app.offer(weak).await;
    app.offer(request("203.0.113.31", "shop.example", 2, Class::Protocol))
        .await;
    let incident = app.shell(&server, "juice-shop-1").await;
    let found = candidates(&incident);
    let ips: Vec<&str> = found.iter().map(|c| c["ip"].as_str().unwrap()).collect();
    assert_eq!(
        ips,
        ["203.0.113.30", "203.0.113.31"],
        "code execution first"
    );
    assert!(found.iter().all(|c| c["ban"] == false));
    assert_eq!(ingress_patches(&server), 0);
    app.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_the_waf_node_publishes_and_the_pod_node_bans() {
    let (server, waf, mut app) = two_nodes().await;
    waf.offer(request("203.0.113.40", "shop.example", 2, Class::Rce))
        .await;
    eventually("the WAF node publishes its evidence", || {
        server
            .requests()
            .iter()
            .any(|r| r.starts_with("POST /apis/events.k8s.io"))
    })
    .await;
    let incident = app.shell(&server, "juice-shop-1").await;
    let found = candidates(&incident);
    assert_eq!(found[0]["ip"], "203.0.113.40", "{incident:?}");
    assert_eq!(found[0]["seen_by"], WAF_NODE);
    eventually("the pod's node denies the client", || {
        denied(&server, "juice-shop") == "203.0.113.40/32"
    })
    .await;
    // The WAF node's own evidence Event, for the Service, by label.
    let found = evidence(
        &server,
        "youwatch.dev/evidence=waf,youwatch.dev/service=juice-shop",
    )
    .await;
    assert_eq!(found.len(), 1, "one Event per Service and node");
    let e = &found[0];
    assert_eq!(
        e.regarding.as_ref().unwrap().kind.as_deref(),
        Some("Service")
    );
    assert_eq!(e.series, None, "written once");
    waf.running.stop().await;
    app.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_evidence_arriving_after_the_shell_still_counts() {
    let (server, waf, mut app) = two_nodes().await;
    // A request is logged when it ends, which may be after the shell it caused.
    app.running.publish(pod(&server, "juice-shop-1")).await;
    pod_deleted(&server, "juice-shop-1").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    waf.offer(request("203.0.113.41", "shop.example", 1, Class::Lfi))
        .await;
    let incident = app.incident().await;
    assert_eq!(
        candidates(&incident)[0]["ip"],
        "203.0.113.41",
        "{incident:?}"
    );
    eventually("the late client is denied", || {
        denied(&server, "juice-shop") == "203.0.113.41/32"
    })
    .await;
    // Another request: the Event is updated (its series counts the updates).
    waf.offer(request("203.0.113.42", "shop.example", 0, Class::Sqli))
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = evidence(&server, "youwatch.dev/evidence=waf").await;
        if found[0].series.as_ref().map(|s| s.count) == Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "{found:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    waf.running.stop().await;
    app.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_writes_are_coalesced() {
    let server = cluster().await;
    let waf = node(&server, WAF_NODE, Duration::from_secs(1));
    let started = Instant::now();
    for i in 0..300u32 {
        let mut s = request(
            &format!("198.51.100.{}", i % 250 + 1),
            "shop.example",
            1,
            Class::Sqli,
        );
        s.unique_id = format!("u-{i}");
        waf.sink.offer(s);
        if i % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    eventually("every request routed", || waf.routed() >= 300.0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let elapsed = started.elapsed();
    let writes = server
        .requests()
        .iter()
        .filter(|r| {
            (r.starts_with("POST") || r.starts_with("PATCH")) && r.contains("/apis/events.k8s.io")
        })
        .count();
    // The first at once, then at most one per 200 ms interval.
    let bound = 2 + (elapsed.as_millis() / 200) as usize;
    assert!(
        writes >= 1 && writes <= bound,
        "{writes} writes in {elapsed:?} (bound {bound})"
    );
    let found = evidence(&server, "youwatch.dev/evidence=waf").await;
    let text = &found[0].metadata.annotations.as_ref().unwrap()["youwatch.dev/suspicions"];
    let published: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        published["items"].as_array().unwrap().len(),
        32,
        "max_published"
    );
    waf.running.stop().await;
}
