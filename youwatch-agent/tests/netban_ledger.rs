//! The node ban's ledger (IPBan objects) against the test API server, through the real kube
//! client, with each node's deny table in memory (the kernel side is `netban_kernel.rs` and
//! `netban_cluster.rs`): a ban decided on one node reaches every node; expiry lifts it on
//! every node even when its author is gone, and the object is deleted once, by one agent; a
//! longer ban extends the object, a shorter one leaves it; agents racing on one address
//! converge; a delete never takes a ban extended meanwhile; `unban` and `bans`; the backend
//! each playbook names.

mod support;

use std::time::{Duration, SystemTime};

use kube::Api;
use support::{
    apiserver::{
        ApiError,
        faults::{Fault, Verb},
        resources::ResourceType,
    },
    node_ban::{
        IPBANS, Node, config, in_secs, ipbans, ledger, nodes, record, response_on_node_a, server,
    },
    response::{Running, eventually, ingress, waf_ban},
};
use youwatch_agent::{
    detection::Detection,
    netban::{crd::IpBan, ledger::Recorded},
    response::{DryRun, config::DenyBackend},
};

const ATTACKER: &str = "203.0.113.9";
const INGRESSES: &str = "networking.k8s.io/ingresses";
const LEDGER_ANNOTATION: &str = "youwatch.dev/denied-sources";

/// `response` bans ATTACKER on shop.example for 10 minutes, its `offense`-th offense; the
/// report.
async fn ban_attacker(response: &mut Running, offense: u32) -> Detection {
    response
        .publish(waf_ban(
            ATTACKER,
            Some("shop.example"),
            Duration::from_secs(600),
            offense,
        ))
        .await;
    response.report().await
}

#[tokio::test]
async fn a_ban_decided_on_one_node_holds_on_every_node() {
    let server = server().await;
    let [a, b] = nodes(&server, &config(), ["node-a", "node-b"]).await;
    let state = tempfile::tempdir().unwrap();
    let mut response =
        response_on_node_a(&server, &[DenyBackend::NodeTc], DryRun::Off, state.path());
    let report = ban_attacker(&mut response, 2).await;
    assert_eq!(
        report.output_fields["response.outcome"], "applied",
        "{report:?}"
    );
    eventually("both nodes hold the ban", || {
        a.holds() == ["203.0.113.9/32"] && b.holds() == ["203.0.113.9/32"]
    })
    .await;
    let stored = ipbans(&server).await;
    assert_eq!(stored.len(), 1);
    let ban = &stored[0];
    assert_eq!(ban.name(), "v4-203-0-113-9-32");
    assert_eq!(ban.spec.address, "203.0.113.9/32");
    assert_eq!(ban.spec.origin_node, "node-a");
    assert_eq!(ban.spec.offenses, 2);
    assert_eq!(ban.spec.host.as_deref(), Some("shop.example"));
    assert!(
        ban.spec.reason.contains("WAF attacker to ban"),
        "{:?}",
        ban.spec
    );
    assert!(
        ban.spec.evidence.contains("waf.client_ip=203.0.113.9"),
        "{:?}",
        ban.spec
    );
    // node-tc only: no Ingress was read or patched (the stage watches them anyway).
    assert!(
        !server.requests().iter().any(|r| r.contains("/ingresses/")),
        "{:#?}",
        server.requests()
    );
    response.stop().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn expiry_lifts_the_ban_everywhere_even_without_its_author() {
    let server = server().await;
    let [a, b, c] = nodes(&server, &config(), ["node-a", "node-b", "node-c"]).await;
    // node-a's ban, 2 s; then node-a is gone.
    let expires = in_secs(2);
    record(&ledger(&server), ATTACKER, expires, "node-a", 1).await;
    eventually("every node holds it", || {
        [&a, &b, &c].iter().all(|n| n.holds() == ["203.0.113.9/32"])
    })
    .await;
    a.stop().await;
    eventually("lifted on the other nodes at its expiry", || {
        b.holds().is_empty() && c.holds().is_empty()
    })
    .await;
    let lifted = SystemTime::now();
    assert!(lifted >= expires, "not before its expiry");
    assert!(
        lifted.duration_since(expires).unwrap() < Duration::from_millis(500),
        "lifted {:?} after its expiry",
        lifted.duration_since(expires).unwrap()
    );
    // The author is gone: one of the others deletes the object after gc_grace (+ spread).
    eventually("the expired object is deleted", || {
        server.get(IPBANS, "", "v4-203-0-113-9-32").is_none()
    })
    .await;
    let deletes = server
        .requests()
        .iter()
        .filter(|r| r.starts_with("DELETE") && r.contains("ipbans"))
        .count();
    assert!(
        (1..=2).contains(&deletes),
        "one agent deletes it (a second may race): {deletes}"
    );
    b.stop().await;
    c.stop().await;
}

#[tokio::test]
async fn the_author_deletes_at_expiry() {
    let server = server().await;
    let mut slow = config();
    slow.gc_grace = Duration::from_secs(3600);
    let [a, b] = nodes(&server, &slow, ["node-a", "node-b"]).await;
    record(&ledger(&server), ATTACKER, in_secs(1), "node-a", 1).await;
    eventually("deleted by its author at expiry", || {
        server.get(IPBANS, "", "v4-203-0-113-9-32").is_none()
    })
    .await;
    assert!(b.holds().is_empty() && a.holds().is_empty());
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_longer_ban_extends_a_shorter_one_changes_nothing() {
    let server = server().await;
    let ledger = ledger(&server);
    let first = in_secs(600);
    assert_eq!(
        record(&ledger, ATTACKER, first, "node-a", 1).await,
        Recorded::Created
    );
    let shorter = record(&ledger, ATTACKER, in_secs(60), "node-b", 1).await;
    assert_eq!(shorter, Recorded::Covered { expires: first });
    let longer = in_secs(3600);
    let extended = record(&ledger, ATTACKER, longer, "node-b", 3).await;
    assert_eq!(extended, Recorded::Extended { previous: first });
    let stored = ipbans(&server).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].parsed().unwrap().1, longer);
    assert_eq!(
        (stored[0].spec.origin_node.as_str(), stored[0].spec.offenses),
        ("node-b", 3)
    );
    // A repeat offense counted lower elsewhere keeps the higher count.
    record(&ledger, ATTACKER, in_secs(7200), "node-c", 1).await;
    assert_eq!(ipbans(&server).await[0].spec.offenses, 3);
}

#[tokio::test]
async fn a_conflict_is_re_read_and_an_expired_object_renewed() {
    let server = server().await;
    let ledger = ledger(&server);
    record(&ledger, ATTACKER, in_secs(60), "node-a", 5).await;
    // Someone writes between our read and our patch: 409, re-read, recomputed.
    server.inject(
        Fault::new(
            Verb::Patch,
            IPBANS,
            ApiError::conflict(
                &ResourceType::new("youwatch.dev", "v1alpha1", "ipbans", "IPBan", false),
                "v4-203-0-113-9-32",
                "the object has been modified; please apply your changes to the latest version and try again",
            ),
        )
        .times(1),
    );
    let r = record(&ledger, ATTACKER, in_secs(120), "node-b", 1).await;
    assert!(matches!(r, Recorded::Extended { .. }), "{r:?}");
    // An expired ban not deleted yet is renewed as a fresh one (its old count forgotten).
    server.modify(IPBANS, "", "v4-203-0-113-9-32", |o| {
        o["spec"]["expires"] = "2020-01-01T00:00:00Z".into();
    });
    let r = record(&ledger, ATTACKER, in_secs(60), "node-c", 1).await;
    assert!(matches!(r, Recorded::Extended { .. }), "{r:?}");
    let stored = &ipbans(&server).await[0];
    assert_eq!(
        (stored.spec.origin_node.as_str(), stored.spec.offenses),
        ("node-c", 1)
    );
}

#[tokio::test]
async fn agents_banning_the_same_address_at_once_converge_on_one_object() {
    let server = server().await;
    let ledger = ledger(&server);
    let longest = in_secs(900);
    let writes = (0..8u64).map(|i| {
        let ledger = ledger.clone();
        let expires = if i == 5 { longest } else { in_secs(300 + i) };
        async move { record(&ledger, ATTACKER, expires, &format!("node-{i}"), i as u32).await }
    });
    let results = futures::future::join_all(writes).await;
    assert_eq!(
        results.iter().filter(|r| **r == Recorded::Created).count(),
        1
    );
    let stored = ipbans(&server).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].parsed().unwrap().1,
        longest,
        "the longest ban wins"
    );
    assert_eq!(stored[0].spec.origin_node, "node-5");
}

#[tokio::test]
async fn a_ban_extended_meanwhile_is_never_deleted_as_expired() {
    let server = server().await;
    let ledger = ledger(&server);
    record(&ledger, ATTACKER, in_secs(1), "node-a", 1).await;
    let api: Api<IpBan> = Api::all(server.client());
    let seen = api.get("v4-203-0-113-9-32").await.unwrap();
    // A repeat offense extends it after the collector saw it expired...
    record(&ledger, ATTACKER, in_secs(600), "node-b", 2).await;
    // ... so its delete, made with the version it saw, is refused.
    assert!(!ledger.delete_expired(&seen, in_secs(10)).await.unwrap());
    assert!(server.get(IPBANS, "", "v4-203-0-113-9-32").is_some());
    let current = api.get("v4-203-0-113-9-32").await.unwrap();
    assert!(ledger.delete_expired(&current, in_secs(10)).await.unwrap());
    assert!(
        !ledger.delete_expired(&current, in_secs(10)).await.unwrap(),
        "gone: nothing to do"
    );
}

#[tokio::test]
async fn each_node_refuses_what_its_own_guard_refuses() {
    let server = server().await;
    let a = Node::start(&server, "node-a", &config(), &[]);
    // node-b's allowlist holds the address (another config, another cluster network).
    let b = Node::start(
        &server,
        "node-b",
        &config(),
        &["203.0.113.0/24".parse().unwrap()],
    );
    server.wait_for_watches(2, Duration::from_secs(10)).await;
    let ledger = ledger(&server);
    for (address, node) in [
        (ATTACKER, "node-a"),
        ("198.51.100.0/24", "user"),
        ("0.0.0.0/0", "user"),
    ] {
        record(&ledger, address, in_secs(600), node, 1).await;
    }
    eventually(
        "node-a holds the address and the /24, not 0.0.0.0/0",
        || a.holds() == ["198.51.100.0/24", "203.0.113.9/32"],
    )
    .await;
    eventually("node-b holds the /24 only", || {
        b.holds() == ["198.51.100.0/24"]
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// The backend each playbook names: the Ingress only, the IPBan only, or both.
#[tokio::test]
async fn each_playbook_bans_through_its_backends() {
    for (backends, on_ingress, ipban) in [
        (vec![DenyBackend::IngressAnnotation], true, false),
        (vec![DenyBackend::NodeTc], false, true),
        (
            vec![DenyBackend::IngressAnnotation, DenyBackend::NodeTc],
            true,
            true,
        ),
    ] {
        let server = server().await;
        server.create(
            INGRESSES,
            "shop",
            ingress("web", &["shop.example"], "juice-shop", &[]),
        );
        let state = tempfile::tempdir().unwrap();
        let mut response = response_on_node_a(&server, &backends, DryRun::Off, state.path());
        let report = ban_attacker(&mut response, 1).await;
        assert_eq!(
            report.output_fields["response.outcome"], "applied",
            "{backends:?}: {report:?}"
        );
        let annotated = server.get(INGRESSES, "shop", "web").unwrap()["metadata"]["annotations"]
            [LEDGER_ANNOTATION]
            .as_str()
            .is_some_and(|l| l.contains("203.0.113.9/32"));
        assert_eq!(annotated, on_ingress, "{backends:?}");
        assert_eq!(
            server.get(IPBANS, "", "v4-203-0-113-9-32").is_some(),
            ipban,
            "{backends:?}"
        );
        if backends.len() == 2 {
            let detail = report.output_fields["response.detail"].as_str().unwrap();
            assert!(
                detail.contains("ingress-annotation: ") && detail.contains("node-tc: "),
                "{detail}"
            );
        }
        response.stop().await;
    }
}

/// `--dry-run` prints the IPBan it would create and writes nothing.
#[tokio::test]
async fn dry_run_writes_no_ipban() {
    let server = server().await;
    let state = tempfile::tempdir().unwrap();
    let response = response_on_node_a(
        &server,
        &[DenyBackend::NodeTc],
        DryRun::Client,
        state.path(),
    );
    response
        .publish(waf_ban(ATTACKER, None, Duration::from_secs(600), 1))
        .await;
    eventually("planned", || {
        response.metric("youwatch_response_actions_total{action=\"deny_ip\",outcome=\"dry_run\"}")
            == 1.0
    })
    .await;
    response.stop().await;
    assert!(ipbans(&server).await.is_empty());
}

#[tokio::test]
async fn bans_lists_and_unban_removes_the_ipban_on_every_node() {
    let server = server().await;
    server.create(
        INGRESSES,
        "shop",
        ingress("web", &["shop.example"], "juice-shop", &[]),
    );
    let [a, b] = nodes(&server, &config(), ["node-a", "node-b"]).await;
    let state = tempfile::tempdir().unwrap();
    let mut response = response_on_node_a(
        &server,
        &[DenyBackend::IngressAnnotation, DenyBackend::NodeTc],
        DryRun::Off,
        state.path(),
    );
    ban_attacker(&mut response, 1).await;
    eventually("both nodes hold it", || {
        !a.holds().is_empty() && !b.holds().is_empty()
    })
    .await;

    let home = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(home.path());
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_youwatch-agent"));
        cmd.args(args)
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", home.path())
            .env_remove("YOUWATCH_CONFIG");
        cmd
    };
    let out = cli(&["bans", "-o", "json"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        rows.iter()
            .any(|r| r["ingress"] == "shop/web" && r["what"] == "203.0.113.9/32"),
        "{rows:?}"
    );
    assert!(
        rows.iter().any(|r| r["ipban"] == "v4-203-0-113-9-32"
            && r["node"] == "node-a"
            && r["offense"] == 1),
        "{rows:?}"
    );
    let table = cli(&["bans"]).output().await.unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(
        text.contains("IPBAN") && text.contains("v4-203-0-113-9-32"),
        "{text}"
    );

    let out = cli(&["unban", ATTACKER]).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("IPBan v4-203-0-113-9-32: removed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("shop/web: removed 203.0.113.9/32"),
        "{stdout}"
    );
    eventually("lifted on every node", || {
        a.holds().is_empty() && b.holds().is_empty()
    })
    .await;
    assert!(server.get(IPBANS, "", "v4-203-0-113-9-32").is_none());

    // A range banned by hand is unbanned by its range.
    record(&ledger(&server), "198.51.100.0/24", in_secs(600), "user", 0).await;
    eventually("held", || a.holds() == ["198.51.100.0/24"]).await;
    let out = cli(&["unban", "198.51.100.0/24"]).output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("lifted", || a.holds().is_empty()).await;
    let again = cli(&["unban", "198.51.100.0/24"]).output().await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("nor by any IPBan"));

    response.stop().await;
    a.stop().await;
    b.stop().await;
}
