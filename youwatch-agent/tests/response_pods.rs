//! The response stage deleting pods, against the test API server through the real kube
//! client: uid precondition, guards, dry-run modes, Events, restart recovery.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use serde_json::json;
use support::{
    apiserver::ApiServer,
    response::{NODE, deployment_pod, eventually, shell_in, start},
};
use youwatch_agent::{
    detection::{Origin, PodRef, Subject},
    response::{DryRun, ResponseConfig, config::IntOrPercent},
};

fn deletes(server: &ApiServer) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("DELETE"))
        .collect()
}

fn uid_of(pod: &serde_json::Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

async fn events_for(server: &ApiServer, ns: &str, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(server.client(), ns);
    api.list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .unwrap()
        .items
}

#[tokio::test]
async fn deletes_the_pod_with_its_uid_and_reports_it() {
    let server = ApiServer::start().await;
    let pod = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let mut running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Off,
        state.path(),
    );
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some(&uid_of(&pod))))
        .await
        .unwrap();
    let report = running.report().await;
    assert_eq!(
        report.output_fields["response.outcome"], "applied",
        "{report:?}"
    );
    assert!(server.get("pods", "shop", "juice-shop-1").is_none());
    let del = deletes(&server);
    assert_eq!(del.len(), 1, "{del:?}");
    let events = events_for(&server, "shop", "juice-shop-1").await;
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reason.as_deref(), Some("PodDeleted"));
    let note = e.note.as_deref().unwrap();
    assert!(
        note.contains("Shell in a Juice Shop pod") && note.contains("sh -c id"),
        "{note}"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_same_named_replacement_is_never_deleted() {
    let server = ApiServer::start().await;
    let old = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    server.delete("pods", "shop", "juice-shop-1").unwrap();
    let new = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    assert_ne!(uid_of(&old), uid_of(&new));
    let state = tempfile::tempdir().unwrap();
    let mut running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Off,
        state.path(),
    );
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some(&uid_of(&old))))
        .await
        .unwrap();
    let report = running.report().await;
    assert_eq!(report.output_fields["response.outcome"], "already_done");
    let still = server
        .get("pods", "shop", "juice-shop-1")
        .expect("the replacement stays");
    assert_eq!(uid_of(&still), uid_of(&new));
    running.stop().await;
}

#[tokio::test]
async fn a_falco_alert_is_acted_on_only_for_this_nodes_pods() {
    let server = ApiServer::start().await;
    server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-here", NODE, "juice-shop-abc"),
    );
    server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-there", "node-b", "juice-shop-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let mut running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Off,
        state.path(),
    );
    for name in ["juice-shop-there", "juice-shop-here"] {
        let mut d = shell_in("shop", name, None);
        d.origin = Origin::Falco;
        running.bus.publish(d).await.unwrap();
    }
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let r = running.report().await;
        outcomes.push((
            r.output_fields["response.target"]
                .as_str()
                .unwrap()
                .to_owned(),
            r.output_fields["response.outcome"]
                .as_str()
                .unwrap()
                .to_owned(),
        ));
    }
    outcomes.sort();
    assert!(
        outcomes[0].0.contains("juice-shop-here") && outcomes[0].1 == "applied",
        "{outcomes:?}"
    );
    assert!(
        outcomes[1].0.contains("juice-shop-there") && outcomes[1].1 == "refused",
        "{outcomes:?}"
    );
    assert!(server.get("pods", "shop", "juice-shop-there").is_some());
    assert!(server.get("pods", "shop", "juice-shop-here").is_none());
    // The refusal is an Event on the pod, with the reason.
    let events = events_for(&server, "shop", "juice-shop-there").await;
    assert_eq!(events[0].reason.as_deref(), Some("DeletionRefused"));
    assert!(events[0].note.as_deref().unwrap().contains("node-b"));
    running.stop().await;
}

#[tokio::test]
async fn protected_namespaces_are_never_touched() {
    let server = ApiServer::start().await;
    server.create_with_uid(
        "pods",
        "kube-system",
        deployment_pod("coredns-1", NODE, "coredns-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let mut running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Off,
        state.path(),
    );
    running
        .bus
        .publish(shell_in("kube-system", "coredns-1", Some("u")))
        .await
        .unwrap();
    assert_eq!(
        running.report().await.output_fields["response.outcome"],
        "refused"
    );
    assert!(deletes(&server).is_empty());
    running.stop().await;
}

#[tokio::test]
async fn client_dry_run_sends_nothing_and_server_dry_run_sends_dry_run_all() {
    let server = ApiServer::start().await;
    let pod = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Client,
        state.path(),
    );
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some(&uid_of(&pod))))
        .await
        .unwrap();
    running.stop().await;
    assert!(
        server.requests().iter().all(|r| r.starts_with("GET")),
        "{:?}",
        server.requests()
    );
    assert!(!state.path().join("response-journal.jsonl").exists());

    let mut running = start(
        Some(&server),
        &ResponseConfig::default(),
        DryRun::Server,
        state.path(),
    );
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some(&uid_of(&pod))))
        .await
        .unwrap();
    assert_eq!(
        running.report().await.output_fields["response.outcome"],
        "dry_run"
    );
    // kube sends dryRun: [All] in the DeleteOptions body (the API server honours either
    // form); the server validated the request and kept the pod.
    assert_eq!(deletes(&server).len(), 1);
    assert!(server.get("pods", "shop", "juice-shop-1").is_some());
    running.stop().await;
}

#[tokio::test]
async fn without_a_cluster_actions_are_planned() {
    let state = tempfile::tempdir().unwrap();
    let running = start(None, &ResponseConfig::default(), DryRun::Off, state.path());
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some("u")))
        .await
        .unwrap();
    running.stop().await;
}

#[tokio::test]
async fn the_replicas_guard_holds_and_gives_up() {
    let server = ApiServer::start().await;
    // 3 desired, 1 available: deleting would leave 0 where 50% (2) must stay.
    server.create(
        "apps/replicasets",
        "shop",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "juice-shop-abc"},
               "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "juice-shop"}}, "template": {}},
               "status": {"replicas": 3, "availableReplicas": 1}}),
    );
    let pod = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let mut config = ResponseConfig::default();
    config.delete_pod.retry_for = Duration::from_millis(1500);
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    let mut d = shell_in("shop", "juice-shop-1", Some(&uid_of(&pod)));
    let Subject::Pod(p) = &mut d.subject else {
        panic!()
    };
    p.owner = Some(("Deployment".into(), "juice-shop".into()));
    p.labels = [("pod-template-hash".to_owned(), "abc".to_owned())].into();
    running.bus.publish(d.clone()).await.unwrap();
    let report = running.report().await;
    assert_eq!(report.output_fields["response.outcome"], "refused");
    assert!(
        report.output_fields["response.detail"]
            .as_str()
            .unwrap()
            .contains("min_available")
    );
    assert!(deletes(&server).is_empty());
    running.stop().await;

    // A single-replica app: its only pod may always go.
    server.modify("apps/replicasets", "shop", "juice-shop-abc", |rs| {
        rs["spec"]["replicas"] = json!(1);
        rs["status"]["availableReplicas"] = json!(1);
    });
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    running.bus.publish(d).await.unwrap();
    assert_eq!(
        running.report().await.output_fields["response.outcome"],
        "applied"
    );
    running.stop().await;
}

#[tokio::test]
async fn the_rate_limit_per_workload_holds() {
    let server = ApiServer::start().await;
    let mut config = ResponseConfig::default();
    config.delete_pod.max_per_workload = 2;
    config.delete_pod.min_available = IntOrPercent::Int(0);
    let state = tempfile::tempdir().unwrap();
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    for i in 0..3 {
        let name = format!("juice-shop-{i}");
        let pod = server.create_with_uid(
            "pods",
            "shop",
            deployment_pod(&name, NODE, "juice-shop-abc"),
        );
        let mut d = shell_in("shop", &name, Some(&uid_of(&pod)));
        let Subject::Pod(p) = &mut d.subject else {
            panic!()
        };
        *p = PodRef {
            owner: Some(("Deployment".into(), "juice-shop".into())),
            ..p.clone()
        };
        running.bus.publish(d).await.unwrap();
        let outcome = running.report().await.output_fields["response.outcome"].clone();
        assert_eq!(
            outcome,
            if i < 2 { "applied" } else { "refused" },
            "deletion {i}"
        );
    }
    assert!(server.get("pods", "shop", "juice-shop-2").is_some());
    running.stop().await;
}

#[tokio::test]
async fn a_decision_survives_a_restart_while_the_api_server_is_down() {
    let server = ApiServer::start().await;
    let pod = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    let state = tempfile::tempdir().unwrap();
    let config = ResponseConfig {
        shutdown_grace: Duration::from_millis(200),
        ..ResponseConfig::default()
    };
    server.stop();
    let running = start(Some(&server), &config, DryRun::Off, state.path());
    running
        .bus
        .publish(shell_in("shop", "juice-shop-1", Some(&uid_of(&pod))))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Stopped with the deletion unfinished: it stays journaled.
    running.stop().await;
    assert!(server.get("pods", "shop", "juice-shop-1").is_some());
    server.restart(Duration::ZERO, |_| {}).await;
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    assert_eq!(
        running.report().await.output_fields["response.outcome"],
        "applied"
    );
    eventually("the pod deleted after the restart", || {
        server.get("pods", "shop", "juice-shop-1").is_none()
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_until_applied() {
    use support::apiserver::{
        ApiError,
        faults::{Fault, Stall, Verb},
    };
    let server = ApiServer::start().await;
    let pod = server.create_with_uid(
        "pods",
        "shop",
        deployment_pod("juice-shop-1", NODE, "juice-shop-abc"),
    );
    server.create(
        "apps/replicasets",
        "shop",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "juice-shop-abc"},
               "spec": {"replicas": 1, "selector": {}, "template": {}},
               "status": {"replicas": 1, "availableReplicas": 1}}),
    );
    // The ReplicaSet read fails twice (503, 500), the DELETE hangs past the client's timeout
    // once, then fails with a 500, then goes through.
    server.inject(
        Fault::new(
            Verb::Get,
            "apps/replicasets",
            ApiError::internal("etcd timeout"),
        )
        .times(2),
    );
    server.stall(Stall::new(
        "DELETE",
        "/pods/juice-shop-1",
        Duration::from_secs(2),
        1,
    ));
    server.inject(
        Fault::new(
            Verb::Delete,
            "pods",
            ApiError::internal("etcd leader changed"),
        )
        .times(1),
    );
    let state = tempfile::tempdir().unwrap();
    let mut config = ResponseConfig::default();
    config.retry.request_timeout = Duration::from_millis(300);
    config.retry.initial_backoff = Duration::from_millis(20);
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    let mut d = shell_in("shop", "juice-shop-1", Some(&uid_of(&pod)));
    let Subject::Pod(p) = &mut d.subject else {
        panic!()
    };
    p.owner = Some(("Deployment".into(), "juice-shop".into()));
    p.labels = [("pod-template-hash".to_owned(), "abc".to_owned())].into();
    running.bus.publish(d).await.unwrap();
    let report = running.report().await;
    assert_eq!(
        report.output_fields["response.outcome"], "applied",
        "{report:?}"
    );
    assert!(server.get("pods", "shop", "juice-shop-1").is_none());
    let requests = server.requests();
    let gets = requests
        .iter()
        .filter(|r| r.starts_with("GET /apis/apps/v1/namespaces/shop/replicasets"))
        .count();
    assert_eq!(gets, 3, "{requests:?}");
    assert_eq!(deletes(&server).len(), 3, "{requests:?}");
    running.stop().await;
}

#[tokio::test]
async fn a_full_alert_queue_never_loses_a_response() {
    use youwatch_agent::{
        bus::{BusBuilder, BusMetrics, Delivery},
        cluster::ClusterContext,
        response::ResponseStage,
    };
    let server = ApiServer::start().await;
    let state = tempfile::tempdir().unwrap();
    let cluster = std::sync::Arc::new(ClusterContext::new(server.client(), NODE.into()));
    let stage = ResponseStage::new(
        &ResponseConfig::default(),
        Some(cluster),
        DryRun::Off,
        state.path(),
    )
    .unwrap();
    let metrics = BusMetrics::default();
    let mut builder = BusBuilder::new(metrics.clone());
    let listener = builder.listen("response", 4, Delivery::Lossless);
    // An alert writer that never writes: its queue of 1 stays full.
    let _stuck_alerts = builder.listen("alerts", 1, Delivery::BestEffort);
    let bus = builder.build();
    let handle = stage.spawn(listener, bus.reports_only());
    let mut names = Vec::new();
    for i in 0..20 {
        let name = format!("juice-shop-{i}");
        let pod = server.create_with_uid(
            "pods",
            "shop",
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name}, "spec": {"nodeName": NODE, "containers": []}}),
        );
        bus.publish(shell_in("shop", &name, Some(&uid_of(&pod))))
            .await
            .unwrap();
        names.push(name);
    }
    eventually("every pod deleted", || {
        names
            .iter()
            .all(|n| server.get("pods", "shop", n).is_none())
    })
    .await;
    assert!(
        metrics.dropped("alerts") >= 19,
        "alerts were dropped, counted"
    );
    drop(bus);
    handle.join().await.unwrap();
}
