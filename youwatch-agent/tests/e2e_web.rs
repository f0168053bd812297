//! End to end, the original WAF reactor: real nginx + ModSecurity + CRS on loopback writing
//! its JSON audit log, the agent binary following it and acting on the test API server's
//! Ingresses. Attackers and benign users send from distinct loopback addresses (the recorded
//! corpora's clients); the Ingress denylists end up holding exactly the attackers, a `kill -9`
//! and restart of the agent in between loses nothing and repeats nothing, and after the ban's
//! length the entries are gone. Also the dev VM: `--dry-run` without any API server prints
//! the planned requests. Needs root and BPF (fails under CI=true without them).

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use support::{
    agent::{Agent, acting_command, agent_command},
    apiserver::ApiServer,
    nginx_waf, require,
    response::ingress,
    waf_corpus::{self, BLOCKING_HOST, Client, DETECTION_ONLY_HOST, Expect},
};

const INGRESSES: &str = "networking.k8s.io/ingresses";
const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";
/// The first ban's length: short, so expiry is seen within the test.
const BAN: &str = "25s";

fn runnable(test: &str) -> bool {
    require::root_and_cgroup2(test) && nginx_waf::available(test)
}

fn config(dir: &std::path::Path, audit_log: &std::path::Path) -> String {
    format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"\"\n  alerts:\n    stdout: false\n    file: {alerts}\n\
         waf:\n  audit_log: {log}\n  follow:\n    start_at: beginning\n    poll_interval: 100ms\n  scoring:\n    ban: {BAN}\n  client_ip:\n    ban_loopback: true\n\
         response:\n  deny_ip:\n    allow_loopback: true\n    coalesce: 200ms\n",
        state = dir.join("state").display(),
        alerts = dir.join("alerts.json").display(),
        log = audit_log.display(),
    )
}

/// The addresses on the denylists of both Ingresses.
fn denied(server: &ApiServer) -> BTreeSet<Ipv4Addr> {
    ["web", "monitor"]
        .iter()
        .filter_map(|name| server.get(INGRESSES, "shop", name))
        .filter_map(|i| {
            i["metadata"]["annotations"][DENY]
                .as_str()
                .map(str::to_owned)
        })
        .flat_map(|list| {
            list.split(',')
                .filter_map(|e| e.trim().trim_end_matches("/32").parse().ok())
                .collect::<Vec<Ipv4Addr>>()
        })
        .collect()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn must_ban(clients: &[Client]) -> BTreeSet<Ipv4Addr> {
    clients
        .iter()
        .filter(|c| c.expect == Expect::Ban)
        .map(|c| c.ip)
        .collect()
}

fn start_agent(server: &ApiServer, dir: &std::path::Path, audit_log: &std::path::Path) -> Agent {
    let mut cmd = acting_command(dir, &config(dir, audit_log));
    cmd.env("KUBECONFIG", server.write_kubeconfig(dir))
        .env("NODE_NAME", "node-e2e");
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("following a file");
    agent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attackers_and_only_attackers_are_denied_across_a_kill_and_then_expire() {
    if !runnable("attackers_and_only_attackers_are_denied_across_a_kill_and_then_expire") {
        return;
    }
    let waf = waf_corpus::start_waf();
    let server = ApiServer::start().await;
    server.create(
        INGRESSES,
        "shop",
        ingress(
            "web",
            &[BLOCKING_HOST],
            "juice-shop",
            &[(
                "nginx.ingress.kubernetes.io/denylist-source-range",
                "198.51.100.0/24",
            )],
        ),
    );
    server.create(
        INGRESSES,
        "shop",
        ingress("monitor", &[DETECTION_ONLY_HOST], "juice-shop", &[]),
    );
    let dir = tempfile::tempdir().unwrap();
    let attackers = waf_corpus::attack_clients();
    let benign: Vec<Client> = waf_corpus::benign_clients().into_iter().take(20).collect();
    let (first, second) = attackers.split_at(attackers.len() / 2);
    let (benign_first, benign_second) = benign.split_at(benign.len() / 2);

    // Phase 1: half the attackers among benign users.
    let agent = start_agent(&server, dir.path(), &waf.audit_log());
    let mut clients: Vec<&Client> = first.iter().chain(benign_first).collect();
    clients.sort_by_key(|c| c.ip);
    let phase: Vec<Client> = clients.into_iter().map(clone_client).collect();
    waf_corpus::record(&waf, &phase);
    let want_first = must_ban(first);
    wait_for("phase 1 attackers denied", Duration::from_secs(30), || {
        want_first.is_subset(&denied(&server))
    })
    .await;

    // kill -9 while idle, restart on the same state: nothing lost, nothing repeated.
    let status = agent.signal_and_wait(libc::SIGKILL);
    assert!(!status.success());
    let agent = start_agent(&server, dir.path(), &waf.audit_log());
    let phase: Vec<Client> = second
        .iter()
        .chain(benign_second)
        .map(clone_client)
        .collect();
    waf_corpus::record(&waf, &phase);
    let want = must_ban(&attackers);
    wait_for("every attacker denied", Duration::from_secs(30), || {
        want.is_subset(&denied(&server))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let now = denied(&server);
    let benign_ips: BTreeSet<Ipv4Addr> = benign.iter().map(|c| c.ip).collect();
    assert!(
        now.is_disjoint(&benign_ips),
        "benign users denied: {:?}",
        now.intersection(&benign_ips).collect::<Vec<_>>()
    );
    let attacker_ips: BTreeSet<Ipv4Addr> = attackers.iter().map(|c| c.ip).collect();
    assert!(now.is_subset(&attacker_ips), "only attackers: {now:?}");
    // The user's own entry stays.
    let web = server.get(INGRESSES, "shop", "web").unwrap();
    assert!(
        web["metadata"]["annotations"][DENY]
            .as_str()
            .unwrap()
            .contains("198.51.100.0/24")
    );
    // One SourceDenied Event per address and Ingress: nothing applied twice.
    let events: Api<Event> = Api::namespaced(server.client(), "shop");
    let events = events
        .list(&ListParams::default().fields("reason=SourceDenied"))
        .await
        .unwrap()
        .items;
    let mut per_ip: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let note = e.note.clone().unwrap_or_default();
        if let Some(ip) = now
            .iter()
            .find(|ip| note.contains(&format!("{ip}/32")) || note.contains(&format!("{ip} ")))
        {
            *per_ip.entry(ip.to_string()).or_default() += 1;
        }
    }
    for ip in &now {
        assert_eq!(
            per_ip.get(&ip.to_string()),
            Some(&1),
            "SourceDenied events for {ip}: {events:#?}"
        );
    }

    // After the ban's length, the agent removes its entries (and only its entries).
    wait_for("the bans expired", Duration::from_secs(60), || {
        denied(&server).iter().all(|ip| !attacker_ips.contains(ip))
    })
    .await;
    let web = server.get(INGRESSES, "shop", "web").unwrap();
    assert_eq!(
        web["metadata"]["annotations"][DENY].as_str(),
        Some("198.51.100.0/24")
    );
    let status = agent.signal_and_wait(libc::SIGTERM);
    assert!(status.success(), "agent exit {status}");
}

fn clone_client(c: &Client) -> Client {
    Client {
        ip: c.ip,
        attacker: c.attacker,
        expect: c.expect,
        why: c.why.clone(),
        host: c.host,
        requests: c.requests.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_vm_dry_run_without_a_cluster_prints_the_planned_requests() {
    if !runnable("dev_vm_dry_run_without_a_cluster_prints_the_planned_requests") {
        return;
    }
    let waf = waf_corpus::start_waf();
    let attackers = waf_corpus::attack_clients();
    let one: Vec<Client> = attackers.iter().take(3).map(clone_client).collect();
    waf_corpus::record(&waf, &one);
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::spawn(agent_command(
        dir.path(),
        &config(dir.path(), &waf.audit_log()),
    ));
    agent.wait_log("agent mode: node-local");
    let planned = agent
        .stdout_json(Duration::from_secs(20), |v| {
            v["dry_run"] == "client" && v["action"] == "deny_ip"
        })
        .expect("the awaited stdout line");
    assert_eq!(planned["request"]["method"], "PATCH");
    assert!(
        planned["request"]["path"]
            .as_str()
            .unwrap()
            .contains("shop.example"),
        "{planned}"
    );
    assert_eq!(planned["reason"]["rule"], "WAF attacker to ban");
    let status = agent.signal_and_wait(libc::SIGINT);
    assert!(status.success(), "agent exit {status}");
}
