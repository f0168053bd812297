//! End to end, a web attack followed by a shell in the pod it reached is one incident: a
//! real WAF (nginx + ModSecurity + CRS, detection-only) writes its audit log, the agent
//! binary with its real eBPF programs guards juice-shop pods of the test API server, shells
//! run in the pods' cgroups. Two topologies: one agent with both halves (the ingress
//! controller and the pod on one node), and two agent processes, one following the WAF's log
//! on the ingress node and one guarding the pod on the app node, meeting through the API
//! server. In each: a shell with no request before it, one after a request to another
//! workload, one after a request older than the window — the pod deleted, nobody banned —
//! and one after a single detection-only RCE request: the pod deleted and that client
//! denied. Needs root, BPF and the WAF packages (fails under CI=true without them).

mod support;

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use support::{
    agent::Agent,
    apiserver::ApiServer,
    cgroup_tree::CgroupTree,
    correlation::{
        self, NS, OTHER, Pod, RCE, SHOP, Settings, WAF_NODE, denied, get, guarded_pod, incident,
    },
    nginx_waf::{self, Options, RealWaf},
    require,
};

const WINDOW: Duration = Duration::from_secs(4);
const WAIT: Duration = Duration::from_secs(2);
const SETTINGS: Settings = Settings {
    window: WINDOW,
    wait: WAIT,
    max_ips: 3,
};

/// The agents and where the incidents are reported.
struct Scene {
    server: ApiServer,
    tree: CgroupTree,
    waf: RealWaf,
    dir: tempfile::TempDir,
    /// The pod's node (and the WAF's, when `waf_agent` is `None`).
    app: Agent,
    waf_agent: Option<Agent>,
    pods: usize,
}

impl Scene {
    async fn start(label: &str, two_agents: bool) -> Scene {
        let server = ApiServer::start().await;
        correlation::cluster(&server);
        // Detection-only: the attack reaches the app, as a request that gets through does.
        let waf = RealWaf::start_with(Options {
            extra_modsec: "SecRuleEngine DetectionOnly",
            ..Options::default()
        });
        std::fs::File::create(waf.audit_log()).unwrap();
        let tree = correlation::cgroup_tree(label);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = server.write_kubeconfig(dir.path());
        let (app, waf_agent) = correlation::agents(
            dir.path(),
            &tree,
            &kubeconfig,
            &waf.audit_log(),
            &SETTINGS,
            two_agents,
        );
        Scene {
            server,
            tree,
            waf,
            dir,
            app,
            waf_agent,
            pods: 0,
        }
    }

    fn app_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("app")
    }

    /// An RCE from `client` to `host`, which the detection-only WAF lets through and logs.
    fn attack(&self, client: Ipv4Addr, host: &str) {
        let status = self.waf.send(client, &get(host, RCE));
        assert_eq!(status, 200, "detection-only: the request reaches the app");
    }

    /// A new guarded pod, then a shell in it (as `kubectl exec` or an RCE would start one);
    /// waits for the pod to be deleted and returns its incident alert.
    async fn shell(&mut self) -> (Pod, serde_json::Value) {
        self.pods += 1;
        let pod = guarded_pod(&self.server, &self.tree, &mut self.app, self.pods);
        let started = Instant::now();
        self.tree.sh(&pod.container, "true");
        while self.server.get("pods", NS, &pod.name).is_some() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "pod {} was not deleted",
                pod.name
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "shell -> pod {} deleted in {:?}",
            pod.name,
            started.elapsed()
        );
        let found = incident(&self.app_dir(), &pod.name, WAIT + Duration::from_secs(15)).await;
        (pod, found)
    }

    fn ingress_patches(&self) -> usize {
        self.server
            .requests()
            .iter()
            .filter(|r| r.starts_with("PATCH /apis/networking.k8s.io"))
            .count()
    }

    fn stop(self) {
        for agent in [Some(self.app), self.waf_agent].into_iter().flatten() {
            let status = agent.signal_and_wait(libc::SIGTERM);
            assert!(status.success(), "agent exit {status}");
        }
    }
}

fn candidates(incident: &serde_json::Value) -> &Vec<serde_json::Value> {
    incident["output_fields"]["incident.candidates"]
        .as_array()
        .unwrap()
}

fn client(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, n)
}

async fn scenarios(label: &str, two_agents: bool) {
    let mut scene = Scene::start(label, two_agents).await;

    // A shell with no request before it: the pod goes, nobody is banned.
    let (_, found) = scene.shell().await;
    assert!(candidates(&found).is_empty(), "{found:#}");

    // A request to another workload is not blamed.
    scene.attack(client(20), OTHER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, found) = scene.shell().await;
    assert!(candidates(&found).is_empty(), "{found:#}");

    // Nor a request older than the window (and its 2 s of clock slack).
    scene.attack(client(21), SHOP);
    tokio::time::sleep(WINDOW + Duration::from_secs(4)).await;
    let (_, found) = scene.shell().await;
    assert!(candidates(&found).is_empty(), "{found:#}");
    assert_eq!(scene.ingress_patches(), 0, "nobody banned so far");

    // One detection-only RCE request, then a shell within the window: its client is denied.
    scene.attack(client(22), SHOP);
    let (_, found) = scene.shell().await;
    let c = candidates(&found);
    assert_eq!(c.len(), 1, "{found:#}");
    assert_eq!(c[0]["ip"], "127.0.1.22");
    assert_eq!(c[0]["service"], "shop/juice-shop");
    assert_eq!(c[0]["blocked"], false);
    assert_eq!(c[0]["ban"], true);
    assert_eq!(
        c[0]["seen_by"],
        if two_agents { WAF_NODE } else { "this node" }
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while denied(&scene.server, "juice-shop") != "127.0.1.22/32" {
        assert!(Instant::now() < deadline, "the client was not denied");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(denied(&scene.server, "other"), "");
    scene.stop();
}

fn runnable(test: &str) -> bool {
    require::root_and_cgroup2(test) && nginx_waf::available(test)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agent_with_the_waf_and_the_pod() {
    if !runnable("one_agent_with_the_waf_and_the_pod") {
        return;
    }
    scenarios("corr-one", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_the_waf_on_one_node_the_pod_on_another() {
    if !runnable("two_agents_the_waf_on_one_node_the_pod_on_another") {
        return;
    }
    scenarios("corr-two", true).await;
}
