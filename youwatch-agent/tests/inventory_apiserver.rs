//! The test API server itself, through the real kube client over real HTTP: the semantics the
//! inventory (and the response stage) rely on. No root needed.

mod support;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{core::v1::Pod, networking::v1::Ingress};
use kube::{
    Api,
    api::{
        DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, WatchEvent,
        WatchParams,
    },
};
use serde_json::json;
use support::apiserver::ApiServer;

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
