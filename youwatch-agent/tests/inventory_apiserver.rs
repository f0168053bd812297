//! The test API server itself, through the real kube client over real HTTP: the semantics the
//! inventory (and the response stage) rely on; then the inventory's pod source against it when
//! the API server fails (refused watches, failing lists, restarts that lose history). No root
//! needed.

mod support;

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Pod, networking::v1::Ingress};
use kube::{
    Api,
    api::{
        DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
        WatchParams,
    },
};
use prometheus_client::registry::Registry;
use serde_json::json;
use support::apiserver::{
    ApiError, ApiServer, Restart, WatchRefusal,
    faults::{Fault, Verb},
};
use tokio::sync::mpsc::Receiver;
use youwatch_agent::inventory::{
    InventoryMetrics,
    source::{self, PodUpdate},
};

fn pod(name: &str, node: &str, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "busybox:1.36"}]},
    })
}

fn status_code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn list_with_field_and_label_selectors() {
    let server = ApiServer::start().await;
    server.create("pods", "shop", pod("a", "node-a", json!({"app": "web"})));
    server.create("pods", "shop", pod("b", "node-b", json!({"app": "web"})));
    server.create("pods", "other", pod("c", "node-a", json!({"app": "db"})));
    let all: Api<Pod> = Api::all(server.client());
    let names = |list: kube::core::ObjectList<Pod>| {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect::<Vec<_>>()
    };
    let on_a = all
        .list(&ListParams::default().fields("spec.nodeName=node-a"))
        .await
        .unwrap();
    // Sorted by namespace, then name.
    assert_eq!(names(on_a), ["c", "a"]);
    let web = all
        .list(&ListParams::default().labels("app in (web)"))
        .await
        .unwrap();
    assert_eq!(names(web), ["a", "b"]);
    let shop: Api<Pod> = Api::namespaced(server.client(), "shop");
    let not_a = shop
        .list(&ListParams::default().fields("spec.nodeName!=node-a"))
        .await
        .unwrap();
    assert_eq!(names(not_a), ["b"]);
    // Paging.
    let page = all.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(page.items.len(), 2);
    let token = page.metadata.continue_.clone().unwrap();
    let rest = all
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.metadata.continue_.is_none());
    // Unsupported field and bad label selector: 400, as a real API server answers.
    let err = all
        .list(&ListParams::default().fields("spec.bogus=1"))
        .await
        .unwrap_err();
    assert_eq!(status_code(err), 400);
    let err = all
        .list(&ListParams::default().labels("app in"))
        .await
        .unwrap_err();
    assert_eq!(status_code(err), 400);
}

#[tokio::test]
async fn get_create_update_conflicts_and_dry_run() {
    let server = ApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    assert_eq!(status_code(pods.get("nope").await.unwrap_err()), 404);
    let created = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod("a", "n", json!({}))).unwrap(),
        )
        .await
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    assert_eq!(uid.len(), 36);
    let again = pods
        .create(
            &PostParams::default(),
            &serde_json::from_value(pod("a", "n", json!({}))).unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(again), 409);

    // A stale resourceVersion conflicts.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.metadata.labels = Some([("v".to_owned(), "1".to_owned())].into());
    let updated = pods
        .replace("a", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );
    stale.metadata.labels = Some([("v".to_owned(), "2".to_owned())].into());
    assert_eq!(
        status_code(
            pods.replace("a", &PostParams::default(), &stale)
                .await
                .unwrap_err()
        ),
        409
    );
    // A merge patch carrying a stale resourceVersion conflicts too; without one it applies.
    let stale_patch = json!({"metadata": {"resourceVersion": created.metadata.resource_version, "annotations": {"x": "1"}}});
    assert_eq!(
        status_code(
            pods.patch("a", &PatchParams::default(), &Patch::Merge(&stale_patch))
                .await
                .unwrap_err()
        ),
        409
    );
    let patched = pods
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"annotations": {"x": "1"}}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.metadata.annotations.unwrap()["x"], "1");

    // dryRun changes nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    pods.create(
        &dry,
        &serde_json::from_value(pod("ghost", "n", json!({}))).unwrap(),
    )
    .await
    .unwrap();
    assert!(server.get("pods", "shop", "ghost").is_none());

    // Status subresource: only the status changes.
    let status = json!({"status": {"phase": "Running"}, "spec": {"nodeName": "elsewhere"}});
    let after = pods
        .patch_status("a", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(after.status.unwrap().phase.as_deref(), Some("Running"));
    assert_eq!(after.spec.unwrap().node_name.as_deref(), Some("n"));
}

#[tokio::test]
async fn delete_with_preconditions() {
    let server = ApiServer::start().await;
    let created = server.create("pods", "shop", pod("a", "n", json!({})));
    let pods: Api<Pod> = Api::namespaced(server.client(), "shop");
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("00000000-0000-4000-a000-000000000000".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        status_code(pods.delete("a", &wrong_uid).await.unwrap_err()),
        409
    );
    let wrong_rv = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..Default::default()
    };
    assert_eq!(
        status_code(pods.delete("a", &wrong_rv).await.unwrap_err()),
        409
    );
    let dry = DeleteParams {
        dry_run: true,
        ..Default::default()
    };
    pods.delete("a", &dry).await.unwrap();
    assert!(server.get("pods", "shop", "a").is_some());
    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created["metadata"]["uid"].as_str().map(str::to_owned),
            resource_version: created["metadata"]["resourceVersion"]
                .as_str()
                .map(str::to_owned),
        }),
        ..Default::default()
    };
    pods.delete("a", &right).await.unwrap();
    assert!(server.get("pods", "shop", "a").is_none());
    assert_eq!(
        status_code(pods.delete("a", &right).await.unwrap_err()),
        404
    );
}

#[tokio::test]
async fn watch_sees_selector_transitions_bookmarks_and_gone() {
    let server = ApiServer::start().await;
    let pods: Api<Pod> = Api::all(server.client());
    let list = pods.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let params = WatchParams::default().fields("spec.nodeName=node-a");
    let mut stream = pods.watch(&params, &rv).await.unwrap().boxed();
    server.create("pods", "shop", pod("a", "node-a", json!({})));
    server.create("pods", "shop", pod("b", "node-b", json!({})));
    // Moving b onto node-a looks like ADDED to this watch, and a onto node-b like DELETED.
    server.modify("pods", "shop", "b", |p| {
        p["spec"]["nodeName"] = "node-a".into()
    });
    server.modify("pods", "shop", "a", |p| {
        p["spec"]["nodeName"] = "node-b".into()
    });
    server.bookmark();
    let mut seen = Vec::new();
    for _ in 0..4 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(match event {
            WatchEvent::Added(p) => format!("ADDED {}", p.metadata.name.unwrap()),
            WatchEvent::Modified(p) => format!("MODIFIED {}", p.metadata.name.unwrap()),
            WatchEvent::Deleted(p) => format!("DELETED {}", p.metadata.name.unwrap()),
            WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
            WatchEvent::Error(e) => format!("ERROR {}", e.code),
        });
    }
    assert_eq!(seen[..3], ["ADDED a", "ADDED b", "DELETED a"]);
    assert!(seen[3].starts_with("BOOKMARK "), "{seen:?}");

    // An injected failure: ERROR 410, then the stream ends.
    server.fail_watches();
    let event = stream.try_next().await.unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Error(e) if e.code == 410));
    assert!(stream.next().await.is_none());

    // Resuming from a compacted version: 410 in the stream (HTTP 200), as a real server does.
    server.compact();
    server.create("pods", "shop", pod("c", "node-a", json!({})));
    let mut stale = pods.watch(&params, &rv).await.unwrap().boxed();
    let event = stale.try_next().await.unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Error(e) if e.code == 410));
}

#[tokio::test]
async fn restart_drops_connections_and_keeps_objects() {
    let server = ApiServer::start().await;
    server.create("pods", "shop", pod("a", "n", json!({})));
    let pods: Api<Pod> = Api::all(server.client());
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    server.wait_for_watches(1, Duration::from_secs(5)).await;
    server
        .restart(Duration::from_millis(200), |s| {
            s.delete("pods", "shop", "a").unwrap();
        })
        .await;
    // The old stream ends (with an error or EOF) when its connection is dropped.
    let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(end.is_none() || end.unwrap().is_err());
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert!(list.items.is_empty(), "the delete made while down is there");
    // Other resource types are served too.
    let ingresses: Api<Ingress> = Api::namespaced(server.client(), "shop");
    assert!(
        ingresses
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn faults_answer_matching_requests_with_their_status() {
    let server = ApiServer::start().await;
    server.create("pods", "shop", pod("a", "n", json!({})));
    server.inject(Fault::new(Verb::List, "pods", ApiError::internal("etcd timed out")).times(2));
    let pods: Api<Pod> = Api::all(server.client());
    for _ in 0..2 {
        let err = pods.list(&ListParams::default()).await.unwrap_err();
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 500 && s.reason == "InternalError"),
            "{err}"
        );
    }
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    // Other verbs and resources are not affected; a fault without a count lasts until cleared.
    // (Not 429, 503 or 504 here: kube's client retries those by itself, 15 times.)
    server.inject(Fault::new(
        Verb::Watch,
        "pods",
        ApiError::internal("watch cache not ready"),
    ));
    let shop: Api<Pod> = Api::namespaced(server.client(), "shop");
    assert!(shop.get("a").await.is_ok());
    for _ in 0..3 {
        assert_eq!(
            status_code(
                pods.watch(&WatchParams::default(), "0")
                    .await
                    .err()
                    .unwrap()
            ),
            500
        );
    }
    server.clear_faults();
    assert!(pods.watch(&WatchParams::default(), "0").await.is_ok());
}

#[tokio::test]
async fn refused_watches_come_as_an_event_or_as_a_status() {
    let server = ApiServer::start().await;
    let pods: Api<Pod> = Api::all(server.client());
    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    server.create("pods", "shop", pod("a", "n", json!({})));
    server.compact();
    // kube-apiserver: HTTP 200 and an ERROR event.
    let mut stream = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let event = stream.try_next().await.unwrap().unwrap();
    assert!(matches!(event, WatchEvent::Error(e) if e.code == 410));
    // Other servers: the status itself.
    server.set_watch_refusal(WatchRefusal::Status);
    let err = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 410 && s.reason == "Expired"),
        "{err}"
    );
    // A version the server has not reached: 504 with cause ResourceVersionTooLarge (shown as
    // an event: kube's client retries a 504 status by itself for minutes).
    server.set_watch_refusal(WatchRefusal::ErrorEvent);
    let mut stream = pods
        .watch(&WatchParams::default(), "1000")
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!((e.code, e.reason.as_str()), (504, "Timeout"));
            assert!(
                e.message.contains("Too large resource version: 1000"),
                "{e:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

// ---- the inventory's pod source when the API server fails -----------------------------------

const NODE: &str = "node-a";

/// The pod source of the inventory for `NODE`, with its metrics.
struct Source {
    rx: Receiver<PodUpdate>,
    metrics: InventoryMetrics,
}

impl Source {
    fn start(server: &ApiServer, relist_every: Option<Duration>) -> Source {
        let metrics = InventoryMetrics::default();
        let rx = source::spawn(server.client(), NODE, relist_every, metrics.clone());
        Source { rx, metrics }
    }

    /// The UIDs of the next re-list, within `timeout`.
    async fn relist(&mut self, timeout: Duration) -> BTreeSet<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(PodUpdate::Relist(pods))) => {
                    return pods.into_iter().map(|p| p.info.uid).collect();
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("the pod source ended"),
                Err(_) => panic!("no re-list within {timeout:?}"),
            }
        }
    }

    /// Waits until an update about `uid` arrives (the watch is live).
    async fn seen(&mut self, uid: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(PodUpdate::Apply(p))) if p.info.uid == uid => return,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the pod source ended"),
                Err(_) => panic!("no update of {uid} within 10 s"),
            }
        }
    }

    /// `name{labels} value` lines of the inventory's metrics.
    fn metric(&self, line_start: &str) -> f64 {
        let mut registry = Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

fn create_on_node(server: &ApiServer, name: &str) -> String {
    let created = server.create("pods", "shop", pod(name, NODE, json!({})));
    created["metadata"]["uid"].as_str().unwrap().to_owned()
}

fn set(uids: &[&String]) -> BTreeSet<String> {
    uids.iter().map(|u| (*u).clone()).collect()
}

const RESTART: Duration = Duration::from_millis(300);
/// Room for the retries around a restart: with client-go's backoff the watch is back within
/// about 5 s; more on a loaded machine.
const RECOVERY: Duration = Duration::from_secs(30);

/// Fault 1: a watch refused with an HTTP 410 status (not an ERROR event) must lead to a
/// re-list, as client-go's reflector does; retrying the stale version never ends.
#[tokio::test]
async fn watch_refused_with_a_410_status_leads_to_a_relist() {
    let server = ApiServer::start().await;
    server.set_watch_refusal(WatchRefusal::Status);
    let a = create_on_node(&server, "a");
    let mut source = Source::start(&server, None);
    assert_eq!(source.relist(RECOVERY).await, set(&[&a]));
    server.wait_for_watches(1, Duration::from_secs(10)).await;

    let b = Mutex::new(String::new());
    server
        .restart(RESTART, |s| {
            s.delete("pods", "shop", "a").unwrap();
            *b.lock().unwrap() = create_on_node(s, "b");
        })
        .await;
    let b = b.into_inner().unwrap();
    assert_eq!(source.relist(RECOVERY).await, set(&[&b]));
    assert_eq!(
        source.metric("youwatch_inventory_pod_relists_total{reason=\"Expired\"}"),
        1.0
    );
    assert!(source.metric("youwatch_inventory_pod_watch_errors_total{reason=\"Expired\"}") >= 1.0);
}

/// Fault 2: while the pod list fails, retries back off exponentially (client-go: 800 ms
/// doubling to 30 s, each delay up to twice as long with jitter), not every 0.2 s.
#[tokio::test]
async fn failing_pod_list_is_retried_with_exponential_backoff() {
    let server = ApiServer::start().await;
    let a = create_on_node(&server, "a");
    server.inject(Fault::new(
        Verb::List,
        "pods",
        ApiError::internal("etcdserver: request timed out"),
    ));
    let mut source = Source::start(&server, None);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let lists: Vec<Instant> = server
        .timed_requests()
        .into_iter()
        .filter(|(_, r)| r.starts_with("GET /api/v1/pods?") && !r.contains("watch=true"))
        .map(|(t, _)| t)
        .collect();
    server.clear_faults();
    // Requests at 0, then at least 0.8, 0.8 + 1.6, 0.8 + 1.6 + 3.2 s.
    assert!(
        (2..=4).contains(&lists.len()),
        "{} lists in 7 s: {lists:?}",
        lists.len()
    );
    for (i, pair) in lists.windows(2).enumerate() {
        let least = Duration::from_millis(800) * 2u32.pow(i as u32);
        assert!(
            pair[1] - pair[0] >= least,
            "retry {} after {:?}, less than {least:?}",
            i + 1,
            pair[1] - pair[0]
        );
    }
    assert_eq!(
        source.metric("youwatch_inventory_pod_watch_errors_total{reason=\"ListFailed\"}"),
        lists.len() as f64
    );
    assert_eq!(source.relist(RECOVERY).await, set(&[&a]));
}

/// Fault 3: an API server restarted on a restored datastore has lower resourceVersions than the
/// agent saw; it refuses the watch with 504 "Too large resource version" (an ERROR event, as
/// kube-apiserver sends it). The agent must re-list: the pod deleted meanwhile is dropped,
/// the one re-created under the same name is known by its new UID, the new one is added.
#[tokio::test]
async fn restart_that_lost_its_versions_leads_to_a_relist() {
    let server = ApiServer::start().await;
    let a = create_on_node(&server, "a");
    let b = create_on_node(&server, "b");
    let mut source = Source::start(&server, None);
    assert_eq!(source.relist(RECOVERY).await, set(&[&a, &b]));
    server.wait_for_watches(1, Duration::from_secs(10)).await;
    // Status updates raise the version the agent resumes from above what the restored
    // datastore will have (one version per object).
    for i in 0..5 {
        server.modify("pods", "shop", "b", |p| {
            p["status"]["phase"] = if i % 2 == 0 { "Running" } else { "Pending" }.into()
        });
    }
    source.seen(&b).await;

    let (a2, c) = (Mutex::new(String::new()), Mutex::new(String::new()));
    server
        .restart_with(Restart::ResetVersions, RESTART, |s| {
            s.delete("pods", "shop", "a").unwrap();
            *a2.lock().unwrap() = create_on_node(s, "a");
            *c.lock().unwrap() = create_on_node(s, "c");
        })
        .await;
    let (a2, c) = (a2.into_inner().unwrap(), c.into_inner().unwrap());
    assert_eq!(source.relist(RECOVERY).await, set(&[&a2, &b, &c]));
    assert_eq!(
        source.metric("youwatch_inventory_pod_relists_total{reason=\"WatchRefused\"}"),
        1.0
    );
}

/// Fault 3, when nothing says so: events lost without an error are corrected by the periodic
/// re-list.
#[tokio::test]
async fn periodic_relist_corrects_events_lost_silently() {
    let server = ApiServer::start().await;
    let a = create_on_node(&server, "a");
    let mut source = Source::start(&server, Some(Duration::from_secs(2)));
    assert_eq!(source.relist(RECOVERY).await, set(&[&a]));
    server.wait_for_watches(1, Duration::from_secs(10)).await;
    let b = Mutex::new(String::new());
    server
        .restart_with(Restart::LoseEvents, RESTART, |s| {
            s.delete("pods", "shop", "a").unwrap();
            *b.lock().unwrap() = create_on_node(s, "b");
        })
        .await;
    let b = b.into_inner().unwrap();
    // Periodic re-lists before the restart was noticed may still hold a; the first after it
    // does not.
    let deadline = Instant::now() + RECOVERY;
    loop {
        let listed = source.relist(RECOVERY).await;
        if listed == set(&[&b]) {
            break;
        }
        assert!(Instant::now() < deadline, "still listed: {listed:?}");
    }
    assert!(source.metric("youwatch_inventory_pod_relists_total{reason=\"Periodic\"}") >= 1.0);
}

/// Fault 4: "pod watch recovered" is logged once, when a list or event finally succeeds, not
/// before each retry.
#[tokio::test]
async fn recovery_is_logged_once_when_the_list_works_again() {
    let log = LogCapture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(log.clone())
            .with_ansi(false)
            .finish(),
    );
    let server = ApiServer::start().await;
    let a = create_on_node(&server, "a");
    server.inject(
        Fault::new(
            Verb::List,
            "pods",
            ApiError::internal("etcdserver: leader changed"),
        )
        .times(2),
    );
    let mut source = Source::start(&server, None);
    assert_eq!(source.relist(RECOVERY).await, set(&[&a]));
    let text = log.text();
    assert_eq!(text.matches("pod watch failed").count(), 2, "{text}");
    assert_eq!(text.matches("pod watch recovered").count(), 1, "{text}");
    let failed = text.rfind("pod watch failed").unwrap();
    assert!(
        text.rfind("pod watch recovered").unwrap() > failed,
        "{text}"
    );
}

/// Log lines written by a test's subscriber.
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}
