//! The newcomer demo (`cargo xtask demo`): on a bare machine, as root, everything YouWatch
//! does in one screen. A juice-shop pod in a test API server, its cgroups laid out as the
//! kubelet would, its Ingress behind a real nginx + ModSecurity + CRS; the agent binary with
//! its real eBPF programs guards it. A shell in the pod gets the pod deleted; web attacks get
//! their sources denied on the Ingress; benign users are left alone. Each step prints what
//! was detected, what was done, and how long it took.
//!
//! It runs in the test suite too (asserting every outcome), so it cannot rot.

mod support;

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use support::{
    agent::{Agent, acting_command},
    apiserver::ApiServer,
    cgroup_tree::CgroupTree,
    nginx_waf, require,
    response::{ingress, running_pod},
    waf_corpus::{self, BLOCKING_HOST, Client},
};

const NODE: &str = "demo-node";
const NS: &str = "shop";
const POD: &str = "juice-shop-7d9f8b6c5-x2x4z";
const APP_ID: &str = "a11ce00000000000000000000000000000000000000000000000000000000a11";

/// Prints one line of the demo with the time since it started.
struct Screen {
    started: Instant,
    /// Wall clock at `started`: the API server notes arrivals as `Instant`s, alerts carry
    /// wall-clock times.
    wall: SystemTime,
}

impl Screen {
    fn say(&self, what: &str) {
        println!("[{:>6.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn step(&self, title: &str) {
        println!("\n── {title}");
    }

    fn wall_of(&self, at: Instant) -> SystemTime {
        self.wall + at.duration_since(self.started)
    }
}

fn alert_time(alert: &Value) -> SystemTime {
    let ts: jiff::Timestamp = alert["time"].as_str().unwrap().parse().unwrap();
    UNIX_EPOCH + Duration::from_nanos(ts.as_nanosecond() as u64)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The first request served whose line starts with `prefix`, when it arrived.
fn served(server: &ApiServer, prefix: &str) -> Option<Instant> {
    server
        .timed_requests()
        .into_iter()
        .find(|(_, r)| r.starts_with(prefix))
        .map(|(t, _)| t)
}

async fn until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn denylist(server: &ApiServer) -> String {
    server
        .get("networking.k8s.io/ingresses", NS, "web")
        .unwrap()["metadata"]["annotations"]["nginx.ingress.kubernetes.io/denylist-source-range"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn cluster(server: &ApiServer) -> String {
    let pod = server.create(
        "pods",
        NS,
        running_pod(POD, NODE, "juice-shop-7d9f8b6c5", APP_ID),
    );
    server.create(
        "apps/replicasets",
        NS,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "juice-shop-7d9f8b6c5"},
               "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "juice-shop"}}, "template": {}},
               "status": {"replicas": 1, "availableReplicas": 1}}),
    );
    server.create(
        "networking.k8s.io/ingresses",
        NS,
        ingress("web", &[BLOCKING_HOST], "juice-shop", &[]),
    );
    pod["metadata"]["uid"].as_str().unwrap().to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test` runs this file like any test (harness = false): it must not skip in CI.
    if !require::root_and_cgroup2("demo") || !nginx_waf::available("demo") {
        return;
    }
    let pace = if std::env::args().any(|a| a == "--demo") {
        Duration::from_millis(1200)
    } else {
        Duration::ZERO
    };
    let screen = Screen {
        started: Instant::now(),
        wall: SystemTime::now(),
    };
    println!("YouWatch demo: a Juice Shop pod guarded by the agent, a real WAF in front of it\n");

    // The cluster, the node's cgroups, the WAF.
    let server = ApiServer::start().await;
    let uid = cluster(&server);
    screen.say(&format!(
        "test API server {}: Deployment juice-shop (pod {POD} on {NODE}), Ingress {NS}/web for {BLOCKING_HOST}",
        server.url()
    ));
    let tree = CgroupTree::new("demo");
    let pod_cgroup = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        uid.replace('-', "_")
    );
    let container = format!("{pod_cgroup}/cri-containerd-{APP_ID}.scope");
    tree.mkdir(&container);
    screen.say(&format!("pod cgroups under {}", tree.root().display()));
    let waf = waf_corpus::start_waf();
    screen.say(&format!(
        "nginx + ModSecurity + OWASP CRS on 127.0.0.1:{}, JSON audit log {}",
        waf.port,
        waf.audit_log().display()
    ));

    // The agent.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"\"\n  alerts:\n    stdout: true\n\
         inventory:\n  cgroup:\n    kubepods: {kubepods}\n\
         waf:\n  audit_log: {log}\n  follow:\n    start_at: beginning\n  client_ip:\n    ban_loopback: true\n\
         response:\n  deny_ip:\n    allow_loopback: true\n",
        state = dir.path().join("state").display(),
        kubepods = tree.root().join("kubepods.slice").display(),
        log = waf.audit_log().display(),
    );
    let mut cmd = acting_command(dir.path(), &config);
    cmd.env("KUBECONFIG", server.write_kubeconfig(dir.path()))
        .env("NODE_NAME", NODE);
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("watching pod cgroup");
    screen
        .say("youwatch-agent started: eBPF exec sensor attached, pod guarded, audit log followed");

    // 1. A shell in the pod.
    screen.step("1. An attacker gets a shell in the juice-shop pod");
    tokio::time::sleep(pace).await;
    screen.say("exec /bin/sh -c 'id' in the pod's app container (like kubectl exec)");
    tree.sh(&container, "id >/dev/null");
    let alert = agent
        .stdout_json(Duration::from_secs(20), |v| {
            v["rule"] == "Shell spawned in Juice Shop pod"
        })
        .expect("the shell detected");
    screen.say(&format!(
        "DETECTED {} \"{}\": {}",
        alert["priority"].as_str().unwrap(),
        alert["rule"].as_str().unwrap(),
        alert["output_fields"]["proc.cmdline"]
    ));
    let deleted = until("the pod deleted", || {
        served(
            &server,
            &format!("DELETE /api/v1/namespaces/{NS}/pods/{POD}"),
        )
    })
    .await;
    let took = screen
        .wall_of(deleted)
        .duration_since(alert_time(&alert))
        .unwrap_or_default();
    until("the pod gone", || {
        server.get("pods", NS, POD).is_none().then_some(())
    })
    .await;
    screen.say(&format!(
        "DONE     pod {NS}/{POD} deleted (uid precondition: a replacement is never touched); exec -> DELETE {}",
        ms(took)
    ));
    screen.say("         its ReplicaSet recreates it from the clean image; a Warning Event PodDeleted says why");

    // 2. Web attacks and benign users through the WAF.
    screen.step("2. Web attacks through the WAF, among benign shoppers");
    tokio::time::sleep(pace).await;
    let attackers: Vec<Client> = waf_corpus::attack_clients()
        .into_iter()
        .filter(|c| c.host == BLOCKING_HOST)
        .take(3)
        .collect();
    let benign: Vec<Client> = waf_corpus::benign_clients().into_iter().take(3).collect();
    for c in &attackers {
        screen.say(&format!("attacker {}: {}", c.ip, c.why));
    }
    for c in &benign {
        screen.say(&format!("shopper  {}: {}", c.ip, c.why));
    }
    let sent_at = Instant::now();
    let everyone: Vec<Client> = attackers
        .iter()
        .chain(&benign)
        .map(|c| Client {
            ip: c.ip,
            attacker: c.attacker,
            expect: c.expect,
            why: c.why.clone(),
            host: c.host,
            requests: c.requests.clone(),
        })
        .collect();
    let (sent, _) = waf_corpus::record(&waf, &everyone);
    let blocked = sent.iter().filter(|s| s.status == 403).count();
    screen.say(&format!(
        "{} requests sent, {blocked} blocked by the WAF (403)",
        sent.len()
    ));
    let want: Vec<Ipv4Addr> = attackers.iter().map(|c| c.ip).collect();
    until("the attackers denied", || {
        let list = denylist(&server);
        want.iter()
            .all(|ip| list.contains(&format!("{ip}/32")))
            .then_some(())
    })
    .await;
    let patched = served(
        &server,
        &format!("PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/web"),
    )
    .expect("the Ingress patched");
    for ip in &want {
        let ban = agent
            .stdout_json(Duration::from_secs(5), |v| {
                v["rule"] == "WAF attacker to ban"
                    && v["output_fields"]["waf.client_ip"] == ip.to_string()
            })
            .expect("the ban decision");
        screen.say(&format!(
            "DETECTED {} (rule {}, {})",
            ban["output_fields"]["waf.client_ip"].as_str().unwrap(),
            ban["output_fields"]["waf.rule_id"],
            ban["output_fields"]["waf.classes"].as_str().unwrap()
        ));
    }
    screen.say(&format!(
        "DONE     denied on Ingress {NS}/web: nginx.ingress.kubernetes.io/denylist-source-range = \"{}\"",
        denylist(&server)
    ));
    screen.say(&format!(
        "         first request sent -> Ingress PATCH {}; shoppers untouched",
        ms(patched.duration_since(sent_at))
    ));
    let list = denylist(&server);
    for c in &benign {
        assert!(!list.contains(&c.ip.to_string()), "benign {} denied", c.ip);
    }

    // What the cluster shows.
    screen.step("3. What the cluster shows (kubectl get events, bans)");
    let events = server
        .timed_requests()
        .iter()
        .filter(|(_, r)| r.starts_with("POST /apis/events.k8s.io"))
        .count();
    screen.say(&format!(
        "{events} Events written (PodDeleted, SourceDenied), one per action"
    ));
    let status = agent.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "agent exit {status}");
    screen.say("agent stopped (SIGTERM): queues drained, cursor saved, bans stay in the cluster and expire on time");
    println!(
        "\nTry it yourself: `cargo xtask run` (dry-run, no cluster); the README says what each setting does."
    );
}
