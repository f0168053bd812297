//! Response latency (`cargo xtask bench response`; needs root).
//!
//! exec → DELETE on the wire: the agent binary, with its real eBPF programs, guards a
//! juice-shop pod of the test API server; a shell is exec'd in the pod's container cgroup;
//! a tap between the agent and the API server notes the wall-clock instant the DELETE's
//! request line crosses it. The exec's instant is the kernel's own stamp at
//! `sched_process_exec`, as the agent's alert reports it (`time`, nanoseconds). So the figure
//! is everything the agent adds: ring buffer, inventory, rules, bus, journal, replicas guard
//! (one GET of the ReplicaSet), the DELETE itself.
//!
//! Pods are created one at a time (each is deleted); p50, p90, p99 and max.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    time::{Duration, UNIX_EPOCH},
};

use serde_json::{Value, json};
use support::{
    agent::{Agent, acting_command},
    apiserver::{self, ApiServer},
    cgroup_tree::CgroupTree,
    wire::{alert_time, first_after, kubeconfig, percentile, tap},
};

const NODE: &str = "bench-node";
const NS: &str = "shop";

/// Iterations: `cargo bench` passes --bench; `cargo test --all-targets` runs this binary
/// without it, and then a short smoke run checks the bench works.
fn iterations_arg() -> (usize, bool) {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut n = if benching { 200 } else { 5 };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--execs" => {
                n = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("a number after --execs")
            }
            "--bench" => {}
            other if benching => panic!("unknown argument {other}; use --execs N"),
            _ => {}
        }
    }
    (n, benching)
}

fn pod(name: &str, uid: &str, ctr_id: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "uid": uid,
            "labels": {"app": "juice-shop", "pod-template-hash": "bench"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": "juice-shop-bench", "uid": "rs", "controller": true}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}]},
        "status": {"qosClass": "BestEffort", "containerStatuses": [{"name": "app",
            "image": "bkimminich/juice-shop:v17.1.1", "imageID": "x", "ready": true,
            "restartCount": 0, "containerID": format!("containerd://{ctr_id}")}]},
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (execs, benching) = iterations_arg();
    if !benching && !support::require::root_and_cgroup2("response bench smoke run") {
        return;
    }
    let server = ApiServer::start().await;
    let upstream: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let (tapped, seen) = tap(upstream);
    server.create(
        "apps/replicasets",
        NS,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "juice-shop-bench"},
               "spec": {"replicas": 3, "selector": {}, "template": {}},
               "status": {"replicas": 3, "availableReplicas": 3}}),
    );
    let tree = CgroupTree::new("bench-response");
    tree.mkdir("kubepods.slice/kubepods-besteffort.slice");
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = kubeconfig(dir.path(), tapped);
    let config = format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"\"\n  alerts:\n    stdout: true\ninventory:\n  cgroup:\n    kubepods: {kubepods}\nresponse:\n  delete_pod:\n    max_per_workload: 1000000\n",
        state = dir.path().join("state").display(),
        kubepods = tree.root().join("kubepods.slice").display(),
    );
    let mut cmd = acting_command(dir.path(), &config);
    cmd.env("KUBECONFIG", &kubeconfig).env("NODE_NAME", NODE);
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("pod list (re)synchronised");

    let mut latencies = Vec::new();
    for i in 0..execs {
        let uid = apiserver::uuid();
        let ctr_id = format!("{:064x}", i + 1);
        let qos = "kubepods.slice/kubepods-besteffort.slice";
        let pod_dir = format!(
            "{qos}/kubepods-besteffort-pod{}.slice",
            uid.replace('-', "_")
        );
        let ctr = format!("{pod_dir}/cri-containerd-{ctr_id}.scope");
        tree.mkdir(&ctr);
        let name = format!("juice-shop-bench-{i}");
        server.create_with_uid("pods", NS, pod(&name, &uid, &ctr_id));
        agent.wait_log_all(&["watching pod cgroup", &uid]);
        tree.sh(&ctr, "true");
        let alert = agent.stdout_json(Duration::from_secs(10), |v| {
            v["rule"] == "Shell spawned in Juice Shop pod"
                && v["output_fields"]["k8s.pod.name"] == name.as_str()
        });
        let exec_at = alert_time(&alert);
        let path = format!("DELETE /api/v1/namespaces/{NS}/pods/{name}");
        // One DELETE per pod: whenever it was seen.
        let wire = first_after(&seen, &path, UNIX_EPOCH, Duration::from_secs(10));
        latencies.push(wire.duration_since(exec_at).unwrap_or_default());
    }
    let status = agent.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "agent exit {status}");
    latencies.sort();
    println!(
        "response bench: {execs} shells in guarded pods (agent binary, real eBPF, test API server)"
    );
    println!(
        "exec -> DELETE on the wire   p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}   (target p99 <= 5 ms)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}
