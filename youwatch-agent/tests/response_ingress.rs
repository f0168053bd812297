//! The response stage denying addresses and quarantining apps on Ingresses, against the
//! test API server through the real kube client: merge with users' entries, 409 re-read,
//! guards, coalescing, cap, expiry (across restarts and agents), dry-run modes, quarantine.

mod support;

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::{Api, api::ListParams};
use serde_json::json;
use support::{
    apiserver::ApiServer,
    response::{eventually, ingress, shell_in, start, start_as, waf_ban},
};
use youwatch_agent::{
    detection::{Origin, Subject},
    response::{
        DryRun, ResponseConfig,
        action::ActionKind,
        config::{MatchConfig, PlaybookConfig},
    },
};

const INGRESSES: &str = "networking.k8s.io/ingresses";
const DENY: &str = "nginx.ingress.kubernetes.io/denylist-source-range";
const LEDGER: &str = "youwatch.dev/denied-sources";
const ALLOW: &str = "nginx.ingress.kubernetes.io/allowlist-source-range";
const QUARANTINE: &str = "youwatch.dev/quarantine";
const HOUR: Duration = Duration::from_secs(3600);

/// Short windows and backoffs, so tests run fast.
fn config() -> ResponseConfig {
    let mut c = ResponseConfig::default();
    c.deny_ip.coalesce = Duration::from_millis(50);
    c.retry.initial_backoff = Duration::from_millis(20);
    c.retry.max_backoff = Duration::from_millis(200);
    c.shutdown_grace = Duration::from_secs(2);
    c
}

/// The stage on `server` with a fresh state directory (kept alive by the caller).
fn agent(
    server: &ApiServer,
    config: &ResponseConfig,
    dry_run: DryRun,
) -> (support::response::Running, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    (start(Some(server), config, dry_run, state.path()), state)
}

/// A ban of `ip` by the WAF of shop.example.
fn ban(ip: &str, ttl: Duration) -> youwatch_agent::detection::Detection {
    waf_ban(ip, Some("shop.example"), ttl, 1)
}

/// A test API server with the Ingress shop/web serving shop.example (to Service
/// juice-shop), with `annotations`.
async fn serving_web(annotations: &[(&str, &str)]) -> ApiServer {
    let server = ApiServer::start().await;
    server.create(
        INGRESSES,
        "shop",
        ingress("web", &["shop.example"], "juice-shop", annotations),
    );
    server
}

fn annotation(server: &ApiServer, name: &str, key: &str) -> Option<String> {
    let object = server.get(INGRESSES, "shop", name)?;
    object["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

/// The ban ledger of an Ingress, parsed.
fn ledger(server: &ApiServer, name: &str) -> serde_json::Map<String, serde_json::Value> {
    annotation(server, name, LEDGER)
        .map(|l| serde_json::from_str(&l).unwrap())
        .unwrap_or_default()
}

fn requests(server: &ApiServer, method: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(method) && r.contains("/ingresses/"))
        .collect()
}

async fn events(server: &ApiServer, name: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(server.client(), "shop");
    api.list(&ListParams::default().fields(&format!("regarding.name={name}")))
        .await
        .unwrap()
        .items
}

async fn event_reasons(server: &ApiServer, name: &str) -> Vec<String> {
    events(server, name)
        .await
        .into_iter()
        .filter_map(|e| e.reason)
        .collect()
}

fn outcome(report: &youwatch_agent::detection::Detection) -> String {
    report.output_fields["response.outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn detail(report: &youwatch_agent::detection::Detection) -> String {
    report.output_fields["response.detail"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn denies_on_the_ingresses_serving_the_host_and_reports_it() {
    let server = serving_web(&[(DENY, "198.51.100.0/24, 1.2.3.4")]).await;
    server.create(
        INGRESSES,
        "shop",
        ingress("api", &["other.example", "shop.example"], "api", &[]),
    );
    server.create(
        INGRESSES,
        "shop",
        ingress("wild", &["*.example"], "wild", &[]),
    );
    let mut unmanaged = ingress("unmanaged", &["shop.example"], "juice-shop", &[]);
    unmanaged["metadata"]["labels"] = json!({});
    server.create(INGRESSES, "shop", unmanaged);
    let mut config = config();
    config.deny_ip.ingress_selector = "youwatch.dev/managed=true".into();
    let (mut running, _state) = agent(&server, &config, DryRun::Off);

    running
        .publish(waf_ban("203.0.113.9", Some("Shop.Example:443"), HOUR, 2))
        .await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "applied", "{report:?}");
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        "1.2.3.4,198.51.100.0/24,203.0.113.9/32",
        "the user's entries kept, ours added, sorted"
    );
    assert_eq!(annotation(&server, "api", DENY).unwrap(), "203.0.113.9/32");
    assert_eq!(
        annotation(&server, "wild", DENY),
        None,
        "an exact host wins over a wildcard"
    );
    assert_eq!(
        annotation(&server, "unmanaged", DENY),
        None,
        "outside the selector"
    );
    let entry = &ledger(&server, "web")["203.0.113.9/32"];
    assert_eq!(entry["node"], "node-a");
    assert_eq!(entry["offense"], 2);
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("WAF attacker to ban (sqli)")
    );
    assert!(entry["until"].as_str().unwrap().ends_with('Z'));

    eventually_events(&server, "web", 1).await;
    let e = &events(&server, "web").await[0];
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reason.as_deref(), Some("SourceDenied"));
    let note = e.note.as_deref().unwrap();
    assert!(
        note.contains("203.0.113.9/32") && note.contains("waf.rule_id=942100"),
        "{note}"
    );

    // A host nothing serves is refused, by name; a wildcard host reaches the wildcard.
    running
        .publish(waf_ban("203.0.113.10", Some("nowhere.test"), HOUR, 1))
        .await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "refused");
    assert!(detail(&report).contains("host nowhere.test"), "{report:?}");
    running
        .publish(waf_ban("203.0.113.11", Some("blog.example"), HOUR, 1))
        .await;
    assert_eq!(outcome(&running.report().await), "applied");
    assert_eq!(
        annotation(&server, "wild", DENY).unwrap(),
        "203.0.113.11/32"
    );

    // Without a host: every managed Ingress.
    running
        .publish(waf_ban("203.0.113.12", None, HOUR, 1))
        .await;
    assert_eq!(outcome(&running.report().await), "applied");
    for name in ["web", "api", "wild"] {
        assert!(
            annotation(&server, name, DENY)
                .unwrap()
                .contains("203.0.113.12/32"),
            "{name}"
        );
    }
    assert_eq!(annotation(&server, "unmanaged", DENY), None);
    running.stop().await;
}

async fn has_event(server: &ApiServer, name: &str, reason: &str) -> bool {
    event_reasons(server, name)
        .await
        .iter()
        .any(|r| r == reason)
}

async fn eventually_events(server: &ApiServer, name: &str, n: usize) {
    for _ in 0..500 {
        if events(server, name).await.len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no {n} Events on {name}");
}

#[tokio::test]
async fn a_concurrent_user_edit_survives_the_409_retry() {
    let server = serving_web(&[(DENY, "198.51.100.0/24")]).await;
    let mut config = config();
    config.deny_ip.coalesce = Duration::from_millis(100);
    let (mut running, _state) = agent(&server, &config, DryRun::Off);
    server.wait_for_watches(1, Duration::from_secs(5)).await;

    running.publish(ban("203.0.113.9", HOUR)).await;
    // The agent's copy is now stale: a user edits while the API server is unreachable, so
    // the agent's patch (retried through the outage) carries an old resourceVersion.
    server
        .restart(Duration::from_millis(600), |s| {
            s.modify(INGRESSES, "shop", "web", |i| {
                i["metadata"]["annotations"][DENY] = json!("198.51.100.0/24, 192.0.2.200");
            });
        })
        .await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "applied", "{report:?}");
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        "192.0.2.200,198.51.100.0/24,203.0.113.9/32"
    );
    assert!(running.metric("youwatch_response_ingress_conflicts_total") >= 1.0);
    assert!(running.metric("youwatch_response_retries_total{action=\"deny_ip\"}") >= 1.0);
    running.stop().await;
}

#[tokio::test]
async fn allowlisted_and_reserved_addresses_are_never_written() {
    let server = serving_web(&[]).await;
    let mut config = config();
    config.allowlist = vec![
        "203.0.113.0/24".parse().unwrap(),
        "2001:db8::/32".parse().unwrap(),
    ];
    let (mut running, _state) = agent(&server, &config, DryRun::Off);
    for ip in [
        "203.0.113.7",
        "::ffff:203.0.113.8",
        "2001:db8::5",
        "127.0.0.1",
        "::1",
        "169.254.169.254",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.251",
        "255.255.255.255",
    ] {
        running.publish(ban(ip, HOUR)).await;
        let report = running.report().await;
        assert_eq!(outcome(&report), "refused", "{ip}: {report:?}");
        assert!(
            detail(&report).contains("allowlist") || detail(&report).contains("never denied"),
            "{ip}: {report:?}"
        );
    }
    assert!(requests(&server, "PATCH").is_empty());
    assert_eq!(annotation(&server, "web", DENY), None);
    assert_eq!(
        running.metric("youwatch_response_deny_refused_total{reason=\"allowlist\"}"),
        3.0
    );
    assert_eq!(
        running.metric("youwatch_response_deny_refused_total{reason=\"reserved\"}"),
        7.0
    );
    running.stop().await;
}

#[tokio::test]
async fn a_malformed_user_value_is_reported_not_made_worse() {
    let broken = "1.2.3.4, 10.0.0.0/33,not-an-ip";
    let server = serving_web(&[(DENY, broken)]).await;
    let (mut running, _state) = agent(&server, &config(), DryRun::Off);
    running.publish(ban("203.0.113.9", HOUR)).await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "refused");
    let why = detail(&report);
    assert!(
        why.contains("shop/web")
            && why.contains(DENY)
            && why.contains("\"10.0.0.0/33\"")
            && why.contains("\"not-an-ip\""),
        "{why}"
    );
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        broken,
        "untouched"
    );
    assert!(requests(&server, "PATCH").is_empty());
    eventually_events(&server, "web", 1).await;
    assert_eq!(event_reasons(&server, "web").await, ["DenyRefused"]);
    assert_eq!(
        running.metric("youwatch_response_deny_refused_total{reason=\"malformed_list\"}"),
        1.0
    );

    // A ledger the agent cannot read (edited by hand): nothing added either.
    let bad_ledger = "{\"203.0.113.1/32\": \"soon\"}";
    server.create(
        INGRESSES,
        "shop",
        ingress("api", &["api.example"], "api", &[(LEDGER, bad_ledger)]),
    );
    eventually("the agent sees the new Ingress", || {
        running.metric("youwatch_response_ingresses") == 2.0
    })
    .await;
    running
        .publish(waf_ban("203.0.113.9", Some("api.example"), HOUR, 1))
        .await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "refused");
    assert!(detail(&report).contains(LEDGER), "{report:?}");
    assert_eq!(annotation(&server, "api", LEDGER).unwrap(), bad_ledger);
    assert_eq!(annotation(&server, "api", DENY), None);
    running.stop().await;
}

#[tokio::test]
async fn expiry_removes_only_our_entries() {
    let server = serving_web(&[(DENY, "198.51.100.0/24,1.2.3.4")]).await;
    let (mut running, _state) = agent(&server, &config(), DryRun::Off);
    running
        .publish(ban("203.0.113.9", Duration::from_secs(2)))
        .await;
    running.publish(ban("203.0.113.10", HOUR)).await;
    assert_eq!(outcome(&running.report().await), "applied");
    assert_eq!(outcome(&running.report().await), "applied");
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        "1.2.3.4,198.51.100.0/24,203.0.113.9/32,203.0.113.10/32"
    );
    eventually("the first ban expired", || {
        annotation(&server, "web", DENY).as_deref()
            == Some("1.2.3.4,198.51.100.0/24,203.0.113.10/32")
    })
    .await;
    assert_eq!(
        ledger(&server, "web").keys().collect::<Vec<_>>(),
        ["203.0.113.10/32"]
    );
    eventually("the expiry counted", || {
        running.metric("youwatch_response_bans_expired_total") == 1.0
    })
    .await;
    eventually_events(&server, "web", 3).await;
    let released: Vec<Event> = events(&server, "web")
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SourceReleased"))
        .collect();
    assert_eq!(released.len(), 1);
    assert_eq!(released[0].type_.as_deref(), Some("Normal"));
    assert!(
        released[0]
            .note
            .as_deref()
            .unwrap()
            .contains("203.0.113.9/32")
    );
    running.stop().await;
}

#[tokio::test]
async fn expiry_covers_other_agents_and_bans_that_lapsed_while_down() {
    let server = ApiServer::start().await;
    let now = jiff::Timestamp::now();
    let at = |secs: i64| {
        (now + jiff::SignedDuration::from_secs(secs))
            .round(jiff::Unit::Second)
            .unwrap()
            .to_string()
    };
    let ledger_text = json!({
        "203.0.113.1/32": {"until": at(-60), "offense": 1, "reason": "old", "node": "node-gone"},
        "203.0.113.2/32": {"until": at(2), "offense": 1, "reason": "soon", "node": "node-gone"},
        "203.0.113.3/32": {"until": at(3600), "offense": 1, "reason": "later", "node": "node-b"},
    })
    .to_string();
    server.create(
        INGRESSES,
        "shop",
        ingress(
            "web",
            &["shop.example"],
            "juice-shop",
            &[
                (DENY, "1.2.3.4,203.0.113.1/32,203.0.113.2/32,203.0.113.3/32"),
                (LEDGER, &ledger_text),
            ],
        ),
    );
    let (running, _state) = agent(&server, &config(), DryRun::Off);
    eventually(
        "the ban that lapsed while no agent ran is removed at start",
        || {
            annotation(&server, "web", DENY).as_deref()
                == Some("1.2.3.4,203.0.113.2/32,203.0.113.3/32")
        },
    )
    .await;
    eventually("another agent's ban is removed at its expiry", || {
        annotation(&server, "web", DENY).as_deref() == Some("1.2.3.4,203.0.113.3/32")
    })
    .await;
    assert_eq!(
        ledger(&server, "web").keys().collect::<Vec<_>>(),
        ["203.0.113.3/32"]
    );
    running.stop().await;
}

#[tokio::test]
async fn client_dry_run_writes_nothing() {
    let server = serving_web(&[]).await;
    let state = tempfile::tempdir().unwrap();
    let running = start(Some(&server), &config(), DryRun::Client, state.path());
    running
        .publish(ban("203.0.113.9", Duration::from_secs(1)))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    let writes: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(annotation(&server, "web", DENY), None);

    // Without a cluster the action is planned too.
    let running = start(None, &config(), DryRun::Off, state.path());
    running.publish(ban("203.0.113.9", HOUR)).await;
    running.stop().await;
}

#[tokio::test]
async fn server_dry_run_sends_dry_run_all() {
    let server = serving_web(&[(DENY, "1.2.3.4")]).await;
    let (mut running, _state) = agent(&server, &config(), DryRun::Server);
    running.publish(ban("203.0.113.9", HOUR)).await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "dry_run", "{report:?}");
    let patches = requests(&server, "PATCH");
    assert_eq!(patches.len(), 1, "{patches:?}");
    assert!(patches[0].contains("dryRun=All"), "{patches:?}");
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        "1.2.3.4",
        "nothing stored"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_burst_of_bans_gives_few_patches_and_a_valid_sorted_capped_list() {
    let user = "192.0.2.0/24,2001:db8::/48,198.51.100.7";
    let server = serving_web(&[(DENY, user)]).await;
    let mut config = config();
    config.deny_ip.coalesce = Duration::from_millis(200);
    let (mut running, _state) = agent(&server, &config, DryRun::Off);
    server.wait_for_watches(1, Duration::from_secs(5)).await;
    const BANS: usize = 1000;
    for i in 0..BANS {
        let ip = if i % 2 == 0 {
            format!("100.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256)
        } else {
            format!("2001:db8:1::{i:x}")
        };
        running.publish(ban(&ip, HOUR)).await;
    }
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..BANS {
        *outcomes
            .entry(outcome(&running.report().await))
            .or_default() += 1;
    }
    let max = config.deny_ip.max_entries;
    assert_eq!(outcomes["applied"], max - 3, "{outcomes:?}");
    assert_eq!(outcomes["refused"], BANS - (max - 3), "{outcomes:?}");
    let patches = requests(&server, "PATCH");
    assert!(
        patches.len() <= 10,
        "{} patches for a burst of {BANS}",
        patches.len()
    );

    let list = annotation(&server, "web", DENY).unwrap();
    let entries: Vec<&str> = list.split(',').collect();
    assert_eq!(entries.len(), max, "capped");
    for user_entry in user.split(',') {
        assert!(entries.contains(&user_entry), "{user_entry} kept");
    }
    let parsed: Vec<ipnet::IpNet> = entries
        .iter()
        .map(|e| {
            e.parse::<ipnet::IpNet>()
                .or_else(|_| e.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .unwrap_or_else(|_| panic!("{e:?} is not a valid entry"))
        })
        .collect();
    let key = |n: &ipnet::IpNet| {
        (
            n.addr().is_ipv6(),
            n.network(),
            std::cmp::Reverse(n.prefix_len()),
        )
    };
    assert!(
        parsed.windows(2).all(|w| key(&w[0]) <= key(&w[1])),
        "sorted: {list}"
    );
    assert_eq!(ledger(&server, "web").len(), max - 3);
    assert_eq!(
        running.metric("youwatch_response_deny_refused_total{reason=\"full\"}"),
        (BANS - (max - 3)) as f64
    );
    running.stop().await;
}

#[tokio::test]
async fn two_agents_on_one_ingress_both_land() {
    let server = serving_web(&[(DENY, "1.2.3.4")]).await;
    let (state_a, state_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = config();
    let mut a = start_as(
        "node-a",
        Some(&server),
        &config,
        DryRun::Off,
        state_a.path(),
    );
    let mut b = start_as(
        "node-b",
        Some(&server),
        &config,
        DryRun::Off,
        state_b.path(),
    );
    server.wait_for_watches(2, Duration::from_secs(5)).await;
    const EACH: usize = 40;
    let publish = |running: &support::response::Running, net: u8| {
        let bus = running.bus.clone();
        async move {
            for i in 0..EACH {
                bus.publish(waf_ban(
                    &format!("203.0.{net}.{i}"),
                    Some("shop.example"),
                    HOUR,
                    1,
                ))
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tokio::join!(publish(&a, 113), publish(&b, 114));
    for _ in 0..EACH {
        assert_eq!(outcome(&a.report().await), "applied");
        assert_eq!(outcome(&b.report().await), "applied");
    }
    let ledger = ledger(&server, "web");
    assert_eq!(ledger.len(), 2 * EACH);
    let from = |node: &str| ledger.values().filter(|e| e["node"] == node).count();
    assert_eq!((from("node-a"), from("node-b")), (EACH, EACH));
    let list = annotation(&server, "web", DENY).unwrap();
    assert_eq!(list.split(',').count(), 2 * EACH + 1);
    assert!(list.starts_with("1.2.3.4,"), "{list}");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn restart_in_the_middle_of_a_ban_recovers_it() {
    let server = serving_web(&[]).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = config();
    config.shutdown_grace = Duration::from_millis(200);
    server.stop();
    // Decided while the API server is down: journaled, not applied.
    let running = start(Some(&server), &config, DryRun::Off, state.path());
    running
        .publish(ban("203.0.113.9", Duration::from_secs(3)))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(annotation(&server, "web", DENY), None);

    server.restart(Duration::ZERO, |_| {}).await;
    let mut running = start(Some(&server), &config, DryRun::Off, state.path());
    assert_eq!(outcome(&running.report().await), "applied");
    assert_eq!(annotation(&server, "web", DENY).unwrap(), "203.0.113.9/32");
    running.stop().await;

    // A third start has nothing pending and applies nothing twice, but still expires the ban
    // the previous one wrote.
    let patches = requests(&server, "PATCH").len();
    let running = start(Some(&server), &config, DryRun::Off, state.path());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        requests(&server, "PATCH").len(),
        patches,
        "nothing applied twice"
    );
    eventually("the recovered ban expires", || {
        annotation(&server, "web", DENY).is_none()
    })
    .await;
    assert!(annotation(&server, "web", LEDGER).is_none());
    running.stop().await;
}

#[tokio::test]
async fn a_longer_ban_extends_and_a_shorter_one_changes_nothing() {
    let server = serving_web(&[]).await;
    let state = tempfile::tempdir().unwrap();
    let mut running = start(Some(&server), &config(), DryRun::Off, state.path());
    running
        .publish(ban("203.0.113.9", Duration::from_secs(600)))
        .await;
    assert_eq!(outcome(&running.report().await), "applied");
    let first = ledger(&server, "web")["203.0.113.9/32"]["until"].clone();
    let patches = requests(&server, "PATCH").len();
    running
        .publish(waf_ban(
            "203.0.113.9",
            Some("shop.example"),
            Duration::from_secs(2400),
            2,
        ))
        .await;
    assert_eq!(outcome(&running.report().await), "applied");
    let entry = ledger(&server, "web")["203.0.113.9/32"].clone();
    assert!(
        entry["until"].as_str() > first.as_str(),
        "{entry} vs {first}"
    );
    assert_eq!(entry["offense"], 2);
    assert_eq!(annotation(&server, "web", DENY).unwrap(), "203.0.113.9/32");
    assert_eq!(requests(&server, "PATCH").len(), patches + 1);
    running.stop().await;

    // After a restart (in-force memory empty), a shorter ban is already covered.
    let mut running = start(Some(&server), &config(), DryRun::Off, state.path());
    running
        .publish(ban("203.0.113.9", Duration::from_secs(60)))
        .await;
    let report = running.report().await;
    assert_eq!(outcome(&report), "already_done", "{report:?}");
    assert_eq!(requests(&server, "PATCH").len(), patches + 1);
    running.stop().await;
}

#[tokio::test]
async fn quarantine_then_expiry_restores_the_users_value_exactly() {
    let server = ApiServer::start().await;
    server.create(
        "services",
        "shop",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "juice-shop"},
               "spec": {"selector": {"app": "juice-shop"}, "ports": [{"port": 80}]}}),
    );
    server.create(
        "services",
        "shop",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
               "spec": {"selector": {"app": "db"}, "ports": [{"port": 5432}]}}),
    );
    let user_allow = "10.0.0.0/8, 192.168.1.1";
    server.create(
        INGRESSES,
        "shop",
        ingress(
            "web",
            &["shop.example"],
            "juice-shop",
            &[(ALLOW, user_allow)],
        ),
    );
    server.create(
        INGRESSES,
        "shop",
        ingress("web-open", &["open.example"], "juice-shop", &[]),
    );
    server.create(
        INGRESSES,
        "shop",
        ingress("other", &["db.example"], "db", &[]),
    );
    let before = |name: &str| {
        server.get(INGRESSES, "shop", name).unwrap()["metadata"]["annotations"].clone()
    };
    let (web_before, open_before) = (before("web"), before("web-open"));

    let mut config = config();
    config.playbooks = vec![PlaybookConfig {
        name: "quarantine-app".into(),
        when: MatchConfig {
            origins: vec![Origin::Rules],
            ..MatchConfig::default()
        },
        actions: vec![ActionKind::Quarantine],
        ttl: Duration::from_secs(2),
        ..PlaybookConfig::default()
    }];
    let (mut running, _state) = agent(&server, &config, DryRun::Off);
    let mut shell = shell_in("shop", "juice-shop-1", Some("u-1"));
    let Subject::Pod(pod) = &mut shell.subject else {
        panic!()
    };
    pod.labels = [("app".to_owned(), "juice-shop".to_owned())].into();
    running.bus.publish(shell).await.unwrap();
    let report = running.report().await;
    assert_eq!(outcome(&report), "applied", "{report:?}");
    for name in ["web", "web-open"] {
        assert_eq!(
            annotation(&server, name, ALLOW).unwrap(),
            "192.0.2.1/32",
            "{name}"
        );
    }
    let record: serde_json::Value =
        serde_json::from_str(&annotation(&server, "web", QUARANTINE).unwrap()).unwrap();
    assert_eq!(record["previous"], user_allow);
    assert_eq!(record["node"], "node-a");
    assert!(
        annotation(&server, "other", ALLOW).is_none(),
        "another app's Ingress"
    );
    eventually_events(&server, "web", 1).await;
    assert_eq!(event_reasons(&server, "web").await, ["Quarantined"]);

    eventually("the quarantine expired", || {
        annotation(&server, "web", QUARANTINE).is_none()
            && annotation(&server, "web-open", QUARANTINE).is_none()
    })
    .await;
    assert_eq!(before("web"), web_before, "restored exactly");
    assert_eq!(before("web-open"), open_before, "no allowlist again");
    eventually_events(&server, "web", 2).await;
    assert!(has_event(&server, "web", "QuarantineLifted").await);
    eventually("both lifts counted", || {
        running.metric("youwatch_response_quarantines_lifted_total") == 2.0
    })
    .await;
    running.stop().await;
}

/// Runs the agent binary's `args` against `server`.
async fn agent_cli(server: &ApiServer, args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_youwatch-agent"))
        .args(args)
        .env("KUBECONFIG", server.write_kubeconfig(dir.path()))
        .env("HOME", dir.path())
        .env("NODE_NAME", "node-cli")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("YOUWATCH_CONFIG")
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `args`, which must succeed; its stdout.
async fn cli_ok(server: &ApiServer, args: &[&str]) -> String {
    let (ok, out, err) = agent_cli(server, args).await;
    assert!(ok, "{args:?}: {err}");
    out
}

/// Runs `args`, which must fail saying `expected` on stderr.
async fn cli_fails(server: &ApiServer, args: &[&str], expected: &str) {
    let (ok, _, err) = agent_cli(server, args).await;
    assert!(!ok && err.contains(expected), "{args:?}: {err}");
}

#[tokio::test]
async fn bans_unban_and_release_from_the_command_line() {
    let server = ApiServer::start().await;
    let ban = |node: &str| json!({"until": "2099-01-01T00:00:00Z", "offense": 2, "reason": "WAF attacker to ban (sqli)", "node": node});
    let web_ledger =
        json!({"203.0.113.9/32": ban("node-a"), "203.0.113.10/32": ban("node-b")}).to_string();
    let quarantine = json!({"previous": "10.0.0.0/8", "until": "2099-01-01T00:00:00Z", "reason": "shell", "node": "node-a"}).to_string();
    server.create(
        INGRESSES,
        "shop",
        ingress(
            "web",
            &["shop.example"],
            "juice-shop",
            &[
                (DENY, "1.2.3.4,203.0.113.9/32,203.0.113.10/32"),
                (LEDGER, &web_ledger),
                (ALLOW, "192.0.2.1/32"),
                (QUARANTINE, &quarantine),
            ],
        ),
    );
    let api_ledger = json!({"203.0.113.9/32": ban("node-b")}).to_string();
    server.create(
        INGRESSES,
        "shop",
        ingress(
            "api",
            &["api.example"],
            "api",
            &[(DENY, "203.0.113.9/32"), (LEDGER, &api_ledger)],
        ),
    );

    let out = cli_ok(&server, &["bans"]).await;
    for expected in [
        "INGRESS",
        "shop/web",
        "shop/api",
        "203.0.113.9/32",
        "203.0.113.10/32",
        "quarantine",
        "2099-01-01T00:00:00Z",
        "node-b",
        "restores allowlist \"10.0.0.0/8\"",
    ] {
        assert!(out.contains(expected), "{expected} missing:\n{out}");
    }
    let (ok, out, _) = agent_cli(&server, &["bans", "-o", "json"]).await;
    assert!(ok);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 4, "{out}");

    let out = cli_ok(&server, &["unban", "203.0.113.9"]).await;
    assert!(
        out.contains("shop/web: removed 203.0.113.9/32") && out.contains("shop/api: removed"),
        "{out}"
    );
    assert_eq!(
        annotation(&server, "web", DENY).unwrap(),
        "1.2.3.4,203.0.113.10/32"
    );
    assert_eq!(
        ledger(&server, "web").keys().collect::<Vec<_>>(),
        ["203.0.113.10/32"]
    );
    assert_eq!(annotation(&server, "api", DENY), None);
    assert_eq!(annotation(&server, "api", LEDGER), None);
    assert!(has_event(&server, "api", "SourceReleased").await);

    cli_fails(
        &server,
        &["unban", "203.0.113.9"],
        "203.0.113.9/32 is not denied by youwatch",
    )
    .await;
    cli_fails(&server, &["unban", "1.2.3.4"], "users wrote").await;
    assert!(
        annotation(&server, "web", DENY)
            .unwrap()
            .starts_with("1.2.3.4,"),
        "the user's entry stays"
    );
    cli_fails(&server, &["unban", "nope"], "\"nope\" is not an IP address").await;
    cli_fails(&server, &["unban", "203.0.113.0/24"], "range").await;

    let out = cli_ok(&server, &["release", "shop/web"]).await;
    assert!(
        out.contains("quarantine lifted") && out.contains("\"10.0.0.0/8\""),
        "{out}"
    );
    assert_eq!(annotation(&server, "web", ALLOW).unwrap(), "10.0.0.0/8");
    assert_eq!(annotation(&server, "web", QUARANTINE), None);
    assert!(has_event(&server, "web", "QuarantineLifted").await);
    cli_fails(
        &server,
        &["release", "shop/web"],
        "shop/web is not quarantined",
    )
    .await;
    cli_fails(
        &server,
        &["release", "shop/missing"],
        "shop/missing not found",
    )
    .await;
    cli_fails(
        &server,
        &["release", "web"],
        "\"web\" is not an Ingress as namespace/name",
    )
    .await;
}
