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
//! The original pipeline, fed the same execs: the agent's Falco-format alert file followed by
//! `tail -F | grep | while read | kubectl delete pod` (what the lab ran), its DELETE told apart
//! on the wire by kubectl's User-Agent; reported as a ratio to ours.
//!
//! WAF line appended → PATCH on the wire: the same agent follows a ModSecurity audit log; a
//! recorded entry the WAF blocked for a login-bypass SQL injection (942100, a ban at the first
//! entry) is appended with a fresh client address, and the tap notes the PATCH of the
//! Ingress serving the attacked host. An Ingress is patched at most once per
//! `response.deny_ip.coalesce` (500 ms by default): a ban on a quiet Ingress goes out at once,
//! bans in a burst wait for the window. The target is p99 ≤ that window + 5 ms; the bench
//! appends isolated bans (one per window), the usual case.
//!
//! Pods are created one at a time (each is deleted), entries appended one at a time after the
//! previous patch; p50, p90, p99 and max.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::{Read, Write},
    net::SocketAddr,
    os::unix::process::CommandExt,
    time::{Duration, SystemTime},
};

use serde_json::{Value, json};
use support::{
    agent::{Agent, acting_command},
    apiserver::{self, ApiServer},
    bench_args,
    cgroup_tree::CgroupTree,
    response::running_pod,
    wire::{Seen, Wire, alert_time, kubeconfig, on_the_wire_after, percentile, tap},
};

const NODE: &str = "bench-node";
const NS: &str = "shop";

fn pod(name: &str, uid: &str, ctr_id: &str) -> Value {
    let mut pod = running_pod(name, NODE, "juice-shop-bench", ctr_id);
    pod["metadata"]["uid"] = json!(uid);
    pod
}

/// The first request on the wire (after `from`) for which `wanted` holds; waits up to 20 s.
fn on_the_wire_from(seen: &Seen, from: usize, wanted: impl Fn(&Wire) -> bool) -> SystemTime {
    on_the_wire_after(seen, from, Duration::from_secs(20), wanted)
}

fn on_the_wire(seen: &Seen, wanted: impl Fn(&Wire) -> bool) -> SystemTime {
    on_the_wire_from(seen, 0, wanted)
}

/// The pipeline YouWatch replaces, as the lab ran it: Falco's alert lines followed with
/// `tail -F`, filtered with grep, a shell loop pulling the pod name out and calling
/// `kubectl delete pod`. Fed the agent's own Falco-format alert file, so both react to the
/// same exec. Killed with the returned guard.
fn original_pipeline(alerts: &std::path::Path, kubeconfig: &std::path::Path) -> ChildGuard {
    let script = format!(
        r#"tail -n0 -F {alerts} | grep --line-buffered 'Shell spawned in Juice Shop pod' | while read -r line; do
  pod=$(printf '%s' "$line" | sed -E 's/.*"k8s.pod.name":"([^"]+)".*/\1/')
  kubectl --kubeconfig {kubeconfig} delete pod -n {NS} "$pod" --wait=false >/dev/null 2>&1
done"#,
        alerts = alerts.display(),
        kubeconfig = kubeconfig.display(),
    );
    let child = std::process::Command::new("bash")
        .args(["-c", &script])
        .process_group(0)
        .spawn()
        .expect("bash for the original pipeline");
    ChildGuard(child)
}

/// Kills a process group when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // SAFETY: plain syscall on our own child's process group.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// A recorded audit-log entry the WAF blocked for SQL injection (942100), as one line.
fn blocked_sqli_entry() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/waf-corpus/attacks.audit.jsonl.gz"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| {
            e["transaction"]["response"]["http_code"] == 403
                && e["transaction"]["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["details"]["ruleId"] == "942100"))
        })
        .expect("a blocked 942100 entry in the attack corpus")
}

fn summary(name: &str, latencies: &mut [Duration], target: &str) {
    latencies.sort();
    println!(
        "{name:<28} p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}   ({target})",
        percentile(latencies, 0.5),
        percentile(latencies, 0.9),
        percentile(latencies, 0.99),
        percentile(latencies, 1.0)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (execs, benching) = bench_args::count("execs", "Shells in guarded pods", 200, 5);
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
    server.create(
        "networking.k8s.io/ingresses",
        NS,
        support::response::ingress("web", &["shop.example"], "juice-shop", &[]),
    );
    let audit_log = dir.path().join("audit.log");
    std::fs::write(&audit_log, b"").unwrap();
    let alerts = dir.path().join("alerts.json");
    let config = format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"\"\n  alerts:\n    stdout: true\n    file: {alerts}\ninventory:\n  cgroup:\n    kubepods: {kubepods}\nwaf:\n  audit_log: {log}\nresponse:\n  delete_pod:\n    max_per_workload: 1000000\n",
        state = dir.path().join("state").display(),
        kubepods = tree.root().join("kubepods.slice").display(),
        log = audit_log.display(),
        alerts = alerts.display(),
    );
    let mut cmd = acting_command(dir.path(), &config);
    cmd.env("KUBECONFIG", &kubeconfig).env("NODE_NAME", NODE);
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("pod list (re)synchronised");
    let _pipeline = original_pipeline(&alerts, &kubeconfig);

    let (mut latencies, mut original) = (Vec::new(), Vec::new());
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
        let alert = agent
            .stdout_json(Duration::from_secs(10), |v| {
                v["rule"] == "Shell spawned in Juice Shop pod"
                    && v["output_fields"]["k8s.pod.name"] == name.as_str()
            })
            .expect("the awaited stdout line");
        let exec_at = alert_time(&alert);
        let path = format!("DELETE /api/v1/namespaces/{NS}/pods/{name}");
        let ours = on_the_wire(&seen, |w| {
            w.line.starts_with(&path) && !w.agent.starts_with("kubectl")
        });
        latencies.push(ours.duration_since(exec_at).unwrap_or_default());
        let theirs = on_the_wire(&seen, |w| {
            w.line.starts_with(&path) && w.agent.starts_with("kubectl")
        });
        original.push(theirs.duration_since(exec_at).unwrap_or_default());
    }

    // WAF line appended -> PATCH on the wire, one attacker at a time.
    let entry = blocked_sqli_entry();
    let mut patches = Vec::new();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(&audit_log)
        .unwrap();
    // Isolated bans (one per coalescing window: a quiet Ingress is patched at once); a burst
    // is coalesced into one patch per window, as tests/response_ingress.rs checks.
    let bans = execs.min(50);
    for i in 0..bans {
        std::thread::sleep(Duration::from_millis(600));
        let mut e = entry.clone();
        e["transaction"]["client_ip"] = json!(format!("198.18.{}.{}", i / 200, i % 200 + 1));
        let mut line = serde_json::to_vec(&e).unwrap();
        line.push(b'\n');
        let before = seen.lock().unwrap().len();
        let appended = SystemTime::now();
        log.write_all(&line).unwrap();
        let wire = on_the_wire_from(&seen, before, |w| {
            w.line.starts_with("PATCH ") && w.line.contains("/ingresses/web")
        });
        patches.push(wire.duration_since(appended).unwrap_or_default());
    }

    let status = agent.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "agent exit {status}");
    println!(
        "response bench: {execs} shells in guarded pods, {bans} WAF bans (agent binary, real eBPF, test API server)"
    );
    summary(
        "exec -> DELETE on the wire",
        &mut latencies,
        "target p99 <= 5 ms",
    );
    summary(
        "original pipeline, same execs",
        &mut original,
        "alert file | tail -F | grep | while read | kubectl delete",
    );
    let ratio = |p: f64| {
        percentile(&original, p).as_secs_f64() / percentile(&latencies, p).as_secs_f64().max(1e-9)
    };
    println!(
        "youwatch vs the original pipeline: {:.0}x faster at p50, {:.0}x at p99   (target >= 100x at p50)",
        ratio(0.5),
        ratio(0.99)
    );
    summary(
        "WAF line -> PATCH on the wire",
        &mut patches,
        "isolated bans; target p99 <= coalesce (500 ms) + 5 ms",
    );
}
