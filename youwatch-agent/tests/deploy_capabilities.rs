//! The DaemonSet's capabilities, proven on the real kernel. The agent binary runs as root but
//! with exactly the capabilities `deploy/base/daemonset.yaml` adds (bounding and inheritable sets cut
//! by `setpriv`, no_new_privs as `allowPrivilegeEscalation: false` sets it), in cluster mode
//! against the test API server, guarding a pod whose container process runs as another user
//! and started before the agent. With the list it loads and attaches its program, watches the
//! pod's cgroup, reports the exec with the pod, the lineage and the user name read from /proc,
//! and reads the WAF audit log the ingress controller's user wrote. Without each capability of
//! the list, the function it is there for breaks: every capability has a reason checked here,
//! and a capability with no reason below fails the test.
//!
//! Needs root, BPF and setpriv (fails under CI=true without them).

mod support;

use std::{
    io::{Read, Write},
    os::unix::fs::{PermissionsExt, chown},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;
use support::{
    agent::Agent, apiserver::ApiServer, cgroup_tree::CgroupTree, manifests::added_capabilities,
    require,
};

const ID: &str = "cafe000000000000000000000000000000000000000000000000000000c0ffee";
/// The container's user: not root, so /proc/<pid> of its processes needs CAP_SYS_PTRACE.
const POD_UID: u32 = 65534;
/// The ingress controller's user (ingress-nginx runs as 101), owner of the WAF audit log.
const WAF_UID: u32 = 101;
const MARKER: &str = "yw-caps-marker";
/// The first start parses the kernel's BTF; a loaded CI machine is slow.
const START: Duration = Duration::from_secs(90);

/// What the agent did in one run.
#[derive(Debug, Default)]
struct Observed {
    /// It started and watches the pod's cgroup (program loaded and attached).
    watching: bool,
    exec: Option<Value>,
    /// An alert for the WAF audit log's attacks.
    waf_alert: bool,
    /// The nice value of the async workers, which read the exec ring.
    reader_nice: Option<i32>,
    /// `/readyz` once it answered 200 (within 20 s of watching), its body.
    ready: Option<String>,
    log: String,
}

impl Observed {
    fn attributed(&self) -> bool {
        self.exec
            .as_ref()
            .is_some_and(|e| e["pod"]["name"] == "juice-shop-0" && e["container"]["name"] == "app")
    }

    /// The pre-existing shell's executable, read from /proc/<pid>/exe.
    fn ancestor_exepath(&self) -> String {
        self.exec.as_ref().map_or(String::new(), |e| {
            e["ancestors"][0]["exepath"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
    }

    fn user_name(&self) -> Option<String> {
        self.exec.as_ref()?["user_name"].as_str().map(str::to_owned)
    }
}

/// Why a capability is in the list: the function that breaks without it, and how to see it.
struct Reason {
    capability: &'static str,
    function: &'static str,
    broken: fn(&Observed) -> bool,
}

const REASONS: &[Reason] = &[
    Reason {
        capability: "BPF",
        function: "load the exec sensor (bpf(2) map and program creation)",
        broken: |o| !o.watching && o.log.contains("starting the eBPF exec sensor"),
    },
    Reason {
        capability: "PERFMON",
        function: "load and attach the raw tracepoint that reads kernel memory",
        broken: |o| !o.watching && o.log.contains("starting the eBPF exec sensor"),
    },
    Reason {
        capability: "SYS_PTRACE",
        function: "lineage and user names from /proc/<pid> of other users' processes",
        broken: |o| {
            o.attributed()
                && o.ancestor_exepath().is_empty()
                && o.user_name().as_deref() != Some("nobody")
        },
    },
    Reason {
        capability: "DAC_READ_SEARCH",
        function: "read the WAF audit log (mode 0640, the controller's user)",
        broken: |o| !o.waf_alert && o.log.contains("audit.log: Permission denied"),
    },
    Reason {
        capability: "SYS_NICE",
        function: "run the async workers that read the exec ring at sensor.reader_nice (-10)",
        broken: |o| o.watching && o.reader_nice == Some(0),
    },
];

fn can_run(test: &str) -> bool {
    if !require::root_and_cgroup2(test) {
        return false;
    }
    let setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    require::runnable(test, setpriv, "needs setpriv (util-linux)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_manifest_capabilities_the_agent_does_its_job() {
    if !can_run("with_the_manifest_capabilities_the_agent_does_its_job") {
        return;
    }
    let caps = added_capabilities();
    assert!(
        !caps.iter().any(|c| c == "SYS_ADMIN"),
        "the DaemonSet must not add SYS_ADMIN"
    );
    let o = run_agent(&caps).await;
    assert!(o.watching, "the agent did not start:\n{}", o.log);
    assert!(
        o.attributed(),
        "exec not reported with its pod: {:?}\n{}",
        o.exec,
        o.log
    );
    assert_eq!(
        o.ancestor_exepath(),
        "/usr/bin/dash",
        "lineage from /proc: {:?}",
        o.exec
    );
    assert_eq!(
        o.user_name().as_deref(),
        Some("nobody"),
        "user name: {:?}",
        o.exec
    );
    assert!(o.waf_alert, "no WAF alert:\n{}", o.log);
    assert_eq!(o.reader_nice, Some(-10));
    assert_eq!(
        o.ready.as_deref(),
        Some("sensor: ok\ninventory: ok\nbus: ok\nenforce: ok: mode off\n"),
        "/readyz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_each_capability_of_the_manifest_its_function_breaks() {
    if !can_run("without_each_capability_of_the_manifest_its_function_breaks") {
        return;
    }
    let caps = added_capabilities();
    for cap in &caps {
        let Some(Reason {
            function, broken, ..
        }) = REASONS.iter().find(|r| r.capability == cap)
        else {
            panic!(
                "deploy/base/daemonset.yaml adds {cap}, but no test says what needs it: add a reason \
                 to REASONS in {}, or drop it from the manifest",
                file!()
            );
        };
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        let o = run_agent(&fewer).await;
        assert!(
            broken(&o),
            "without {cap}, {function} should break, but did not: {o:?}"
        );
        eprintln!("without {cap}: {function}: broken, as expected");
    }
}

/// Starts a guarded pod's process, then the agent with only `caps`, and records what it does.
async fn run_agent(caps: &[String]) -> Observed {
    let tree = CgroupTree::new("caps");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = ApiServer::start().await;
    let ctr = tree.guaranteed_pod(&server, "juice-shop-0", "node-caps", ID);

    // The container's shell, started before the agent (so its lineage comes from /proc),
    // waits on a fifo, then runs the exec the agent must report, and stays (the agent reads
    // its /proc entry after the exec) until it is killed.
    let fifo = dir.path().join("go");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: plain syscalls on a path we own.
    unsafe {
        assert_eq!(libc::mkfifo(c.as_ptr(), 0o666), 0);
        libc::chmod(c.as_ptr(), 0o666);
    }
    let mut shell = tree.command_in(&ctr, "/usr/bin/setpriv");
    shell
        .args([
            format!("--reuid={POD_UID}"),
            format!("--regid={POD_UID}"),
            "--clear-groups".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            format!(
                "read x < {0}; /bin/echo {MARKER}; read x < {0}",
                fifo.display()
            ),
        ])
        .stdout(std::process::Stdio::null());
    let mut shell = shell.spawn().unwrap();

    let audit_log = waf_audit_log(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"{listen}\"\ninventory:\n  cgroup:\n    kubepods: {kubepods}\n\
             waf:\n  audit_log: {log}\n  report: attacks\n  follow:\n    start_at: beginning\n    poll_interval: 200ms\n  client_ip:\n    ban_loopback: true\n",
            state = dir.path().join("state").display(),
            listen = free_port(),
            kubepods = tree.root().join("kubepods.slice").display(),
            log = audit_log.display(),
        ),
    )
    .unwrap();
    let list = caps
        .iter()
        .map(|c| format!("+{}", c.to_lowercase()))
        .collect::<Vec<_>>();
    let set = if list.is_empty() {
        "-all".to_owned()
    } else {
        format!("-all,{}", list.join(","))
    };
    let mut cmd = Command::new("setpriv");
    cmd.arg("--no-new-privs")
        .arg(format!("--inh-caps={set}"))
        .arg(format!("--bounding-set={set}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_youwatch-agent"))
        .args(["--dry-run", "--config"])
        .arg(&config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", server.write_kubeconfig(dir.path()))
        .env("HOME", dir.path())
        .env("NODE_NAME", "node-caps")
        .env("YOUWATCH_LOG", "info");
    let mut agent = Agent::spawn(cmd);

    let mut o = Observed {
        watching: wait_watching(&mut agent),
        ..Observed::default()
    };
    if o.watching {
        o.reader_nice = reader_nice(agent.child.id());
        o.ready = ready(&mut agent);
        std::fs::write(&fifo, "go\n").unwrap();
        o.exec = agent.stdout_json(Duration::from_secs(20), |v| {
            v["event"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == MARKER))
        });
        o.waf_alert = agent
            .stdout_json(Duration::from_secs(10), |v| v["rule"] == "WAF attack")
            .is_some();
        o.log = agent.stop().join("\n");
    } else {
        o.log = agent.log.join("\n");
    }
    let _ = shell.kill();
    let _ = shell.wait();
    o
}

/// A loopback address with a port free right now.
fn free_port() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The body of `/readyz` once it answers 200.
fn ready(agent: &mut Agent) -> Option<String> {
    let line = agent.log_within("HTTP listener started", Duration::from_secs(20))?;
    let addr: Value = serde_json::from_str(&line).ok()?;
    let addr = addr["addr"].as_str()?.to_owned();
    for _ in 0..100 {
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        write!(
            s,
            "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut response = String::new();
        s.read_to_string(&mut response).ok()?;
        if response.starts_with("HTTP/1.1 200") {
            return response
                .split_once("\r\n\r\n")
                .map(|(_, body)| body.to_owned());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// Waits until the agent watches the pod's cgroup; false if it exits first.
fn wait_watching(agent: &mut Agent) -> bool {
    let deadline = std::time::Instant::now() + START;
    while std::time::Instant::now() < deadline {
        if agent
            .log_within("watching pod cgroup", Duration::from_millis(200))
            .is_some()
        {
            return true;
        }
        if agent.exit_within(Duration::ZERO).is_some() {
            return false;
        }
    }
    false
}

/// Real ModSecurity v3 + CRS entries (attacks among them), in a file owned by the controller's
/// user with ModSecurity v3's default mode 0640, in a directory it owns.
fn waf_audit_log(dir: &Path) -> PathBuf {
    let waf_dir = dir.join("modsecurity");
    std::fs::create_dir(&waf_dir).unwrap();
    let log = waf_dir.join("audit.log");
    let data = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/modsecurity-3.0.9-crs-3.3.4-audit.jsonl");
    std::fs::copy(data, &log).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o640)).unwrap();
    chown(&log, Some(WAF_UID), Some(WAF_UID)).unwrap();
    chown(&waf_dir, Some(WAF_UID), Some(WAF_UID)).unwrap();
    log
}

/// The nice value of the agent's async workers (`yw-worker`), which read the exec ring.
fn reader_nice(pid: u32) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != youwatch_agent::run::WORKER_THREAD {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised comm: state is field 3, nice field 19.
        let rest = &stat[stat.rfind(')')? + 2..];
        return rest.split_whitespace().nth(16)?.parse().ok();
    }
    None
}
