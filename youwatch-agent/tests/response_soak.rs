//! The whole response stage under the test API server's fault injection: for a minute
//! (YOUWATCH_SOAK_SECS), shells in fresh pods and WAF bans stream in while 500s, hung requests
//! and dropped watches hit every call the stage makes. When the faults stop, every decided
//! action must have been applied exactly once: each pod deleted, each address on the Ingress
//! once, one final report per action, none failed or given up.

mod support;

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{
    apiserver::{
        ApiError, ApiServer,
        faults::{Fault, Stall, Verb},
    },
    response::{NODE, deployment_pod, ingress, shell_in, start, waf_ban},
};
use youwatch_agent::{
    detection::{Detection, Subject},
    response::{DryRun, ResponseConfig, config::IntOrPercent},
};

const INGRESSES: &str = "networking.k8s.io/ingresses";
const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";

fn soak_duration() -> Duration {
    let secs = std::env::var("YOUWATCH_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// One fault per tick, in turn, on every call the stage makes.
fn inject(server: &ApiServer, tick: usize) {
    let internal = || ApiError::internal("injected");
    match tick % 8 {
        0 => server.inject(Fault::new(Verb::Delete, "pods", internal()).times(1)),
        1 => server.inject(Fault::new(Verb::Get, "apps/replicasets", internal()).times(1)),
        2 => server
            .inject(Fault::new(Verb::Patch, "networking.k8s.io/ingresses", internal()).times(1)),
        3 => server.stall(Stall::new(
            "DELETE",
            "/pods/",
            Duration::from_millis(900),
            1,
        )),
        4 => server.stall(Stall::new(
            "PATCH",
            "/ingresses/",
            Duration::from_millis(900),
            1,
        )),
        5 => {
            server.inject(Fault::new(Verb::Get, "networking.k8s.io/ingresses", internal()).times(1))
        }
        6 => server.drop_watches(),
        _ => server.inject(Fault::new(Verb::Create, "events.k8s.io/events", internal()).times(1)),
    }
}

/// The action reports received so far, by target.
fn drain(running: &mut support::response::Running, reports: &mut BTreeMap<String, Vec<String>>) {
    while let Ok(envelope) = running.reports.try_recv() {
        let d = (*envelope.detection).clone();
        envelope.done();
        if d.origin == youwatch_agent::detection::Origin::Response {
            let (target, outcome) = outcome(&d);
            reports.entry(target).or_default().push(outcome);
        }
    }
}

fn outcome(d: &Detection) -> (String, String) {
    (
        d.output_fields["response.target"]
            .as_str()
            .unwrap()
            .to_owned(),
        d.output_fields["response.outcome"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_injected_faults_every_decided_action_is_applied_exactly_once() {
    let server = ApiServer::start().await;
    server.create(
        "apps/replicasets",
        "shop",
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "juice-shop-abc"},
               "spec": {"replicas": 3, "selector": {}, "template": {}},
               "status": {"replicas": 3, "availableReplicas": 3}}),
    );
    server.create(
        INGRESSES,
        "shop",
        ingress("web", &["shop.example"], "juice-shop", &[]),
    );
    let mut config = ResponseConfig::default();
    config.retry.request_timeout = Duration::from_millis(300);
    config.retry.initial_backoff = Duration::from_millis(20);
    config.retry.max_backoff = Duration::from_millis(500);
    config.deny_ip.coalesce = Duration::from_millis(100);
    config.delete_pod.max_per_workload = 1_000_000;
    config.delete_pod.min_available = IntOrPercent::Int(0);
    config.shutdown_grace = Duration::from_secs(10);
    let state = tempfile::tempdir().unwrap();
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());

    let mut reports: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut pods, mut ips) = (Vec::new(), Vec::new());
    let until = Instant::now() + soak_duration();
    let mut tick = 0;
    while Instant::now() < until {
        inject(&server, tick);
        if tick % 2 == 0 {
            let name = format!("juice-shop-abc-{tick}");
            let pod = server.create_with_uid(
                "pods",
                "shop",
                deployment_pod(&name, NODE, "juice-shop-abc"),
            );
            let mut d = shell_in("shop", &name, pod["metadata"]["uid"].as_str());
            let Subject::Pod(p) = &mut d.subject else {
                unreachable!()
            };
            p.owner = Some(("Deployment".into(), "juice-shop".into()));
            p.labels = [("pod-template-hash".to_owned(), "abc".to_owned())].into();
            running.bus.publish(d).await.unwrap();
            pods.push(name);
        } else if tick % 4 == 1 {
            let ip = format!("198.51.{}.{}", tick / 250, tick % 250);
            running
                .bus
                .publish(waf_ban(
                    &ip,
                    Some("shop.example"),
                    Duration::from_secs(3600),
                    1,
                ))
                .await
                .unwrap();
            ips.push(ip);
        }
        drain(&mut running, &mut reports);
        tick += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.clear_faults();
    let decided = pods.len() + ips.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while reports.values().map(Vec::len).sum::<usize>() < decided {
        assert!(
            Instant::now() < deadline,
            "{} of {decided} actions reported after the faults stopped",
            reports.values().map(Vec::len).sum::<usize>()
        );
        drain(&mut running, &mut reports);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.stop().await;

    // One final report per action, every one applied (already_done: a hung request that
    // landed after the client gave up, found done by the retry).
    assert_eq!(reports.len(), decided, "one target per decided action");
    for (target, outcomes) in &reports {
        assert_eq!(outcomes.len(), 1, "{target}: {outcomes:?}");
        assert!(
            outcomes[0] == "applied" || outcomes[0] == "already_done",
            "{target}: {outcomes:?}"
        );
    }
    for name in &pods {
        assert!(
            server.get("pods", "shop", name).is_none(),
            "{name} still there"
        );
    }
    let list = server.get(INGRESSES, "shop", "web").unwrap()["metadata"]["annotations"][DENY]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let entries: Vec<&str> = list.split(',').map(str::trim).collect();
    for ip in &ips {
        let n = entries.iter().filter(|e| **e == format!("{ip}/32")).count();
        assert_eq!(n, 1, "{ip} appears {n} times in {list}");
    }
    eprintln!(
        "soak: {} pod deletions and {} bans under faults, {} requests served",
        pods.len(),
        ips.len(),
        server.requests().len()
    );
}
