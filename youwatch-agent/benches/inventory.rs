//! Pod → watched-cgroup latency (`cargo xtask bench inventory`; needs root).
//!
//! The inventory stage runs on the real exec sensor against the test API server over real
//! HTTP, with a bare kube watcher on the same watch as the baseline. Per pod it measures,
//! from the instant the API server hands the pod's ADDED event to the open watches:
//! - `delivered`: until the bare watcher receives it (kube client + HTTP, the floor);
//! - `watched`: until the pod's cgroup id is in the kernel's WATCHED map (cgroup already
//!   there: what the inventory adds is resolving the cgroup and updating the map);
//!
//! and, for pods announced before their cgroup exists (the usual order: the kubelet creates
//! the cgroup after it sees the pod), from the cgroup's mkdir until it is watched (inotify).
//! Medians, p90, p99 and max; ratios against the baseline are measured side by side.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use support::{
    apiserver::{self, ApiServer},
    bench_args,
    cgroup_tree::CgroupTree,
    inventory_stage,
};
use youwatch_agent::{inventory::InventoryConfig, sensor::ebpf::WatchSet};

const NODE: &str = "bench-node";

fn pod(name: &str, uid: &str) -> serde_json::Value {
    json!({
        "metadata": {"name": name, "uid": uid},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "bkimminich/juice-shop"}]},
        "status": {"qosClass": "BestEffort"},
    })
}

fn pod_dir(uid: &str) -> String {
    format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        uid.replace('-', "_")
    )
}

/// Polls the kernel map every 20 µs (on a thread: Tokio's timer has 1 ms granularity) until
/// `id` is in it; returns when it was first seen.
async fn until_watched(watch: &WatchSet, id: u64) -> Instant {
    let watch = watch.clone();
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if watch.ids().contains(&id) {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "cgroup {id} not watched after 10 s"
            );
            std::thread::sleep(Duration::from_micros(20));
        }
    })
    .await
    .unwrap()
}

struct Stats(Vec<Duration>);

impl Stats {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        v[((v.len() - 1) as f64 * p).round() as usize]
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<44} p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
            self.pct(0.5),
            self.pct(0.9),
            self.pct(0.99),
            self.pct(1.0)
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (pods, benching) = bench_args::count("pods", "Pods", 200, 5);
    if !benching && !support::require::root_and_cgroup2("inventory bench smoke run") {
        return;
    }
    let tree = CgroupTree::new("bench-inventory");
    tree.mkdir("kubepods.slice/kubepods-besteffort.slice");
    let server = ApiServer::start().await;
    let config = InventoryConfig {
        pod_name_pattern: String::new(),
        ..Default::default()
    };
    let stage =
        inventory_stage::start(&server, NODE, &tree.root().join("kubepods.slice"), config).await;
    let watch = stage.watch.clone();

    // The baseline: a bare kube watcher on the same watch, noting when each pod arrives.
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let api: Api<Pod> = Api::all(server.client());
    let seen = arrived.clone();
    tokio::spawn(async move {
        let config = watcher::Config::default().fields(&format!("spec.nodeName={NODE}"));
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(pod)) = stream.next().await {
            let now = Instant::now();
            if let Some(name) = pod.metadata.name {
                seen.lock().unwrap().entry(name).or_insert(now);
            }
        }
    });
    server.wait_for_watches(2, Duration::from_secs(10)).await;
    let _stage = stage;

    let (mut delivered, mut watched, mut inventory_part, mut appeared) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..pods {
        // Cgroup first, then the pod event.
        let uid = apiserver::uuid();
        let dir = pod_dir(&uid);
        tree.mkdir(&dir);
        let id = tree.id(&dir);
        let name = format!("bench-{i}");
        let created = server.create_with_uid("pods", "bench", pod(&name, &uid));
        let rv: u64 = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let done = until_watched(&watch, id).await;
        let sent = server
            .sent_at(rv)
            .expect("the server noted when it sent the event");
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = loop {
            if let Some(t) = arrived.lock().unwrap().get(&name) {
                break *t;
            }
            assert!(
                Instant::now() < deadline,
                "the baseline watcher never saw {name}"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        };
        delivered.push(got.saturating_duration_since(sent));
        watched.push(done.saturating_duration_since(sent));
        inventory_part.push(done.saturating_duration_since(got));

        // Pod event first, then the cgroup (the kubelet's order).
        let uid = apiserver::uuid();
        let name = format!("bench-late-{i}");
        server.create_with_uid("pods", "bench", pod(&name, &uid));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !arrived.lock().unwrap().contains_key(&name) {
            assert!(
                Instant::now() < deadline,
                "the baseline watcher never saw {name}"
            );
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
        // Let the inventory take the pod in before the cgroup appears.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let late_dir = pod_dir(&uid);
        let made = Instant::now();
        tree.mkdir(&late_dir);
        let done = until_watched(&watch, tree.id(&late_dir)).await;
        appeared.push(done.saturating_duration_since(made));

        for n in [format!("bench-{i}"), name] {
            server.delete("pods", "bench", &n).unwrap();
        }
        for d in [dir, late_dir] {
            let _ = std::fs::remove_dir(tree.root().join(d));
        }
    }

    let delivered = Stats(delivered);
    let watched = Stats(watched);
    println!(
        "inventory bench: {pods} pods, each measured from the API server's send of its ADDED event"
    );
    println!(
        "{}",
        delivered.line("delivered to a bare kube watcher (baseline)")
    );
    println!("{}", watched.line("pod cgroup in the WATCHED map"));
    println!(
        "{}",
        Stats(inventory_part).line("  of which after the baseline's delivery")
    );
    println!(
        "{}",
        Stats(appeared).line("cgroup created after the pod -> WATCHED")
    );
    println!(
        "ratio watched / delivered (medians): {:.2}   target: watched p99 <= 100 ms: {}",
        watched.pct(0.5).as_secs_f64() / delivered.pct(0.5).as_secs_f64(),
        if watched.pct(0.99) <= Duration::from_millis(100) {
            "met"
        } else {
            "NOT met"
        }
    );
}
