//! Correlation latency (`cargo xtask bench correlate`; needs root).
//!
//! A runtime detection → its incident's ban on the wire, for a shell that follows one
//! detection-only RCE request. Two topologies side by side in one run, each with its own test
//! API server behind a tap that notes when each request line crosses it:
//! - same node: one agent binary follows the WAF's audit log and guards the pod;
//! - cross node: one agent follows the audit log (the ingress node), another guards the pod
//!   (the app node); they meet through the API server (the evidence Event the first writes,
//!   the LIST the second makes at the detection).
//!
//! Each iteration appends the entry ModSecurity writes for a detection-only RCE (932160 +
//! 930120) from a new client (198.18.0.0/15, RFC 2544) to the audit log, waits for the
//! evidence write on the wire (the request is recorded; its time is noted: tail, route,
//! record, write, after a quiet spell longer than the publish interval), guards a new pod
//! and execs a shell in it. Measured from the exec (the kernel's stamp, the shell alert's
//! `time`) to the pod's DELETE and to the PATCH of the shop's Ingress denying the client, on
//! the wire. Coalescing of denylist patches is off (`deny_ip.coalesce: 0s`; by default bans
//! within 500 ms go out together, which adds up to that much).

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    io::Write,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use support::{
    agent::Agent,
    apiserver::ApiServer,
    bench_args,
    cgroup_tree::CgroupTree,
    correlation::{self, NS, SHOP, Settings},
    wire::{Seen, alert_time, first_after, kubeconfig, on_the_wire_after, percentile, tap},
};

/// The default window; every client in it banned (`max_ips`), so each iteration's new
/// client is banned however many earlier ones fall in the same seconds (audit-log times are
/// whole seconds: earlier clients can rank as near as the new one).
/// `cross_node.publish_interval` in the agents' configuration.
const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);

const SETTINGS: Settings = Settings {
    window: Duration::from_secs(60),
    wait: Duration::from_secs(5),
    max_ips: 100,
};

/// What one topology measured.
#[derive(Default)]
struct Figures {
    delete: Vec<Duration>,
    ban: Vec<Duration>,
    /// Audit-log line appended → evidence write on the wire.
    evidence: Vec<Duration>,
    /// API reads the pod's agent made per incident (Services, evidence Events).
    reads: Vec<usize>,
}

struct Topology {
    server: ApiServer,
    seen: Seen,
    tree: CgroupTree,
    dir: tempfile::TempDir,
    audit_log: PathBuf,
    app: Agent,
    waf: Option<Agent>,
}

impl Topology {
    async fn start(label: &str, cross_node: bool) -> Topology {
        let server = ApiServer::start().await;
        correlation::cluster(&server);
        let upstream: SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
        let (tapped, seen) = tap(upstream);
        let tree = correlation::cgroup_tree(label);
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig(dir.path(), tapped);
        let audit_log = dir.path().join("audit.log");
        std::fs::File::create(&audit_log).unwrap();
        let (app, waf) = correlation::agents(
            dir.path(),
            &tree,
            &kubeconfig,
            &audit_log,
            &SETTINGS,
            cross_node,
        );
        Topology {
            server,
            seen,
            tree,
            dir,
            audit_log,
            app,
            waf,
        }
    }

    async fn run(&mut self, iterations: usize) -> Figures {
        let mut f = Figures::default();
        let evidence = format!("/apis/events.k8s.io/v1/namespaces/{NS}/events");
        for i in 0..iterations {
            let client = format!("198.18.{}.{}", i / 250, i % 250 + 1);
            // A quiet spell longer than the publish interval: the evidence of a first request
            // is written at once (within a burst, writes come once per interval).
            tokio::time::sleep(PUBLISH_INTERVAL + Duration::from_millis(50)).await;
            let appended = SystemTime::now();
            append(&self.audit_log, &rce_entry(&client, i));
            let write = first_evidence_write(&self.seen, &evidence, appended);
            f.evidence
                .push(write.duration_since(appended).unwrap_or_default());
            let pod = correlation::guarded_pod(&self.server, &self.tree, &mut self.app, i + 1);
            let reads_before = self.reads();
            self.tree.sh(&pod.container, "true");
            let alert = shell_alert(&self.dir.path().join("app"), &pod.name).await;
            let exec_at = alert_time(&alert);
            let since = exec_at - Duration::from_millis(50);
            let delete = first_after(
                &self.seen,
                &format!("DELETE /api/v1/namespaces/{NS}/pods/{}", pod.name),
                since,
                Duration::from_secs(10),
            );
            let ban = first_after(
                &self.seen,
                &format!("PATCH /apis/networking.k8s.io/v1/namespaces/{NS}/ingresses/juice-shop"),
                since,
                Duration::from_secs(10),
            );
            f.delete
                .push(delete.duration_since(exec_at).unwrap_or_default());
            f.ban.push(ban.duration_since(exec_at).unwrap_or_default());
            correlation::incident(
                &self.dir.path().join("app"),
                &pod.name,
                Duration::from_secs(10),
            )
            .await;
            f.reads.push(self.reads() - reads_before);
        }
        f
    }

    /// The pod agent's reads for incidents so far: Services and evidence Events listed.
    fn reads(&self) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|w| {
                w.line
                    .starts_with(&format!("GET /api/v1/namespaces/{NS}/services"))
                    || w.line.starts_with(&format!(
                        "GET /apis/events.k8s.io/v1/namespaces/{NS}/events"
                    ))
            })
            .count()
    }
}

/// The first evidence write (POST or PATCH of an Event in the namespace) after `since`.
fn first_evidence_write(seen: &Seen, path: &str, since: SystemTime) -> SystemTime {
    on_the_wire_after(seen, 0, Duration::from_secs(10), |w| {
        w.at >= since
            && (w.line.starts_with(&format!("POST {path}"))
                || w.line.starts_with(&format!("PATCH {path}/")))
    })
}

async fn shell_alert(dir: &Path, pod: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(a) = correlation::alerts(dir).into_iter().find(|a| {
            a["rule"] == "Shell spawned in Juice Shop pod"
                && a["output_fields"]["k8s.pod.name"] == pod
        }) {
            return a;
        }
        assert!(Instant::now() < deadline, "no shell alert for {pod}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn append(path: &Path, line: &str) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(line.as_bytes()).unwrap();
    f.write_all(b"\n").unwrap();
}

/// The JSON audit-log entry ModSecurity v3 + CRS 3.3 writes for a detection-only RCE.
fn rce_entry(client: &str, n: usize) -> String {
    let stamp = jiff::Timestamp::now().strftime("%a %b %e %H:%M:%S %Y");
    let message = |id: u32, msg: &str, tag: &str| {
        format!(
            r#"{{"message":"{msg}","details":{{"match":"Matched Data: ;cat /etc/passwd","reference":"","ruleId":"{id}","file":"","lineNumber":"","data":"","severity":"2","ver":"OWASP_CRS/3.3.4","rev":"","tags":["application-multi","platform-unix","attack-{tag}"],"maturity":"0","accuracy":"0"}}}}"#
        )
    };
    format!(
        r#"{{"transaction":{{"client_ip":"{client}","time_stamp":"{stamp}","server_id":"bench","client_port":40000,"host_ip":"127.0.0.1","host_port":80,"unique_id":"bench-{n}","request":{{"method":"GET","http_version":1.1,"uri":"{uri}","headers":{{"Host":"{SHOP}","User-Agent":"Mozilla/5.0"}}}},"response":{{"http_code":200,"headers":{{}}}},"producer":{{"modsecurity":"ModSecurity v3.0.9","connector":"ModSecurity-nginx","secrules_engine":"DetectionOnly","components":["OWASP_CRS/3.3.4"]}},"messages":[{},{}]}}}}"#,
        message(
            932160,
            "Remote Command Execution: Unix Shell Code Found",
            "rce"
        ),
        message(930120, "OS File Access Attempt", "lfi"),
        uri = correlation::RCE,
    )
}

fn row(what: &str, v: &mut [Duration]) -> Duration {
    v.sort();
    println!(
        "{what:<44} p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        percentile(v, 0.5),
        percentile(v, 0.9),
        percentile(v, 0.99),
        percentile(v, 1.0)
    );
    percentile(v, 0.5)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (iterations, benching) = bench_args::count("iterations", "Shells per topology", 100, 3);
    if !benching && !support::require::root_and_cgroup2("correlate bench smoke run") {
        return;
    }
    let mut results = Vec::new();
    for (label, cross) in [("same node", false), ("cross node", true)] {
        let mut topology = Topology::start(&format!("bench-corr-{cross}"), cross).await;
        let figures = topology.run(iterations).await;
        let Topology { app, waf, .. } = topology;
        for agent in [Some(app), waf].into_iter().flatten() {
            let status = agent.signal_and_wait(libc::SIGTERM);
            assert!(status.success(), "agent exit {status}");
        }
        results.push((label, figures));
    }
    println!(
        "correlate bench: {iterations} shells per topology, each after one detection-only RCE request from a new client (agent binaries, real eBPF, test API server)"
    );
    let mut bans = Vec::new();
    for (label, f) in &mut results {
        row(&format!("{label}: exec -> pod DELETE"), &mut f.delete);
        bans.push(row(
            &format!("{label}: exec -> ban PATCH (incident)"),
            &mut f.ban,
        ));
        row(
            &format!("{label}: request logged -> evidence written"),
            &mut f.evidence,
        );
        let reads: usize = f.reads.iter().sum();
        println!(
            "{:<44} {:.1} per incident (Services list + evidence Events lists)",
            format!("{label}: API reads"),
            reads as f64 / f.reads.len() as f64
        );
    }
    println!(
        "cross node / same node, exec -> ban p50: {:.2}x",
        bans[1].as_secs_f64() / bans[0].as_secs_f64().max(1e-9)
    );
}
