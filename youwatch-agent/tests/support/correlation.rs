//! A cluster for the correlation's end-to-end tests and bench: in the test API server, two
//! Services with their Ingresses (shop.example → juice-shop, other.example → other) and
//! juice-shop pods of a Deployment on the app node, each with its cgroups as the kubelet's
//! systemd driver lays them out; the agent binary as the WAF's node, the pod's node, or both.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use super::{
    agent::{Agent, acting_command},
    apiserver::ApiServer,
    cgroup_tree::CgroupTree,
};

pub const NS: &str = "shop";
pub const RS: &str = "juice-shop-7d9f8b6c5";
pub const APP_NODE: &str = "node-app";
pub const WAF_NODE: &str = "node-ingress";
pub const SHOP: &str = "shop.example";
pub const OTHER: &str = "other.example";
pub const INGRESSES: &str = "networking.k8s.io/ingresses";
const QOS: &str = "kubepods.slice/kubepods-besteffort.slice";

/// The Services, Ingresses and the Deployment's ReplicaSet.
pub fn cluster(server: &ApiServer) {
    for (name, host) in [("juice-shop", SHOP), ("other", OTHER)] {
        server.create(
            "services",
            NS,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": name}, "ports": [{"port": 80}]}}),
        );
        server.create(
            INGRESSES,
            NS,
            super::response::ingress(name, &[host], name, &[]),
        );
    }
    server.create(
        "apps/replicasets",
        NS,
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": RS},
               "spec": {"replicas": 1, "selector": {}, "template": {}},
               "status": {"replicas": 1, "availableReplicas": 1}}),
    );
}

/// Which halves an agent runs.
pub struct Role<'a> {
    pub node: &'a str,
    /// The WAF's audit log to follow (the ingress controller is on this node).
    pub audit_log: Option<&'a Path>,
}

/// The correlation settings a test or bench chooses.
pub struct Settings {
    pub window: Duration,
    pub wait: Duration,
    /// Clients an incident bans at most.
    pub max_ips: usize,
}

/// The agent's configuration: loopback attackers bannable (the WAF and its clients are on
/// 127.0.0.0/8), a WAF threshold no single request reaches (so a ban is the incident's: the
/// attacker's score alone stays below the threshold), no coalescing delay, the correlation
/// as `settings` say, alerts in `dir`.
pub fn config(dir: &Path, tree: &CgroupTree, role: &Role, settings: &Settings) -> String {
    let waf = role.audit_log.map_or_else(String::new, |log| {
        format!(
            "waf:\n  audit_log: {}\n  client_ip:\n    ban_loopback: true\n  scoring:\n    threshold: 1000\n",
            log.display()
        )
    });
    format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"\"\n  alerts:\n    stdout: false\n    file: {alerts}\ninventory:\n  cgroup:\n    kubepods: {kubepods}\n{waf}response:\n  deny_ip:\n    allow_loopback: true\n    coalesce: 0s\n  delete_pod:\n    max_per_workload: 1000000\ncorrelation:\n  window: {window}\n  wait: {wait}\n  ban:\n    max_ips: {max_ips}\n  cross_node:\n    publish_interval: 100ms\n",
        state = dir.join("state").display(),
        alerts = alerts_file(dir).display(),
        kubepods = tree.root().join("kubepods.slice").display(),
        window = humantime::format_duration(settings.window),
        wait = humantime::format_duration(settings.wait),
        max_ips = settings.max_ips,
    )
}

pub fn alerts_file(dir: &Path) -> PathBuf {
    dir.join("alerts.json")
}

/// Starts the agent of `role` against `kubeconfig`, acting for real.
pub fn spawn(dir: &Path, kubeconfig: &Path, node: &str, config: &str) -> Agent {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = acting_command(dir, config);
    cmd.env("KUBECONFIG", kubeconfig).env("NODE_NAME", node);
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("agent mode: cluster");
    agent.wait_log("pod list (re)synchronised");
    agent
}

/// A cgroup tree named `label` with the QoS slice the pods' cgroups go under.
pub fn cgroup_tree(label: &str) -> CgroupTree {
    let tree = CgroupTree::new(label);
    tree.mkdir(QOS);
    tree
}

/// Starts the agents, each in its subdirectory of `dir` (`app`, `waf`): with `two_agents`,
/// one on the WAF's node following `audit_log` (started first: the WAF's log is followed
/// before the pods are listed) and one on the app node; else one on the app node with both
/// halves. The app node's agent, and the WAF node's if there is one.
pub fn agents(
    dir: &Path,
    tree: &CgroupTree,
    kubeconfig: &Path,
    audit_log: &Path,
    settings: &Settings,
    two_agents: bool,
) -> (Agent, Option<Agent>) {
    let start = |sub: &str, role: Role| {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        let config = config(&d, tree, &role, settings);
        spawn(&d, kubeconfig, role.node, &config)
    };
    if two_agents {
        let waf = start(
            "waf",
            Role {
                node: WAF_NODE,
                audit_log: Some(audit_log),
            },
        );
        let app = start(
            "app",
            Role {
                node: APP_NODE,
                audit_log: None,
            },
        );
        (app, Some(waf))
    } else {
        let app = start(
            "app",
            Role {
                node: APP_NODE,
                audit_log: Some(audit_log),
            },
        );
        (app, None)
    }
}

/// A guarded juice-shop pod.
pub struct Pod {
    pub name: String,
    pub uid: String,
    /// Its app container's cgroup, relative to the tree's root.
    pub container: String,
}

/// Creates juice-shop pod number `n` on the app node and its cgroups, and waits until `agent`
/// (the pod's node) guards it.
pub fn guarded_pod(server: &ApiServer, tree: &CgroupTree, agent: &mut Agent, n: usize) -> Pod {
    let name = format!("{RS}-p{n}");
    let uid = super::apiserver::uuid();
    let ctr_id = format!("{:064x}", 0xc0de_0000 + n);
    let mut pod = super::response::running_pod(&name, APP_NODE, RS, &ctr_id);
    pod["metadata"]["uid"] = json!(uid);
    server.create_with_uid("pods", NS, pod);
    let container = format!(
        "{QOS}/kubepods-besteffort-pod{}.slice/cri-containerd-{ctr_id}.scope",
        uid.replace('-', "_")
    );
    tree.mkdir(&container);
    agent.wait_log_all(&["watching pod cgroup", &uid]);
    Pod {
        name,
        uid,
        container,
    }
}

/// The agent's alert lines so far.
pub fn alerts(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(alerts_file(dir))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (up to `timeout`) for the incident alert of `pod` in the alerts of the agent in
/// `dir`.
pub async fn incident(dir: &Path, pod: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(a) = alerts(dir)
            .into_iter()
            .find(|a| a["rule"] == "YouWatch incident" && a["output_fields"]["k8s.pod.name"] == pod)
        {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no incident for pod {pod} within {timeout:?}; alerts: {:#?}",
            alerts(dir)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The denylist annotation of Ingress `name`.
pub fn denied(server: &ApiServer, name: &str) -> String {
    server.get(INGRESSES, NS, name).unwrap()["metadata"]["annotations"]
        ["nginx.ingress.kubernetes.io/denylist-source-range"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The raw request a client sends for `target` on `host`.
pub fn get(host: &str, target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0\r\nAccept: text/html\r\nConnection: close\r\n\r\n"
    )
}

/// A remote command execution through a ping form: CRS 932160 (Unix shell code, a rule
/// that rarely misfires) and 930120 (OS file access).
pub const RCE: &str = "/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd";
