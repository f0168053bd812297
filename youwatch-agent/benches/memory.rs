//! The agent's memory with guarded pods (`cargo xtask bench memory`; needs root).
//!
//! The agent binary runs in cluster mode against the test API server, guarding N pods (39 by
//! default) whose cgroups exist, each running a few execs, with the WAF stage following a log
//! of real ModSecurity entries. It reports, from /proc/<pid>: the peak RSS (VmHWM, start-up
//! included), the steady RSS once every pod is watched and the execs are reported, its anonymous
//! and file-backed parts, and the largest mappings (heap, the ring buffer, the binary), so a
//! figure can be traced to where it goes. `--agent PATH` measures another build (e.g. an older
//! binary) side by side; `cargo test --all-targets` runs a 3-pod smoke run.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::json;
use support::{agent::Agent, apiserver::ApiServer, cgroup_tree::CgroupTree, require};

const NODE: &str = "bench-node";

struct Args {
    pods: usize,
    agents: Vec<PathBuf>,
    benching: bool,
}

fn args() -> Args {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut out = Args {
        pods: if benching { 39 } else { 3 },
        agents: Vec::new(),
        benching,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pods" => out.pods = it.next().and_then(|v| v.parse().ok()).expect("--pods N"),
            "--agent" => out.agents.push(it.next().expect("--agent PATH").into()),
            "--bench" => {}
            other if benching => panic!("unknown argument {other}; use --pods N, --agent PATH"),
            _ => {}
        }
    }
    if out.agents.is_empty() {
        out.agents.push(env!("CARGO_BIN_EXE_youwatch-agent").into());
    }
    out
}

fn main() {
    let args = args();
    if !require::root_and_cgroup2("bench memory") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "agent memory, {} guarded pods (cluster mode, test API server, WAF log followed)",
        args.pods
    );
    for agent in &args.agents {
        let m = runtime.block_on(measure(agent, args.pods));
        println!("\n{}", agent.display());
        println!(
            "  binary {:.1} MiB; peak RSS {:.1} MiB; steady RSS {:.1} MiB (anonymous {:.1}, file {:.1})",
            mib(std::fs::metadata(agent).map(|m| m.len()).unwrap_or(0) / 1024),
            mib(m.peak_kib),
            mib(m.rss_kib),
            mib(m.anon_kib),
            mib(m.file_kib)
        );
        for (kib, name) in &m.largest {
            println!("    {:>7.1} MiB  {name}", mib(*kib));
        }
        if !args.benching {
            assert!(m.rss_kib > 0, "no RSS read");
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

struct Memory {
    peak_kib: u64,
    rss_kib: u64,
    anon_kib: u64,
    file_kib: u64,
    largest: Vec<(u64, String)>,
}

async fn measure(agent: &Path, pods: usize) -> Memory {
    let tree = CgroupTree::new("memory");
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    let mut containers = Vec::new();
    for i in 0..pods {
        let id = format!("{:064x}", 0xbe0000 + i);
        let created = server.create(
            "pods",
            "shop",
            json!({
                "metadata": {"name": format!("juice-shop-{i}"), "labels": {"app": "juice-shop"}},
                "spec": {"nodeName": NODE, "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}]},
                "status": {"qosClass": "Guaranteed", "containerStatuses": [{"name": "app",
                    "image": "docker.io/bkimminich/juice-shop:v17.1.1", "imageID": "x", "ready": true,
                    "restartCount": 0, "containerID": format!("containerd://{id}")}]},
            }),
        );
        let uid = created["metadata"]["uid"]
            .as_str()
            .unwrap()
            .replace('-', "_");
        let ctr = format!("kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{id}.scope");
        tree.mkdir(&ctr);
        containers.push(ctr);
    }
    let log = dir.path().join("audit.log");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/modsecurity-3.0.9-crs-3.3.4-audit.jsonl"),
        &log,
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "agent:\n  state_dir: {}\ntelemetry:\n  listen: \"127.0.0.1:0\"\n  alerts:\n    stdout: false\n\
             inventory:\n  cgroup:\n    kubepods: {}\nwaf:\n  audit_log: {}\n  follow:\n    start_at: beginning\n",
            dir.path().join("state").display(),
            tree.root().join("kubepods.slice").display(),
            log.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(agent);
    cmd.args(["--dry-run", "--config"])
        .arg(&config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", server.write_kubeconfig(dir.path()))
        .env("HOME", dir.path())
        .env("NODE_NAME", NODE)
        .env("YOUWATCH_LOG", "info");
    let mut agent = Agent::spawn(cmd);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while agent
        .log
        .iter()
        .filter(|l| l.contains("watching pod cgroup"))
        .count()
        < pods
    {
        assert!(
            std::time::Instant::now() < deadline,
            "pods not all watched:\n{}",
            agent.log.join("\n")
        );
        // Reads log lines for a while (the text never appears).
        agent.log_within("\n", Duration::from_millis(200));
    }
    for ctr in &containers {
        tree.sh(
            ctr,
            "for i in 1 2 3 4 5; do /bin/true; done; /bin/echo yw-memory",
        );
    }
    for _ in 0..pods {
        let _ = agent.stdout_json(Duration::from_secs(10), |v| {
            v["event"]["argv"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x == "yw-memory"))
        });
        agent.out.clear();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = agent.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let memory = Memory {
        peak_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:") + field("RssShmem:"),
        largest: largest_mappings(pid),
    };
    agent.stop();
    memory
}

/// The mappings holding the most RSS, by name (anonymous ones as "[anon]").
fn largest_mappings(pid: u32) -> Vec<(u64, String)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: Vec<(u64, String)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            name = fields.get(5).map_or("[anon]".to_owned(), |s| s.to_string());
        } else if fields.first() == Some(&"Rss:") {
            let kib: u64 = fields[1].parse().unwrap_or(0);
            match by_name.iter_mut().find(|(_, n)| *n == name) {
                Some(entry) => entry.0 += kib,
                None => by_name.push((kib, name.clone())),
            }
        }
    }
    by_name.sort_by_key(|(kib, _)| std::cmp::Reverse(*kib));
    by_name.truncate(6);
    by_name
}
