//! `youwatch-agent bans`, `unban IP` and `release NAMESPACE/NAME`: the agents' bans and
//! quarantines as the cluster holds them (the ledgers on the Ingresses, and the IPBans of the
//! node ban), and undoing them by hand: on an Ingress with the same patch as expiry
//! (resourceVersion precondition, re-read on 409), so a user's entries and other agents'
//! entries are never touched; an IPBan is deleted, and every node lifts it.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};

use super::ConfigArg;
use crate::{
    cluster::ClusterContext,
    netban::{crd::IpBan, kernel::table::normalize, ledger::Ledger},
    response::{
        ResponseConfig,
        events::EventSink,
        ingress::{
            Reporter,
            edit::{Names, Op, Verdict},
            ledger::{DenyLedger, Quarantined, format_time},
            metrics::IngressMetrics,
            parse_single,
            patch::{IngressKey, Patcher, annotations},
        },
        metrics::ResponseMetrics,
        retry::{ErrorClass, Failure},
    },
};

/// Where these commands find the cluster and what they read from `--config`.
pub const CLUSTER_HELP: &str = "The cluster is $KUBECONFIG, ~/.kube/config, or the pod's service \
    account. --config gives the annotation names and retry settings (its `response:` section).";

/// How long `unban` and `release` retry an unreachable or busy API server.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct BansArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// table (for people) or json (one object per line).
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Args)]
pub struct UnbanArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The address to let in again, e.g. 203.0.113.9 or 2001:db8::1 (a range such as
    /// 198.51.100.0/24: its IPBan).
    #[arg(value_name = "IP")]
    pub ip: String,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The quarantined Ingress, as namespace/name (e.g. shop/juice-shop).
    #[arg(value_name = "NAMESPACE/NAME")]
    pub ingress: String,
}

/// One ban or quarantine, as `bans` prints it: on an Ingress, or an IPBan (every node).
#[derive(Debug, serde::Serialize)]
struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ipban: Option<String>,
    /// The denied address, or "quarantine".
    what: String,
    until: String,
    left: String,
    offense: Option<u32>,
    node: String,
    reason: String,
}

/// What the three commands share: the cluster, the config, the patcher, the Events.
struct Session {
    config: ResponseConfig,
    names: Names,
    client: kube::Client,
    reporter: Reporter,
    ledger: Ledger,
}

impl Session {
    /// The `response:` section of `--config` gives the annotation names and retry settings.
    async fn open(args: &ConfigArg) -> anyhow::Result<Session> {
        let config = args.load()?;
        // kube's error repeats its causes in its chain: its top line says it all.
        let client = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!(
                "no cluster to read the bans from ({e}): set $KUBECONFIG, or run in a pod with a service account"
            )
        })?;
        let cluster = Arc::new(ClusterContext::new(client.clone(), config.node_name()));
        let metrics = ResponseMetrics::default();
        let events = EventSink::new(
            Some(cluster),
            false,
            metrics.events_sent.clone(),
            metrics.events_failed.clone(),
        );
        Ok(Session {
            names: Names::new(&config.response),
            ledger: Ledger {
                client: client.clone(),
                retry: config.response.retry.clone(),
                server_dry_run: false,
            },
            config: config.response,
            client,
            reporter: Reporter { events },
        })
    }

    fn patcher(&self) -> Patcher {
        Patcher {
            client: self.client.clone(),
            retry: self.config.retry.clone(),
            names: self.names.clone(),
            server_dry_run: false,
            metrics: IngressMetrics::default(),
        }
    }

    /// Every Ingress of the cluster (a ledger may sit on one no longer selected).
    async fn ingresses(&self) -> anyhow::Result<Vec<Ingress>> {
        let api: Api<Ingress> = crate::cluster::rbac::INGRESS_WATCH.all(self.client.clone());
        Ok(api
            .list(&ListParams::default())
            .await
            .context("listing the Ingresses")?
            .items)
    }

    /// Every IPBan; none when the cluster does not serve them (the CRD is not installed).
    async fn ipbans(&self) -> anyhow::Result<Vec<IpBan>> {
        let deadline = SystemTime::now() + DEADLINE;
        match self.ledger.list(deadline).await {
            Ok(bans) => Ok(bans.unwrap_or_default()),
            Err(f) => bail!("listing the IPBans: {f}"),
        }
    }

    /// Applies `op` to `ingress` (re-read on conflict, transient errors retried).
    async fn apply(
        &self,
        key: &IngressKey,
        known: Option<Ingress>,
        op: Op,
    ) -> Result<(Verdict, Option<String>), Failure> {
        let deadline = SystemTime::now() + DEADLINE;
        let applied = self
            .patcher()
            .apply(key, known, std::slice::from_ref(&op), deadline, &|| {})
            .await?;
        let uid = applied.ingress.metadata.uid.clone();
        let verdict = applied
            .edit
            .verdicts
            .into_iter()
            .next()
            .unwrap_or(Verdict::NothingToRemove);
        Ok((verdict, uid))
    }
}

/// `youwatch-agent bans`.
pub fn bans(args: BansArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let session = Session::open(&args.config).await?;
        let now = SystemTime::now();
        let mut rows = Vec::new();
        for ingress in session.ingresses().await? {
            rows.extend(rows_of(&ingress, &session.names, now));
        }
        let ipbans = session.ipbans().await?;
        let node_rows: Vec<Row> = ipbans.iter().map(|b| ipban_row(b, now)).collect();
        match args.output {
            Output::Json => {
                for row in rows.iter().chain(&node_rows) {
                    println!("{}", serde_json::to_string(row)?);
                }
            }
            Output::Table => {
                print_table(&rows, "INGRESS", "no bans or quarantines on Ingresses");
                println!();
                print_table(&node_rows, "IPBAN", "no IPBans (node bans)");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `youwatch-agent unban IP`.
pub fn unban(args: UnbanArgs) -> anyhow::Result<ExitCode> {
    // A range can only be an IPBan: the Ingress ledgers hold single addresses.
    let range = crate::netban::crd::parse_address(&args.ip)
        .map(normalize)
        .map_err(|_| anyhow::anyhow!("unban: {:?} is not an IP address or range (e.g. 203.0.113.9, 2001:db8::1 or 198.51.100.0/24)", args.ip))?;
    let single = parse_single(&args.ip).ok();
    runtime()?.block_on(async {
        let session = Session::open(&args.config).await?;
        let mut removed = 0;
        for ban in session.ipbans().await? {
            let matches = ban.parsed().is_ok_and(|(n, _)| normalize(n) == range);
            if !matches {
                continue;
            }
            let deadline = SystemTime::now() + DEADLINE;
            match session.ledger.delete(&ban, deadline).await {
                Ok(true) => {
                    println!(
                        "IPBan {}: removed {} (banned by {} until {}); every node lifts it",
                        ban.name(),
                        ban.spec.address,
                        ban.spec.origin_node,
                        ban.spec.expires
                    );
                    removed += 1;
                }
                Ok(false) => {}
                Err(f) => bail!("unban {range}: deleting IPBan {}: {f}", ban.name()),
            }
        }
        let ingresses = match single {
            Some(_) => session.ingresses().await?,
            None => Vec::new(),
        };
        let net = single.unwrap_or(range);
        for ingress in ingresses {
            let key = IngressKey::of(&ingress);
            if !denies(&ingress, &session.names, &net) {
                continue;
            }
            match session.apply(&key, Some(ingress), Op::Unban(net)).await {
                Ok((Verdict::Removed { released, .. }, uid)) => {
                    for (net, d) in &released {
                        println!("{key}: removed {net} (denied by {} until {})", d.node, format_time(d.until));
                    }
                    removed += released.len();
                    session.reporter.released(&key, uid, &released, "unbanned with `youwatch-agent unban`");
                }
                Ok(_) => {}
                Err(f) if f.class == ErrorClass::NotFound => {}
                Err(f) => bail!("unban {net} on {key}: {f}"),
            }
        }
        session.reporter.events.settled().await;
        if removed == 0 {
            bail!(
                "unban: {net} is not denied by youwatch on any Ingress (annotation {}) nor by any IPBan; entries users wrote in {} are theirs to remove",
                session.names.deny_ledger,
                session.names.denylist
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `youwatch-agent release NAMESPACE/NAME`.
pub fn release(args: ReleaseArgs) -> anyhow::Result<ExitCode> {
    let key = parse_key(&args.ingress)?;
    runtime()?.block_on(async {
        let session = Session::open(&args.config).await?;
        match session.apply(&key, None, Op::Release).await {
            Ok((
                Verdict::Removed {
                    lifted: Some(lifted),
                    ..
                },
                uid,
            )) => {
                match &lifted.allowlist {
                    Some(v) => println!(
                        "{key}: quarantine lifted; {} is {v:?} again",
                        session.names.allowlist
                    ),
                    None => println!(
                        "{key}: quarantine lifted; {} removed (there was none before)",
                        session.names.allowlist
                    ),
                }
                session.reporter.lifted(
                    &key,
                    uid,
                    &lifted,
                    "released with `youwatch-agent release`",
                );
                session.reporter.events.settled().await;
                Ok(ExitCode::SUCCESS)
            }
            Ok(_) => bail!(
                "release: Ingress {key} is not quarantined by youwatch (no annotation {})",
                session.names.quarantine_ledger
            ),
            Err(f) if f.class == ErrorClass::NotFound => {
                bail!("release: Ingress {key} not found")
            }
            Err(f) => bail!("release {key}: {f}"),
        }
    })
}

/// `namespace/name`.
fn parse_key(text: &str) -> anyhow::Result<IngressKey> {
    match text.split_once('/') {
        Some((namespace, name))
            if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
        {
            Ok(IngressKey {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
        }
        _ => bail!("release: {text:?} is not an Ingress as namespace/name (e.g. shop/juice-shop)"),
    }
}

/// Whether the agents' ledger on `ingress` holds `net`.
fn denies(ingress: &Ingress, names: &Names, net: &IpNet) -> bool {
    let a = annotations(ingress);
    DenyLedger::parse(a.get(&names.deny_ledger).map(String::as_str))
        .is_ok_and(|l| l.entries.contains_key(net))
}

/// The bans and quarantine on one Ingress; a ledger that cannot be read is named on stderr.
fn rows_of(ingress: &Ingress, names: &Names, now: SystemTime) -> Vec<Row> {
    let key = IngressKey::of(ingress);
    let a = annotations(ingress);
    let get = |k: &String| a.get(k).map(String::as_str);
    let left = |until| left(until, now);
    let mut rows = Vec::new();
    match DenyLedger::parse(get(&names.deny_ledger)) {
        Ok(ledger) => rows.extend(ledger.entries.into_iter().map(|(net, d)| Row {
            ingress: Some(key.to_string()),
            ipban: None,
            what: net.to_string(),
            until: format_time(d.until),
            left: left(d.until),
            offense: Some(d.offense),
            node: d.node,
            reason: d.reason,
        })),
        Err(e) => eprintln!("warning: {key}: annotation {} is {e}", names.deny_ledger),
    }
    match Quarantined::parse(get(&names.quarantine_ledger)) {
        Ok(Some(q)) => rows.push(Row {
            ingress: Some(key.to_string()),
            ipban: None,
            what: "quarantine".into(),
            until: format_time(q.until),
            left: left(q.until),
            offense: None,
            node: q.node,
            reason: match &q.previous {
                Some(p) => format!("{} (restores allowlist {p:?})", q.reason),
                None => format!("{} (restores no allowlist)", q.reason),
            },
        }),
        Ok(None) => {}
        Err(e) => eprintln!(
            "warning: {key}: annotation {} is {e}",
            names.quarantine_ledger
        ),
    }
    rows
}

/// What is left of a ban at `now`: `39m 5s`, or `expired`.
fn left(until: SystemTime, now: SystemTime) -> String {
    match until.duration_since(now) {
        Ok(d) => humantime::format_duration(Duration::from_secs(d.as_secs())).to_string(),
        Err(_) => "expired".into(),
    }
}

/// An IPBan as a row; an object that cannot be read says why in its UNTIL.
fn ipban_row(ban: &IpBan, now: SystemTime) -> Row {
    let (what, until, left) = match ban.parsed() {
        Ok((net, until)) => (net.to_string(), format_time(until), left(until, now)),
        Err(e) => (ban.spec.address.clone(), e, "-".into()),
    };
    Row {
        ingress: None,
        ipban: Some(ban.name().to_owned()),
        what,
        until,
        left,
        offense: Some(ban.spec.offenses),
        node: ban.spec.origin_node.clone(),
        reason: ban.spec.reason.clone(),
    }
}

fn print_table(rows: &[Row], first: &'static str, none: &str) {
    if rows.is_empty() {
        println!("{none}");
        return;
    }
    let header = [
        first, "DENIED", "UNTIL", "LEFT", "OFFENSE", "NODE", "REASON",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.ingress
                    .clone()
                    .or_else(|| r.ipban.clone())
                    .unwrap_or_default(),
                r.what.clone(),
                r.until.clone(),
                r.left.clone(),
                r.offense.map_or("-".into(), |o| o.to_string()),
                r.node.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[&str]| {
        let mut out = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i + 1 == cols.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(&header);
    for row in &cells {
        line(&row.each_ref().map(String::as_str));
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_names_are_namespace_slash_name() {
        assert_eq!(parse_key("shop/web").unwrap().to_string(), "shop/web");
        for bad in ["web", "/web", "shop/", "a/b/c"] {
            let err = parse_key(bad).unwrap_err().to_string();
            assert!(
                err.contains(&format!("{bad:?}")) && err.contains("namespace/name"),
                "{err}"
            );
        }
    }

    #[test]
    fn rows_show_bans_and_quarantine() {
        let names = Names::new(&ResponseConfig::default());
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "youwatch.dev/denied-sources": r#"{"203.0.113.9/32":{"until":"1970-01-01T00:01:40Z","offense":3,"reason":"WAF","node":"node-a"}}"#,
                "youwatch.dev/quarantine": r#"{"previous":"10.0.0.0/8","until":"1970-01-01T01:00:00Z","reason":"shell","node":"node-b"}"#,
            }},
        }))
        .unwrap();
        let now = std::time::UNIX_EPOCH + Duration::from_secs(200);
        let rows = rows_of(&ingress, &names, now);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].what.as_str(), rows[0].left.as_str()),
            ("203.0.113.9/32", "expired")
        );
        assert_eq!(rows[1].left, "56m 40s");
        assert!(rows[1].reason.contains("\"10.0.0.0/8\""), "{:?}", rows[1]);
    }
}
