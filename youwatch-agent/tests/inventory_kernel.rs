//! The inventory on the real kernel, against the test API server over real HTTP: pods on
//! this node are watched (and unwatched), every exec names its pod, namespace, container and
//! image — `kubectl exec` shells and `kubectl debug` containers included — for both cgroup
//! drivers and the three QoS classes, and the pod list survives watch errors and API server
//! restarts. Needs root and BPF (fails under CI=true without them).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{
    apiserver::{ApiServer, WatchRefusal},
    cgroup_tree::CgroupTree,
    inventory_stage, require,
};
use tokio::sync::mpsc::Receiver;
use youwatch_agent::{
    event::EnrichedExec,
    inventory::InventoryConfig,
    sensor::ebpf::{ExecSensor, WatchSet},
};

const NODE: &str = "node-a";
const NS: &str = "shop";
const IMAGE: &str = "docker.io/bkimminich/juice-shop:v17.1.1";

/// The inventory stage on a real sensor, watching pods from a test API server, with the
/// kubelet's cgroup root inside a temporary cgroup tree.
struct Harness {
    // Drop order: the stage's input ends with the sensor; the tree goes last.
    rx: Receiver<EnrichedExec>,
    watch: WatchSet,
    _sensor: ExecSensor,
    server: ApiServer,
    tree: CgroupTree,
    /// The kubelet's cgroup root, relative to the tree (`kubepods.slice`, `kubepods`).
    root: String,
}

impl Harness {
    async fn start(label: &str, root: &str) -> Harness {
        let tree = CgroupTree::new(label);
        tree.mkdir(root);
        let server = ApiServer::start().await;
        let stage = inventory_stage::start(
            &server,
            NODE,
            &tree.root().join(root),
            InventoryConfig::default(),
        )
        .await;
        Harness {
            rx: stage.rx,
            watch: stage.watch,
            _sensor: stage.sensor,
            server,
            tree,
            root: root.into(),
        }
    }

    /// Creates a pod through the API (like a controller would); returns its UID.
    fn create_pod(&self, name: &str, node: &str, qos: &str) -> String {
        let created = self.server.create("pods", NS, pod(name, node, qos));
        created["metadata"]["uid"].as_str().unwrap().to_owned()
    }

    /// The pod cgroup the kubelet would create, relative to the tree.
    fn pod_cgroup(&self, uid: &str, qos: &str) -> String {
        let u = uid.replace('-', "_");
        let systemd = self.root.ends_with(".slice");
        let prefix = self.root.trim_end_matches(".slice");
        match (systemd, qos) {
            (true, "Guaranteed") => format!("{}/{prefix}-pod{u}.slice", self.root),
            (true, _) => {
                let q = qos.to_lowercase();
                format!("{}/{prefix}-{q}.slice/{prefix}-{q}-pod{u}.slice", self.root)
            }
            (false, "Guaranteed") => format!("{}/pod{uid}", self.root),
            (false, _) => format!("{}/{}/pod{uid}", self.root, qos.to_lowercase()),
        }
    }

    /// Posts the container's status (runtime id and image), as the kubelet does once it runs.
    fn post_status(&self, pod: &str, list: &str, container: &str, runtime_id: &str) {
        self.server.modify("pods", NS, pod, |p| {
            let statuses = p["status"][list].as_array().cloned().unwrap_or_default();
            let mut statuses: Vec<Value> = statuses
                .into_iter()
                .filter(|s| s["name"] != container)
                .collect();
            statuses.push(json!({
                "name": container, "image": IMAGE, "imageID": "sha256:1", "ready": true,
                "restartCount": 0, "containerID": runtime_id,
            }));
            p["status"][list] = statuses.into();
        });
    }

    async fn wait_watched(&self, rel: &str, watched: bool) {
        let id = self.tree.id(rel);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.watch.ids().contains(&id) != watched {
            assert!(
                Instant::now() < deadline,
                "{rel} {} watched after 10 s",
                if watched { "not" } else { "still" }
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The enriched exec whose argv holds `marker`.
    async fn exec_with(&mut self, marker: &str) -> EnrichedExec {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(e)) if e.event.argv.iter().any(|a| a == marker) => return e,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the inventory stopped"),
                Err(_) => panic!("no exec with {marker:?} within 10 s"),
            }
        }
    }

    /// Everything that arrives until nothing has for `quiet`.
    async fn drain(&mut self, quiet: Duration) -> Vec<EnrichedExec> {
        let mut seen = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout(quiet, self.rx.recv()).await {
            seen.push(e);
        }
        seen
    }
}

fn pod(name: &str, node: &str, qos: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": "juice-shop", "pod-template-hash": "7d9f8b6c5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "juice-shop-7d9f8b6c5", "uid": "0", "controller": true}],
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}],
        },
        "status": {"qosClass": qos, "phase": "Running"},
    })
}

/// A random 64-hex container id.
fn container_id() -> String {
    let mut bytes = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn has(name: &str) -> bool {
    require::root_and_cgroup2(name)
}

fn assert_attributed(e: &EnrichedExec, pod: &str, container: &str, id: &str) {
    let p = e.pod.as_ref().unwrap_or_else(|| panic!("no pod: {e:#?}"));
    assert_eq!((p.namespace.as_str(), p.name.as_str()), (NS, pod));
    assert_eq!(p.labels["app"], "juice-shop");
    assert_eq!(
        p.owner,
        Some(("Deployment".to_owned(), "juice-shop".to_owned()))
    );
    let c = e
        .container
        .as_ref()
        .unwrap_or_else(|| panic!("no container: {e:#?}"));
    assert_eq!(c.name, container);
    assert_eq!(c.id, id);
    assert_eq!(c.short_id(), &id[..12]);
    assert_eq!(c.image, IMAGE);
    assert_eq!(c.image_repository, "docker.io/bkimminich/juice-shop");
    assert_eq!(c.image_tag, "v17.1.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_on_this_node_is_watched_attributed_and_unwatched_when_deleted() {
    if !has("pod_on_this_node_is_watched_attributed_and_unwatched_when_deleted") {
        return;
    }
    let mut h = Harness::start("inv-pod", "kubepods.slice").await;
    let uid = h.create_pod("juice-shop-7d9f8b6c5-x2x4z", NODE, "Burstable");
    let pod_cg = h.pod_cgroup(&uid, "Burstable");
    let id = container_id();
    let ctr = format!("{pod_cg}/cri-containerd-{id}.scope");
    h.tree.mkdir(&ctr);
    h.post_status(
        "juice-shop-7d9f8b6c5-x2x4z",
        "containerStatuses",
        "app",
        &format!("containerd://{id}"),
    );
    h.wait_watched(&pod_cg, true).await;

    h.tree.sh(&ctr, "/bin/echo yw-first; true");
    let e = h.exec_with("yw-first").await;
    assert_attributed(&e, "juice-shop-7d9f8b6c5-x2x4z", "app", &id);
    assert_eq!(e.pod.as_ref().unwrap().uid, uid);
    assert_eq!(e.process.name, "echo");
    assert_eq!(e.ancestors[0].name, "sh", "proc.pname");
    assert_eq!(e.ancestors[0].args, ["-c", "/bin/echo yw-first; true"]);
    assert_eq!(e.user_name.as_deref(), Some("root"));

    // A second exec in the same container: the `kubectl exec` case.
    h.tree.sh(&ctr, "/bin/echo yw-second; true");
    let e = h.exec_with("yw-second").await;
    assert_attributed(&e, "juice-shop-7d9f8b6c5-x2x4z", "app", &id);

    h.server
        .delete("pods", NS, "juice-shop-7d9f8b6c5-x2x4z")
        .unwrap();
    h.wait_watched(&pod_cg, false).await;
    h.drain(Duration::from_millis(200)).await;
    h.tree.sh(&ctr, "/bin/echo yw-after-delete");
    let late = h.drain(Duration::from_millis(500)).await;
    assert!(
        late.iter()
            .all(|e| !e.event.argv.iter().any(|a| a == "yw-after-delete")),
        "{late:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_elsewhere_or_not_selected_are_ignored() {
    if !has("pods_elsewhere_or_not_selected_are_ignored") {
        return;
    }
    let h = Harness::start("inv-ignore", "kubepods.slice").await;
    let elsewhere = h.create_pod("juice-shop-b", "node-b", "BestEffort");
    let other_app = h.create_pod("nginx-1", NODE, "BestEffort");
    let guarded = h.create_pod("juice-shop-a", NODE, "BestEffort");
    for uid in [&elsewhere, &other_app, &guarded] {
        h.tree.mkdir(&h.pod_cgroup(uid, "BestEffort"));
    }
    // Updates are handled in order: once the last pod is watched, the others were decided.
    h.wait_watched(&h.pod_cgroup(&guarded, "BestEffort"), true)
        .await;
    let ids = h.watch.ids();
    for uid in [&elsewhere, &other_app] {
        assert!(!ids.contains(&h.tree.id(&h.pod_cgroup(uid, "BestEffort"))));
    }
    assert_eq!(ids.len(), 1);
    // The watch asked the API server for this node's pods only.
    assert!(
        h.server
            .requests()
            .iter()
            .any(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{:#?}",
        h.server.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_seen_before_its_cgroup_is_watched_when_it_appears() {
    if !has("pod_seen_before_its_cgroup_is_watched_when_it_appears") {
        return;
    }
    let h = Harness::start("inv-late", "kubepods.slice").await;
    // The QoS directory does not exist yet either (a kubelet just starting).
    let uid = h.create_pod("juice-shop-late", NODE, "Burstable");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(h.watch.ids().is_empty());
    let pod_cg = h.pod_cgroup(&uid, "Burstable");
    h.tree.mkdir(&pod_cg);
    h.wait_watched(&pod_cg, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_container_shell_is_attributed_with_its_name() {
    if !has("debug_container_shell_is_attributed_with_its_name") {
        return;
    }
    let mut h = Harness::start("inv-debug", "kubepods.slice").await;
    let name = "juice-shop-dbg";
    let uid = h.create_pod(name, NODE, "Guaranteed");
    let pod_cg = h.pod_cgroup(&uid, "Guaranteed");
    let app_id = container_id();
    h.tree
        .mkdir(&format!("{pod_cg}/cri-containerd-{app_id}.scope"));
    h.post_status(
        name,
        "containerStatuses",
        "app",
        &format!("containerd://{app_id}"),
    );
    h.wait_watched(&pod_cg, true).await;

    // `kubectl debug`: the ephemeral container is added to the spec, the runtime starts it
    // (a new container cgroup under the pod) and its shell runs before the kubelet posts the
    // status that names it.
    h.server.modify("pods", NS, name, |p| {
        p["spec"]["ephemeralContainers"] =
            json!([{"name": "debugger-x7k2p", "image": "busybox:1.36", "targetContainerName": "app"}]);
    });
    let debug_id = container_id();
    let debug = format!("{pod_cg}/cri-containerd-{debug_id}.scope");
    h.tree.mkdir(&debug);
    h.tree.sh(&debug, "/bin/echo yw-debug; true");
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.post_status(
        name,
        "ephemeralContainerStatuses",
        "debugger-x7k2p",
        &format!("containerd://{debug_id}"),
    );
    let e = h.exec_with("yw-debug").await;
    assert_attributed(&e, name, "debugger-x7k2p", &debug_id);

    // The app container is still told apart.
    h.tree.sh(
        &format!("{pod_cg}/cri-containerd-{app_id}.scope"),
        "/bin/echo yw-app; true",
    );
    let e = h.exec_with("yw-app").await;
    assert_attributed(&e, name, "app", &app_id);
}

/// One real-kernel pass per cgroup driver, QoS class and runtime naming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_drivers_and_all_qos_classes_resolve() {
    if !has("both_drivers_and_all_qos_classes_resolve") {
        return;
    }
    let layouts = [
        (
            "kubepods.slice",
            "Guaranteed",
            "cri-containerd-{}.scope",
            "containerd",
        ),
        ("kubepods.slice", "Burstable", "crio-{}.scope", "cri-o"),
        ("kubepods.slice", "BestEffort", "docker-{}.scope", "docker"),
        ("kubepods", "Guaranteed", "{}", "containerd"),
        ("kubepods", "Burstable", "crio-{}", "cri-o"),
        ("kubepods", "BestEffort", "{}", "docker"),
    ];
    for (root, qos, scope, scheme) in layouts {
        let mut h = Harness::start("inv-layout", root).await;
        let name = format!("juice-shop-{}", qos.to_lowercase());
        let uid = h.create_pod(&name, NODE, qos);
        let pod_cg = h.pod_cgroup(&uid, qos);
        let id = container_id();
        let ctr = format!("{pod_cg}/{}", scope.replace("{}", &id));
        h.tree.mkdir(&ctr);
        h.post_status(
            &name,
            "containerStatuses",
            "app",
            &format!("{scheme}://{id}"),
        );
        h.wait_watched(&pod_cg, true).await;
        let marker = format!("yw-{root}-{qos}");
        h.tree.sh(&ctr, &format!("/bin/echo {marker}; true"));
        let e = h.exec_with(&marker).await;
        assert_attributed(&e, &name, "app", &id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_error_and_api_server_restart_lose_no_pod() {
    if !has("watch_error_and_api_server_restart_lose_no_pod") {
        return;
    }
    let h = Harness::start("inv-resync", "kubepods.slice").await;
    let qos = "BestEffort";
    let mk = |name: &str| {
        let uid = h.create_pod(name, NODE, qos);
        let cg = h.pod_cgroup(&uid, qos);
        h.tree.mkdir(&cg);
        cg
    };
    let a = mk("juice-shop-a");
    h.wait_watched(&a, true).await;

    // ERROR 410 mid-stream: the watcher re-lists; a pod created meanwhile is not missed.
    h.server.fail_watches();
    let b = mk("juice-shop-b");
    h.wait_watched(&b, true).await;
    h.server.wait_for_watches(1, Duration::from_secs(10)).await;
    assert!(
        h.watch.ids().contains(&h.tree.id(&a)),
        "a survived the re-list"
    );

    // The API server restarts; while it is down, a is deleted and c created. Its history is
    // gone afterwards, so the agent must re-list to learn both.
    let c_uid = std::sync::Mutex::new(String::new());
    h.server
        .restart(Duration::from_millis(500), |s| {
            s.delete("pods", NS, "juice-shop-a").unwrap();
            let created = s.create("pods", NS, pod("juice-shop-c", NODE, qos));
            *c_uid.lock().unwrap() = created["metadata"]["uid"].as_str().unwrap().to_owned();
        })
        .await;
    let c = h.pod_cgroup(&c_uid.lock().unwrap(), qos);
    h.tree.mkdir(&c);
    h.wait_watched(&c, true).await;
    h.wait_watched(&a, false).await;
    assert!(
        h.watch.ids().contains(&h.tree.id(&b)),
        "b survived the restart"
    );
    assert_eq!(h.watch.ids().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_refused_with_a_status_after_a_restart_relists_into_the_kernel_map() {
    if !has("watch_refused_with_a_status_after_a_restart_relists_into_the_kernel_map") {
        return;
    }
    let h = Harness::start("inv-refused", "kubepods.slice").await;
    // Refusals as an HTTP 410 status, not an ERROR event.
    h.server.set_watch_refusal(WatchRefusal::Status);
    let qos = "BestEffort";
    let mk = |s: &ApiServer, name: &str| {
        let uid = s.create("pods", NS, pod(name, NODE, qos))["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_owned();
        let cg = h.pod_cgroup(&uid, qos);
        h.tree.mkdir(&cg);
        cg
    };
    let a = mk(&h.server, "juice-shop-a");
    let b = mk(&h.server, "juice-shop-b");
    h.wait_watched(&a, true).await;
    h.wait_watched(&b, true).await;

    // While the API server is down, a is replaced by a pod of the same name (a new UID, a new
    // cgroup; the old cgroup lingers, as it may while the kubelet tears it down). The watch
    // cannot resume: it must re-list, drop the old a and guard the new one.
    let a2 = std::sync::Mutex::new(String::new());
    h.server
        .restart(Duration::from_millis(300), |s| {
            s.delete("pods", NS, "juice-shop-a").unwrap();
            *a2.lock().unwrap() = mk(s, "juice-shop-a");
        })
        .await;
    let a2 = a2.into_inner().unwrap();
    h.wait_watched(&a2, true).await;
    h.wait_watched(&a, false).await;
    let ids = h.watch.ids();
    assert!(ids.contains(&h.tree.id(&b)), "b survived the re-list");
    assert_eq!(ids.len(), 2);
}
