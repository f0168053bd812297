//! The agent's memory with guarded pods (`cargo xtask bench memory`; needs root).
//!
//! The agent binary runs in cluster mode against the test API server, guarding N pods (39 by
//! default) whose cgroups exist, each running a few execs, with the WAF stage following a log
//! of real ModSecurity entries. It reports, from /proc/<pid>: the peak RSS (VmHWM, start-up
//! included), the steady RSS once every pod is watched and the execs are reported, its anonymous
//! and file-backed parts, and the largest mappings (heap, the ring buffer, the binary), so a
//! figure can be traced to where it goes. Then two bursts, each with the peak RSS reset before
//! it (`/proc/<pid>/clear_refs`): 10,000 execs in a guarded pod as fast as the machine runs
//! them, and 1,000,000 ModSecurity entries appended to the followed log; for each, the agent's
//! CPU (user + system, every thread), its peak RSS, and what was lost. The agent runs as the
//! detect-only deployment does (`response.dry_run: true`: decisions planned, nothing printed
//! per exec). `--agent PATH` measures another build (e.g. an older binary) side by side;
//! `cargo test --all-targets` runs a 3-pod smoke run with small bursts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use support::{
    agent::{Agent, http_get, metric},
    apiserver::ApiServer,
    bench_args,
    cgroup_tree::CgroupTree,
    exec_load::ExecServers,
    require,
};

const NODE: &str = "bench-node";

struct Args {
    pods: usize,
    agents: Vec<PathBuf>,
    benching: bool,
    /// Execs in the exec burst.
    execs: u64,
    /// Entries in the WAF log burst.
    entries: u64,
}

#[derive(clap::Parser, Default)]
struct Cli {
    /// Guarded pods (default 39; 3 in the smoke run).
    #[arg(long)]
    pods: Option<usize>,
    /// Execs in the exec burst (default 10000; 200 in the smoke run).
    #[arg(long)]
    execs: Option<u64>,
    /// Entries in the WAF log burst (default 1000000; 2000 in the smoke run).
    #[arg(long)]
    entries: Option<u64>,
    /// An agent binary to measure (repeatable; default: this build's).
    #[arg(long = "agent", value_name = "PATH")]
    agents: Vec<PathBuf>,
    /// Set by `cargo bench`.
    #[arg(long)]
    bench: bool,
}

fn args() -> Args {
    let (cli, benching) = bench_args::parse::<Cli>();
    let mut agents = cli.agents;
    if agents.is_empty() {
        agents.push(env!("CARGO_BIN_EXE_youwatch-agent").into());
    }
    Args {
        pods: bench_args::or(cli.pods, benching, 39, 3),
        agents,
        benching,
        execs: bench_args::or(cli.execs, benching, 10_000, 200),
        entries: bench_args::or(cli.entries, benching, 1_000_000, 2_000),
    }
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
        let m = runtime.block_on(measure(agent, &args));
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
        let b = &m.exec_burst;
        println!(
            "  {} execs at once in a guarded pod: through in {:.1} s ({:.0}/s); agent CPU {:.0} ms \
             ({:.1} µs per exec); peak RSS {:.1} MiB; lost in the kernel {}",
            b.items,
            b.wall.as_secs_f64(),
            b.items as f64 / b.wall.as_secs_f64(),
            b.cpu.as_secs_f64() * 1e3,
            b.cpu.as_secs_f64() * 1e6 / b.items as f64,
            mib(b.peak_kib),
            b.lost
        );
        let b = &m.log_burst;
        println!(
            "  {} WAF entries appended ({:.0} MB): through in {:.1} s ({:.0}/s); agent CPU {:.1} s \
             ({:.1} µs per entry); peak RSS {:.1} MiB; lost {}",
            b.items,
            m.log_bytes as f64 / 1e6,
            b.wall.as_secs_f64(),
            b.items as f64 / b.wall.as_secs_f64(),
            b.cpu.as_secs_f64(),
            b.cpu.as_secs_f64() * 1e6 / b.items as f64,
            mib(b.peak_kib),
            b.lost
        );
        if !args.benching {
            assert!(m.rss_kib > 0, "no RSS read");
            assert_eq!((m.exec_burst.lost, m.log_burst.lost), (0, 0));
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
    exec_burst: Burst,
    log_burst: Burst,
    log_bytes: u64,
}

/// What one burst cost the agent.
struct Burst {
    items: u64,
    wall: Duration,
    cpu: Duration,
    peak_kib: u64,
    /// Exec events the kernel could not store; WAF lines that were not entries.
    lost: u64,
}

async fn measure(agent: &Path, args: &Args) -> Memory {
    let pods = args.pods;
    let tree = CgroupTree::new("memory");
    // The log burst writes ~2.6 KB per entry: in memory when it can (a shared disk fills).
    let dir = tempfile::Builder::new()
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let server = ApiServer::start().await;
    let mut containers = Vec::new();
    for i in 0..pods {
        let id = format!("{:064x}", 0xbe0000 + i);
        let ctr = tree.guaranteed_pod(&server, &format!("juice-shop-{i}"), NODE, &id);
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
             inventory:\n  cgroup:\n    kubepods: {}\nwaf:\n  audit_log: {}\n  follow:\n    start_at: beginning\n\
             response:\n  dry_run: true\n",
            dir.path().join("state").display(),
            tree.root().join("kubepods.slice").display(),
            log.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(agent);
    cmd.arg("--config")
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
    let metrics = Metrics(agent.http_addr());
    for ctr in &containers {
        tree.sh(
            ctr,
            "for i in 1 2 3 4 5; do /bin/true; done; /bin/echo yw-memory",
        );
    }
    // sh, five /bin/true and an echo per pod, each through the rules.
    metrics.wait_execs(7 * pods as u64);
    let seed_entries = std::fs::read(&log)
        .unwrap()
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    metrics.wait_entries(seed_entries as u64);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pid = agent.child.id();
    let field = |name: &str| status_field(pid, name);
    let memory = Memory {
        peak_kib: field("VmHWM:"),
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:") + field("RssShmem:"),
        largest: largest_mappings(pid),
        exec_burst: exec_burst(&tree, &containers[0], pid, &metrics, args.execs),
        log_burst: log_burst(&log, pid, &metrics, args.entries),
        log_bytes: std::fs::metadata(&log).map_or(0, |m| m.len()),
    };
    agent.stop();
    memory
}

/// The agent's metrics endpoint.
struct Metrics(String);

impl Metrics {
    fn scrape(&self) -> Scrape {
        Scrape(http_get(&self.0, "/metrics").expect("scraping the agent's /metrics"))
    }

    fn get(&self, name: &str) -> u64 {
        self.scrape().get(name)
    }

    /// Waits until at least `execs` execs matched in the kernel and every matched exec was
    /// either evaluated by the rules or lost.
    fn wait_execs(&self, execs: u64) {
        self.wait(|m| {
            let matched = m.get("youwatch_exec_events_matched_total");
            let through = m.get("youwatch_rules_exec_events_evaluated_total")
                + m.get("youwatch_exec_events_lost_total");
            matched >= execs && through >= matched
        });
    }

    /// Waits until at least `entries` WAF entries were parsed.
    fn wait_entries(&self, entries: u64) {
        self.wait(|m| m.get("youwatch_waf_entries_total") >= entries);
    }

    /// Polls with one scrape per round (each costs the agent a little: the figure's load).
    fn wait(&self, done: impl Fn(&Scrape) -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        while !done(&self.scrape()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the agent fell behind for 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One scrape of the agent's metrics.
struct Scrape(String);

impl Scrape {
    fn get(&self, name: &str) -> u64 {
        metric(&self.0, name).unwrap_or(0.0) as u64
    }
}

/// The agent's CPU time (user + system, every thread, ended ones included).
fn agent_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces): utime and stime are the 12th and 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<u64> = after.split(' ').map(|f| f.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf cannot fail for _SC_CLK_TCK.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_nanos((fields[11] + fields[12]) * 1_000_000_000 / hz)
}

/// Peak RSS since the last reset, KiB.
fn peak_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}

/// Starts a new peak-RSS measurement (the peak becomes the current RSS).
fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("resetting the peak RSS");
}

fn status_field(pid: u32, name: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `execs` execs asked at once from exec servers in container cgroup `ctr`.
fn exec_burst(tree: &CgroupTree, ctr: &str, pid: u32, metrics: &Metrics, execs: u64) -> Burst {
    const SERVERS: usize = 4;
    let matched = metrics.get("youwatch_exec_events_matched_total");
    let lost = metrics.get("youwatch_exec_events_lost_total");
    reset_peak(pid);
    let cpu = agent_cpu(pid);
    let start = std::time::Instant::now();
    let mut servers = ExecServers::start(tree, ctr, SERVERS, 0);
    servers.trigger(execs as usize);
    let items = execs + SERVERS as u64;
    metrics.wait_execs(matched + items);
    let burst = Burst {
        items,
        wall: start.elapsed(),
        cpu: agent_cpu(pid) - cpu,
        peak_kib: peak_kib(pid),
        lost: metrics.get("youwatch_exec_events_lost_total") - lost,
    };
    servers.finish();
    burst
}

/// `entries` entries appended to the followed audit log as fast as they can be written: the
/// seed's real entries, from 65,536 client addresses (10.1.x.y) so per-IP state is exercised.
fn log_burst(log: &Path, pid: u32, metrics: &Metrics, entries: u64) -> Burst {
    use std::io::Write;
    let seed = std::fs::read(log).unwrap();
    // Each seed line split around its client address: prefix, address, rest.
    let templates: Vec<(&[u8], &[u8])> = seed
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let key = b"\"client_ip\":\"";
            let at = line.windows(key.len()).position(|w| w == key)? + key.len();
            let len = line[at..].iter().position(|&b| b == b'"')?;
            Some((&line[..at], &line[at + len..]))
        })
        .collect();
    let before = metrics.get("youwatch_waf_entries_total");
    let bad = metrics.get("youwatch_waf_bad_lines_total");
    reset_peak(pid);
    let cpu = agent_cpu(pid);
    let start = std::time::Instant::now();
    let mut out = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::OpenOptions::new().append(true).open(log).unwrap(),
    );
    for n in 0..entries {
        let (head, tail) = templates[n as usize % templates.len()];
        out.write_all(head).unwrap();
        write!(out, "10.1.{}.{}", (n >> 8) & 255, n & 255).unwrap();
        out.write_all(tail).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
    metrics.wait_entries(before + entries);
    Burst {
        items: entries,
        wall: start.elapsed(),
        cpu: agent_cpu(pid) - cpu,
        peak_kib: peak_kib(pid),
        lost: metrics.get("youwatch_waf_bad_lines_total") - bad,
    }
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
