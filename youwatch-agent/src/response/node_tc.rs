//! DenyIp through the node ban (backend `node-tc`): the banned address becomes an IPBan, the
//! cluster's ban ledger, which every agent with `node_ban.enabled` enforces in its node's
//! kernel within a watch round-trip, and lifts at its expiry. The address passes the same
//! guard as on the Ingress (`response.allowlist`, reserved ranges); each node checks it again
//! against its own addresses and `node_ban.proxies`.
//!
//! The IPBan is per address, not per attacked host: the kernel sees packets, not Host headers.

use std::sync::Arc;

use super::{
    Finished,
    action::{Decided, DenyIp},
    config::ResponseConfig,
    dry_run::{DryRun, PlannedRequest, print_planned},
    ingress::{
        AddressGuard, failed,
        ledger::{format_time, short_reason, whole_seconds},
    },
    metrics::{Outcome, ResponseMetrics},
};
use crate::{
    cluster::ClusterContext,
    netban::{
        crd::{self, IpBan},
        ledger::{Ledger, Recorded},
    },
};

/// Takes DenyIp actions for the node-tc backend; cheap to clone.
#[derive(Clone)]
pub struct NodeTcBans {
    inner: Arc<Inner>,
}

struct Inner {
    ledger: Option<Ledger>,
    node: String,
    guard: AddressGuard,
    dry_run: DryRun,
    metrics: ResponseMetrics,
}

impl NodeTcBans {
    pub fn new(
        config: &ResponseConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
        metrics: ResponseMetrics,
    ) -> NodeTcBans {
        NodeTcBans {
            inner: Arc::new(Inner {
                ledger: cluster.as_ref().map(|c| Ledger {
                    client: c.client.clone(),
                    retry: config.retry.clone(),
                    server_dry_run: dry_run == DryRun::Server,
                }),
                node: cluster.map(|c| c.node_name.clone()).unwrap_or_default(),
                guard: AddressGuard::new(&config.allowlist, config.deny_ip.allow_loopback),
                dry_run,
                metrics,
            }),
        }
    }

    /// Creates or extends the IPBan of `d`'s address; resolves once written (or refused,
    /// or given up at the action's deadline).
    pub async fn run(&self, decided: &Decided, d: &DenyIp) -> Finished {
        let inner = &self.inner;
        let net = match inner.guard.check(d.ip) {
            Ok(net) => net,
            Err(why) => {
                inner.metrics.ingress.refused(why.reason());
                return Finished::new(Outcome::Refused, why.to_string());
            }
        };
        let until = whole_seconds(d.until);
        let spec = crd::spec(
            &net,
            until,
            &short_reason(&super::ingress::reason(decided)),
            &decided.evidence.summary(),
            &inner.node,
            d.offense,
            d.host.as_deref(),
        );
        let name = crd::name_for(&net);
        let what = format!(
            "{net} banned on every node until {} (IPBan {name})",
            format_time(until)
        );
        let dry = if decided.dry_run {
            DryRun::Client
        } else {
            inner.dry_run
        };
        let ledger = match (&inner.ledger, dry) {
            (Some(ledger), DryRun::Off | DryRun::Server) => ledger,
            _ => {
                let body = serde_json::to_value(IpBan::new(name, spec)).unwrap_or_default();
                let request = PlannedRequest {
                    method: "POST",
                    path: format!("/apis/{}/{}/{}", crd::GROUP, crd::VERSION, crd::PLURAL),
                    body,
                };
                print_planned(
                    decided,
                    &request,
                    Some(
                        "on 409 AlreadyExists the IPBan is read and extended if this ban lasts longer",
                    ),
                );
                return Finished::new(Outcome::DryRun, format!("would be {what}"));
            }
        };
        let kind = decided.action.kind();
        let on_retry = || inner.metrics.retry(kind);
        let applied = if dry == DryRun::Server {
            Outcome::DryRun
        } else {
            Outcome::Applied
        };
        match ledger.record(&spec, decided.give_up_at, &on_retry).await {
            Ok(Recorded::Created) => Finished::new(applied, what),
            Ok(Recorded::Extended { previous }) => Finished::new(
                applied,
                format!("{what}, extended from {}", format_time(previous)),
            ),
            Ok(Recorded::Covered { expires }) => Finished::new(
                Outcome::AlreadyDone,
                format!(
                    "{net} is already banned until {} (IPBan {name})",
                    format_time(expires)
                ),
            ),
            Err(f) => failed(&format!("writing IPBan {name}"), &f),
        }
    }
}
