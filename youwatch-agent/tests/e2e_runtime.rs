//! End to end, the original Falco auto-quarantine: the agent binary with its real eBPF
//! programs, a juice-shop Deployment's pod on this node in the test API server, the pod's
//! cgroup tree as the kubelet's systemd driver lays it out. A shell in the pod — in its app
//! container (an RCE), through a `kubectl exec`-style process, or in a `kubectl debug`
//! ephemeral container — gets the pod deleted with its uid precondition, one Warning Event
//! and the Falco-format alerts. With in-kernel enforcement and the pod's opt-in label, the
//! shell never runs at all, and the pod is deleted all the same. Needs root and BPF (fails
//! under CI=true without them).

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use serde_json::{Value, json};
use support::{
    agent::{Agent, acting_command},
    apiserver::ApiServer,
    cgroup_tree::CgroupTree,
    require,
    response::running_pod,
};

const NODE: &str = "node-e2e";
const NS: &str = "shop";
const POD: &str = "juice-shop-7d9f8b6c5-x2x4z";
const APP_ID: &str = "a11ce00000000000000000000000000000000000000000000000000000000a11";
const DEBUG_ID: &str = "deb0900000000000000000000000000000000000000000000000000000000deb";

struct Scene {
    server: ApiServer,
    tree: CgroupTree,
    dir: tempfile::TempDir,
    agent: Agent,
    pod_cgroup: String,
    uid: String,
}

impl Scene {
    /// The Deployment's ReplicaSet and pod in the API server, the pod's cgroups, and the agent
    /// guarding it.
    async fn start(label: &str) -> Scene {
        Self::start_with(label, "", "").await
    }

    /// As [`start`](Self::start), with the HTTP listener on `listen` ("" for none) and
    /// `extra` appended to the agent's configuration.
    async fn start_with(label: &str, listen: &str, extra: &str) -> Scene {
        let server = ApiServer::start().await;
        server.create(
            "apps/replicasets",
            NS,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                   "metadata": {"name": "juice-shop-7d9f8b6c5", "labels": {"app": "juice-shop"}},
                   "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "juice-shop"}}, "template": {}},
                   "status": {"replicas": 1, "availableReplicas": 1}}),
        );
        let pod = server.create(
            "pods",
            NS,
            running_pod(POD, NODE, "juice-shop-7d9f8b6c5", APP_ID),
        );
        let uid = pod["metadata"]["uid"].as_str().unwrap().to_owned();
        let tree = CgroupTree::new(label);
        let u = uid.replace('-', "_");
        let pod_cgroup =
            format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice");
        tree.mkdir(&format!("{pod_cgroup}/cri-containerd-{APP_ID}.scope"));
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"{listen}\"\n  alerts:\n    stdout: false\n    file: {alerts}\ninventory:\n  cgroup:\n    kubepods: {kubepods}\n{extra}",
            state = dir.path().join("state").display(),
            alerts = dir.path().join("alerts.json").display(),
            kubepods = tree.root().join("kubepods.slice").display(),
        );
        let mut cmd = acting_command(dir.path(), &config);
        cmd.env("KUBECONFIG", server.write_kubeconfig(dir.path()))
            .env("NODE_NAME", NODE);
        let mut agent = Agent::spawn(cmd);
        agent.wait_log("agent mode: cluster");
        agent.wait_log("watching pod cgroup");
        Scene {
            server,
            tree,
            dir,
            agent,
            pod_cgroup,
            uid,
        }
    }

    /// Waits until the pod is gone from the API server; the time it took.
    async fn pod_deleted(&self, since: Instant) -> Duration {
        let deadline = since + Duration::from_secs(20);
        while self.server.get("pods", NS, POD).is_some() {
            assert!(
                Instant::now() < deadline,
                "the pod was not deleted; requests: {:?}",
                self.server.requests()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        since.elapsed()
    }

    fn alerts(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("alerts.json"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("alert lines are JSON"))
            .collect()
    }

    /// Checks what a deletion leaves behind: one DELETE, two Warning Events on the pod (the
    /// deletion, the incident), the shell alert and the response's alert.
    async fn assert_deleted_and_reported(self) {
        self.assert_deleted_after("Shell spawned in Juice Shop pod")
            .await
    }

    /// As [`assert_deleted_and_reported`](Self::assert_deleted_and_reported), for the alert of
    /// `rule`.
    async fn assert_deleted_after(self, rule: &str) {
        let deletes: Vec<String> = self
            .server
            .requests()
            .into_iter()
            .filter(|r| r.starts_with("DELETE"))
            .collect();
        assert_eq!(deletes.len(), 1, "{deletes:?}");
        assert!(deletes[0].contains(&format!("/namespaces/{NS}/pods/{POD}")));
        // The deletion, and the incident (no web request before the shell here), each
        // written in the background.
        let api: Api<Event> = Api::namespaced(self.server.client(), NS);
        let params = ListParams::default().fields(&format!("regarding.name={POD}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let events = loop {
            let events = api.list(&params).await.unwrap().items;
            if events.len() >= 2 || Instant::now() > deadline {
                break events;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
        assert_eq!(reasons.len(), 2, "{events:?}");
        assert!(
            reasons.contains(&"PodDeleted") && reasons.contains(&"Incident"),
            "{reasons:?}"
        );
        for e in &events {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert_eq!(
                e.regarding.as_ref().unwrap().uid.as_deref(),
                Some(self.uid.as_str()),
                "{e:?}"
            );
        }
        // The alert writer is asynchronous: wait for both lines.
        let deadline = Instant::now() + Duration::from_secs(10);
        let alerts = loop {
            let alerts = self.alerts();
            let done = alerts.iter().any(|a| a["rule"] == "YouWatch response");
            if done || Instant::now() > deadline {
                break alerts;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let shell = alerts
            .iter()
            .find(|a| a["rule"] == rule)
            .unwrap_or_else(|| panic!("no shell alert in {alerts:?}"));
        assert_eq!(shell["priority"], "Critical");
        assert_eq!(shell["output_fields"]["k8s.pod.name"], POD);
        let response: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["rule"] == "YouWatch response")
            .collect();
        assert_eq!(response.len(), 1, "{alerts:?}");
        assert_eq!(response[0]["output_fields"]["response.outcome"], "applied");
        let status = self.agent.signal_and_wait(libc::SIGTERM);
        assert!(status.success(), "agent exit {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_in_the_app_container_deletes_the_pod() {
    if !require::root_and_cgroup2("a_shell_in_the_app_container_deletes_the_pod") {
        return;
    }
    let scene = Scene::start("e2e-rce").await;
    // The app (python here) spawns a shell: what a remote code execution looks like.
    let ctr = format!("{}/cri-containerd-{APP_ID}.scope", scene.pod_cgroup);
    let started = Instant::now();
    let status = scene
        .tree
        .command_in(&ctr, "/usr/bin/python3")
        .args([
            "-c",
            "import subprocess; subprocess.run(['/bin/sh', '-c', 'id >/dev/null'])",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let took = scene.pod_deleted(started).await;
    eprintln!("app container: exec -> pod deleted in {took:?}");
    scene.assert_deleted_and_reported().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubectl_exec_shell_deletes_the_pod() {
    if !require::root_and_cgroup2("a_kubectl_exec_shell_deletes_the_pod") {
        return;
    }
    let scene = Scene::start("e2e-exec").await;
    // `kubectl exec`: the runtime starts the shell from outside, straight into the container.
    let ctr = format!("{}/cri-containerd-{APP_ID}.scope", scene.pod_cgroup);
    let started = Instant::now();
    scene.tree.sh(&ctr, "true");
    let took = scene.pod_deleted(started).await;
    eprintln!("kubectl exec: exec -> pod deleted in {took:?}");
    scene.assert_deleted_and_reported().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_in_a_kubectl_debug_container_deletes_the_pod() {
    if !require::root_and_cgroup2("a_shell_in_a_kubectl_debug_container_deletes_the_pod") {
        return;
    }
    let scene = Scene::start("e2e-debug").await;
    // `kubectl debug`: the ephemeral container is added to the pod's spec, the kubelet starts
    // it in a new container cgroup under the pod's, and posts its status later.
    scene.server.modify("pods", NS, POD, |p| {
        p["spec"]["ephemeralContainers"] = json!([{"name": "debugger-x7k2p",
            "image": "busybox:1.36", "stdin": true, "tty": true}]);
    });
    let ctr = format!("{}/cri-containerd-{DEBUG_ID}.scope", scene.pod_cgroup);
    scene.tree.mkdir(&ctr);
    let started = Instant::now();
    scene.tree.sh(&ctr, "true");
    scene.server.modify("pods", NS, POD, |p| {
        p["status"]["ephemeralContainerStatuses"] = json!([{"name": "debugger-x7k2p",
            "image": "busybox:1.36", "imageID": "sha256:2", "ready": false, "restartCount": 0,
            "containerID": format!("containerd://{DEBUG_ID}")}]);
    });
    let took = scene.pod_deleted(started).await;
    eprintln!("kubectl debug: exec -> pod deleted in {took:?}");
    scene.assert_deleted_and_reported().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_in_a_pod_that_opts_in_to_enforcement_never_runs_and_the_pod_is_deleted() {
    if !require::root_and_cgroup2(
        "a_shell_in_a_pod_that_opts_in_to_enforcement_never_runs_and_the_pod_is_deleted",
    ) {
        return;
    }
    let mut scene = Scene::start_with("e2e-enforce", "", "enforce:\n  mode: enforce\n").await;
    // Guarded, not enforced, until it opts in with its label.
    scene.server.modify("pods", NS, POD, |p| {
        p["metadata"]["labels"]["youwatch.dev/enforce"] = json!("true");
    });
    scene.agent.wait_log("enforcing in cgroup subtree");
    let ctr = format!("{}/cri-containerd-{APP_ID}.scope", scene.pod_cgroup);
    let created = scene.dir.path().join("created-by-the-shell");
    let touch = format!("touch {}", created.display());
    let started = Instant::now();
    let ran = scene
        .tree
        .command_in(&ctr, "/bin/sh")
        .args(["-c", &touch])
        .output();
    // SIGKILL before its first instruction, or EPERM where the kernel allows the BPF LSM.
    match ran {
        Ok(out) => assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(libc::SIGKILL)
        ),
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
    }
    assert!(!created.exists(), "the shell ran");
    let took = scene.pod_deleted(started).await;
    eprintln!("enforced: exec stopped, pod deleted in {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let prevented = loop {
        let found = scene
            .alerts()
            .into_iter()
            .find(|a| a["rule"] == "Forbidden exec prevented in guarded pod");
        if let Some(alert) = found {
            break alert;
        }
        assert!(
            Instant::now() < deadline,
            "no prevention alert: {:?}",
            scene.alerts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(prevented["output_fields"]["enforce.outcome"], "prevented");
    assert_eq!(prevented["output_fields"]["container.name"], "app");
    scene
        .assert_deleted_after("Forbidden exec prevented in guarded pod")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_falco_alert_posted_to_the_webhook_deletes_the_pod() {
    if !require::root_and_cgroup2("a_falco_alert_posted_to_the_webhook_deletes_the_pod") {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secrets = tempfile::tempdir().unwrap();
    let token = secrets.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let extra = format!(
        "falco:\n  webhook:\n    enabled: true\n    token_file: {}\n",
        token.display()
    );
    let listen = format!("127.0.0.1:{port}");
    // The listener starts before the pod is watched (Scene::start waits for that).
    let scene = Scene::start_with("e2e-falco", &listen, &extra).await;
    // What Falco's http_output sends (json_output: true), with the token in the URL's
    // credentials as libcurl sends them.
    let alert = format!(
        r#"{{"hostname":"node-e2e","output":"12:00:00.000000000: Critical Shell in juice-shop (user=root)","output_fields":{{"k8s.ns.name":"{NS}","k8s.pod.name":"{POD}","container.id":"{}","proc.cmdline":"sh -i"}},"priority":"Critical","rule":"Falco shell in juice-shop","source":"syscall","tags":["shell"],"time":"2026-12-01T12:00:00.000000000Z"}}"#,
        &APP_ID[..12]
    );
    let started = Instant::now();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let basic = base64_basic("falco", "s3cret");
        write!(
            s,
            "POST /falco HTTP/1.1\r\nHost: agent\r\nAuthorization: Basic {basic}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{alert}",
            alert.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let took = scene.pod_deleted(started).await;
    eprintln!("Falco webhook: alert -> pod deleted in {took:?}");
    scene
        .assert_deleted_after("Falco shell in juice-shop")
        .await;
}

/// `user:password` as HTTP Basic credentials.
fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}
