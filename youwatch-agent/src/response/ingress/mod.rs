//! DenyIp and Quarantine through the Ingress (ingress-nginx annotations).
//!
//! - [`index`]: the managed Ingresses (a watch honouring `deny_ip.ingress_selector`) and
//!   which of them serve a host ([`hosts`], as ingress-nginx routes) or a pod's Services
//!   ([`backends`]); which Service a request reaches ([`routes`], for the correlation).
//! - [`address`]: which addresses may be denied at all (allowlist, reserved ranges).
//! - [`edit`]: the annotation change for a batch of operations, over [`source_list`] (the
//!   denylist as nginx parses it) and [`ledger`] (the agent's own records, so that expiry,
//!   `unban` and `release` undo only what an agent did).
//! - [`coalesce`]: one patch per Ingress per `deny_ip.coalesce` window; [`patch`]: sent
//!   with a resourceVersion precondition, re-read and recomputed on 409, transient errors
//!   retried.
//! - [`expiry`]: every agent removes expired entries on every managed Ingress.
//! - [`report`]: the Events; [`outcome`]: one result for an action over several Ingresses;
//!   [`plan`]: client dry-run.
//!
//! A DenyIp without a host (the WAF saw no Host header) goes on every managed Ingress: the
//! attacked server is unknown, and `deny_ip.ingress_selector` bounds where the agent writes.

mod address;
mod backends;
mod coalesce;
pub mod edit;
mod expiry;
mod hosts;
mod index;
pub mod ledger;
pub mod metrics;
mod outcome;
pub mod patch;
mod plan;
mod report;
mod routes;
mod source_list;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::join_all;
use kube::core::Selector;

pub use self::{
    address::{AddressGuard, parse_single},
    outcome::failed,
    report::Reporter,
};
pub(crate) use self::{
    backends::{read_pod, services_of_pod},
    index::IngressIndex,
    routes::RegexCache,
};
use self::{
    coalesce::{Coalescer, Done},
    edit::{Names, Op, Verdict},
    expiry::Expiry,
    ledger::{Denied, Quarantined, format_time, short_reason, whole_seconds},
    outcome::Tally,
    patch::{IngressKey, Patcher},
};
use super::{
    Finished,
    action::{Action, Decided, DenyIp, Quarantine, QuarantineTarget},
    config::{ResponseConfig, RetryConfig},
    dry_run::DryRun,
    events::EventSink,
    metrics::{Outcome, ResponseMetrics},
    retry::{ErrorClass, Failure},
};
use crate::{
    cluster::ClusterContext,
    inventory::labels::{LabelSelectorError, parse as parse_selector},
    stage::{StageHandle, StopSignal},
};

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("response.deny_ip.ingress_selector: {0}")]
    Selector(#[from] LabelSelectorError),
}

/// The Ingress side of the response, ready to run.
pub struct IngressResponder {
    inner: Inner,
    selector: Selector,
    coalesce: Duration,
}

/// What every action needs.
#[derive(Clone)]
struct Inner {
    cluster: Option<Arc<ClusterContext>>,
    dry_run: DryRun,
    guard: AddressGuard,
    names: Arc<Names>,
    retry: RetryConfig,
    reporter: Reporter,
    metrics: ResponseMetrics,
    index: Option<IngressIndex>,
    coalescer: Option<Coalescer>,
}

impl IngressResponder {
    pub fn new(
        config: &ResponseConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
        events: EventSink,
        metrics: ResponseMetrics,
    ) -> Result<IngressResponder, IngressError> {
        Ok(IngressResponder {
            selector: parse_selector(&config.deny_ip.ingress_selector)?,
            coalesce: config.deny_ip.coalesce,
            inner: Inner {
                cluster,
                dry_run,
                guard: AddressGuard::new(&config.allowlist, config.deny_ip.allow_loopback),
                names: Arc::new(Names::new(config)),
                retry: config.retry.clone(),
                reporter: Reporter { events },
                metrics,
                index: None,
                coalescer: None,
            },
        })
    }

    /// Starts its background work (Ingress watch, coalesced patches, expiry); the handle
    /// takes actions. Without a cluster there is nothing to start: actions are planned.
    pub fn spawn(self) -> (IngressHandle, StageHandle) {
        let stop = StopSignal::new();
        let mut inner = self.inner;
        let mut tasks = Vec::new();
        if let Some(cluster) = inner.cluster.clone() {
            let ingress_metrics = inner.metrics.ingress.clone();
            let (index, task) = IngressIndex::spawn(
                cluster.client.clone(),
                &self.selector,
                ingress_metrics.clone(),
                stop.clone(),
            );
            tasks.push(task);
            if inner.dry_run != DryRun::Client {
                let patcher = Arc::new(Patcher {
                    client: cluster.client.clone(),
                    retry: inner.retry.clone(),
                    names: (*inner.names).clone(),
                    server_dry_run: inner.dry_run == DryRun::Server,
                    metrics: ingress_metrics.clone(),
                });
                let metrics = inner.metrics.clone();
                let (coalescer, task) = Coalescer::spawn(
                    self.coalesce,
                    patcher,
                    index.clone(),
                    Arc::new(move || metrics.retry(super::action::ActionKind::DenyIp)),
                    stop.clone(),
                );
                tasks.push(task);
                // Dry-run changes nothing, so nothing expires.
                if inner.dry_run == DryRun::Off {
                    let expiry = Expiry {
                        index: index.clone(),
                        coalescer: coalescer.clone(),
                        names: inner.names.clone(),
                        reporter: inner.reporter.clone(),
                        metrics: ingress_metrics,
                    };
                    tasks.push(expiry.spawn(stop.clone()));
                }
                inner.coalescer = Some(coalescer);
            }
            inner.index = Some(index);
        }
        (
            IngressHandle {
                inner: Arc::new(inner),
            },
            StageHandle::tasks("ingress", stop, tasks, async {}),
        )
    }
}

/// Takes DenyIp and Quarantine actions; cheap to clone.
#[derive(Clone)]
pub struct IngressHandle {
    inner: Arc<Inner>,
}

/// Where an action goes.
enum Targets {
    /// No cluster: what would be resolved (`the Ingresses serving host shop.example`).
    Unresolved(String),
    Ingresses(Vec<IngressKey>),
}

impl IngressHandle {
    /// The managed Ingresses, when there is a cluster.
    pub(crate) fn index(&self) -> Option<IngressIndex> {
        self.inner.index.clone()
    }

    /// Carries out a DenyIp or Quarantine; resolves once applied (or refused, or given up).
    pub async fn run(&self, decided: &Decided) -> Finished {
        let dry = if decided.dry_run {
            DryRun::Client
        } else {
            self.inner.dry_run
        };
        match &decided.action {
            Action::DenyIp(d) => self.inner.deny(decided, d, dry).await,
            Action::Quarantine(q) => self.inner.quarantine(decided, q, dry).await,
            Action::DeletePod(_) => Finished::new(Outcome::Failed, "not an Ingress action"),
        }
    }
}

impl Inner {
    fn node(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| c.node_name.clone())
            .unwrap_or_default()
    }

    async fn deny(&self, decided: &Decided, d: &DenyIp, dry: DryRun) -> Finished {
        let net = match self.guard.check(d.ip) {
            Ok(net) => net,
            Err(why) => {
                self.metrics.ingress.refused(why.reason());
                return Finished::new(Outcome::Refused, why.to_string());
            }
        };
        let until = whole_seconds(d.until);
        let op = Op::Deny {
            net,
            entry: Denied {
                until,
                offense: d.offense,
                reason: short_reason(&reason(decided)),
                node: self.node(),
            },
        };
        let wanted = match &d.host {
            Some(host) => format!("the Ingresses serving host {host}"),
            None => "every managed Ingress".to_owned(),
        };
        let targets = match self
            .resolve(decided, &wanted, |index| index.serving(d.host.as_deref()))
            .await
        {
            Ok(t) => t,
            Err(finished) => return finished,
        };
        let what = format!("client {net} until {}", format_time(until));
        self.carry_out(decided, dry, targets, op, &what).await
    }

    async fn quarantine(&self, decided: &Decided, q: &Quarantine, dry: DryRun) -> Finished {
        let until = whole_seconds(q.until);
        let op = Op::Quarantine(Quarantined {
            previous: None,
            until,
            reason: short_reason(&reason(decided)),
            node: self.node(),
        });
        let targets = match &q.target {
            QuarantineTarget::Host { host } => {
                let wanted = format!("the Ingresses serving host {host}");
                self.resolve(decided, &wanted, |index| index.serving(Some(host)))
                    .await
            }
            QuarantineTarget::Pod {
                namespace,
                name,
                labels,
            } => {
                self.ingresses_of_pod(decided, namespace, name, labels)
                    .await
            }
        };
        let targets = match targets {
            Ok(t) => t,
            Err(finished) => return finished,
        };
        let what = format!("quarantine until {}", format_time(until));
        self.carry_out(decided, dry, targets, op, &what).await
    }

    /// The index, once listed (or the Finished saying why not).
    async fn ready_index(&self, decided: &Decided) -> Result<Option<&IngressIndex>, Finished> {
        let Some(index) = &self.index else {
            return Ok(None);
        };
        if !index.ready(decided.give_up_at).await {
            return Err(Finished::new(
                Outcome::GaveUp,
                "the Ingresses could not be listed before the action's deadline",
            ));
        }
        Ok(Some(index))
    }

    /// The Ingresses `find` picks from the index; none is a refusal naming `wanted`.
    async fn resolve(
        &self,
        decided: &Decided,
        wanted: &str,
        find: impl FnOnce(&IngressIndex) -> Vec<IngressKey>,
    ) -> Result<Targets, Finished> {
        let Some(index) = self.ready_index(decided).await? else {
            return Ok(Targets::Unresolved(wanted.to_owned()));
        };
        let keys = find(index);
        if keys.is_empty() {
            return Err(Finished::new(
                Outcome::Refused,
                format!(
                    "no Ingress found: {wanted} (among the {} Ingress(es) matching response.deny_ip.ingress_selector)",
                    index.len()
                ),
            ));
        }
        Ok(Targets::Ingresses(keys))
    }

    async fn ingresses_of_pod(
        &self,
        decided: &Decided,
        namespace: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Targets, Finished> {
        let wanted =
            format!("the Ingresses routing to a Service that selects pod {namespace}/{name}");
        let (Some(index), Some(cluster)) = (self.ready_index(decided).await?, &self.cluster) else {
            return Ok(Targets::Unresolved(wanted));
        };
        let kind = decided.action.kind();
        let keys = backends::ingresses_of_pod(
            &cluster.client,
            index,
            &self.retry,
            decided.give_up_at,
            |_| self.metrics.retry(kind),
            (namespace, name, labels),
        )
        .await
        .map_err(|f| match f.class {
            ErrorClass::NotFound => Finished::new(
                Outcome::Refused,
                format!("pod {namespace}/{name} no longer exists and its labels are unknown"),
            ),
            _ => failed("finding the pod's Services", &f),
        })?;
        if keys.is_empty() {
            return Err(Finished::new(
                Outcome::Refused,
                format!("no Ingress found: {wanted}"),
            ));
        }
        Ok(Targets::Ingresses(keys))
    }

    async fn carry_out(
        &self,
        decided: &Decided,
        dry: DryRun,
        targets: Targets,
        op: Op,
        what: &str,
    ) -> Finished {
        let keys = match targets {
            Targets::Unresolved(wanted) => {
                return plan::plan_unresolved(&self.names, decided, &op, &wanted);
            }
            Targets::Ingresses(keys) => keys,
        };
        let results: Vec<(IngressKey, Result<Done, Failure>)> = match (dry, &self.coalescer) {
            (DryRun::Off | DryRun::Server, Some(coalescer)) => {
                let sent = keys
                    .iter()
                    .map(|key| coalescer.submit(key.clone(), op.clone(), decided.give_up_at));
                keys.iter().cloned().zip(join_all(sent).await).collect()
            }
            _ => keys
                .iter()
                .map(|key| {
                    let done = plan::plan(&self.names, self.index.as_ref(), decided, key, &op);
                    (key.clone(), Ok(done))
                })
                .collect(),
        };
        let mut tally = Tally::default();
        for (key, result) in results {
            self.account(decided, dry, &key, &op, result, &mut tally);
        }
        tally.finish(dry, what)
    }

    /// Reports one Ingress's result: Event, log line, metrics, and the tally.
    fn account(
        &self,
        decided: &Decided,
        dry: DryRun,
        key: &IngressKey,
        op: &Op,
        result: Result<Done, Failure>,
        tally: &mut Tally,
    ) {
        // Client dry-run writes nothing, Events included.
        let report = dry != DryRun::Client;
        let done = match result {
            Ok(done) => done,
            Err(f) if f.class == ErrorClass::NotFound => {
                tally.already.push(format!("{key} was deleted"));
                return;
            }
            Err(f) => {
                tracing::debug!(ingress = %key, error = %f, "Ingress not patched");
                tally.failed.push((key.to_string(), f));
                return;
            }
        };
        match (done.verdict, op) {
            (Verdict::Denied { extended }, Op::Deny { net, entry }) => {
                if report {
                    self.reporter
                        .denied(key, done.uid, decided, net, entry.until, extended);
                }
                tracing::debug!(ingress = %key, address = %net, until = format_time(entry.until), extended, "client denied on the Ingress");
                tally.applied.push(key.to_string());
            }
            (Verdict::Quarantined { extended }, Op::Quarantine(q)) => {
                if report {
                    self.reporter
                        .quarantined(key, done.uid, decided, q.until, extended);
                }
                tracing::debug!(ingress = %key, until = format_time(q.until), extended, "Ingress quarantined");
                tally.applied.push(key.to_string());
            }
            (Verdict::Refused { why, detail }, op) => {
                self.metrics.ingress.refused(why.as_str());
                let reason = match op {
                    Op::Quarantine(_) => "QuarantineRefused",
                    _ => "DenyRefused",
                };
                if report {
                    self.reporter
                        .refused(key, done.uid, reason, decided, &detail);
                }
                tracing::debug!(ingress = %key, reason = why.as_str(), detail, "Ingress not changed");
                tally.refused.push(format!("{key}: {detail}"));
            }
            (Verdict::AlreadyDenied(why) | Verdict::AlreadyQuarantined(why), _) => {
                tally.already.push(format!("{key}: {why}"));
            }
            (other, _) => tally.already.push(format!("{key}: {other:?}")),
        }
    }
}

/// The reason kept in a record: the rule, and the WAF classes when known.
pub(crate) fn reason(decided: &Decided) -> String {
    match decided.evidence.fields.get("waf.classes") {
        Some(serde_json::Value::String(c)) => format!("{} ({c})", decided.evidence.rule),
        _ => decided.evidence.rule.clone(),
    }
}
