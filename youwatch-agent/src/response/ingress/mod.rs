//! DenyIp and Quarantine through the Ingress (ingress-nginx annotations).
//!
//! - [`index`]: the managed Ingresses (a watch honouring `deny_ip.ingress_selector`) and
//!   which of them serve a host ([`hosts`], as ingress-nginx routes) or a pod's Services
//!   ([`backends`]).
//! - [`address`]: which addresses may be denied at all (allowlist, reserved ranges).
//! - [`edit`]: the annotation change for a batch of operations, over [`source_list`] (the
//!   denylist as nginx parses it) and [`ledger`] (the agent's own records, so that expiry,
//!   `unban` and `release` undo only what an agent did).
//! - [`coalesce`]: one patch per Ingress per `deny_ip.coalesce` window; [`patch`]: sent
//!   with a resourceVersion precondition, re-read and recomputed on 409, transient errors
//!   retried.
//! - [`expiry`]: every agent removes expired entries on every managed Ingress.
//! - [`report`]: the Events.
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
pub mod patch;
mod report;
mod source_list;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use futures::future::join_all;
use kube::core::Selector;

use self::{
    address::AddressGuard,
    coalesce::{Coalescer, Done},
    edit::{Names, Op, Verdict},
    expiry::Expiry,
    index::IngressIndex,
    ledger::{Denied, Quarantined, format_time, short_reason, whole_seconds},
    patch::{IngressKey, Patcher},
};
pub use self::{address::parse_single, report::Reporter};
use super::{
    Finished,
    action::{Action, Decided, DenyIp, Quarantine, QuarantineTarget},
    config::{ResponseConfig, RetryConfig},
    dry_run::{DryRun, PlannedRequest, print_planned},
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
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                stop.stopped().await;
                for task in tasks {
                    let _ = task.await;
                }
            }
        });
        (
            IngressHandle {
                inner: Arc::new(inner),
            },
            StageHandle::task("ingress", stop, task),
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
            Targets::Unresolved(wanted) => return self.plan_unresolved(decided, &op, &wanted),
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
                .map(|key| (key.clone(), Ok(self.plan(decided, key, &op))))
                .collect(),
        };
        let mut tally = Tally::default();
        for (key, result) in results {
            self.account(decided, dry, &key, &op, result, &mut tally);
        }
        tally.finish(dry, what)
    }

    /// Client dry-run: prints the PATCH the current annotations call for.
    fn plan(&self, decided: &Decided, key: &IngressKey, op: &Op) -> Done {
        let known = self.index.as_ref().and_then(|i| i.get(key));
        let annotations = known.as_deref().map(patch::annotations).unwrap_or_default();
        let mut e = edit::edit(&annotations, &self.names, std::slice::from_ref(op));
        if !e.changes.is_empty() {
            print_planned(
                decided,
                &patch::planned(key, known.as_deref(), &e),
                Some(
                    "JSON merge patch (application/merge-patch+json); on 409 Conflict the Ingress is re-read and the change recomputed",
                ),
            );
        }
        Done {
            verdict: e.verdicts.pop().unwrap_or(Verdict::NothingToRemove),
            uid: known.and_then(|i| i.metadata.uid.clone()),
        }
    }

    /// Client dry-run without a cluster: the change to an Ingress without annotations.
    fn plan_unresolved(&self, decided: &Decided, op: &Op, wanted: &str) -> Finished {
        let e = edit::edit(&BTreeMap::new(), &self.names, std::slice::from_ref(op));
        let request = PlannedRequest {
            method: "PATCH",
            path: format!("/apis/networking.k8s.io/v1/namespaces/<namespace>/ingresses/<{wanted}>"),
            body: patch::patch_body(None, &e.changes),
        };
        let note = format!(
            "no cluster: {wanted} and their annotations cannot be read; the body is the change to an Ingress without them (the user's entries are kept, resourceVersion is the one read)"
        );
        print_planned(decided, &request, Some(&note));
        Finished::new(Outcome::DryRun, "planned (client dry-run, no cluster)")
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

/// The per-Ingress results of one action.
#[derive(Default)]
struct Tally {
    applied: Vec<String>,
    already: Vec<String>,
    refused: Vec<String>,
    failed: Vec<(String, Failure)>,
}

impl Tally {
    /// One outcome: a failure anywhere fails the action (a later detection retries; the
    /// Ingresses already done then say so), else applied anywhere, else refused, else
    /// already done. The detail (logged by the stage, in the action alert) names each
    /// Ingress and why.
    fn finish(self, dry: DryRun, what: &str) -> Finished {
        let mut parts = Vec::new();
        if !self.applied.is_empty() {
            parts.push(format!("{what} on {}", listed(&self.applied, ", ")));
        }
        if !self.refused.is_empty() {
            parts.push(format!("refused on {}", listed(&self.refused, "; ")));
        }
        if !self.already.is_empty() {
            parts.push(format!("nothing to do on {}", listed(&self.already, "; ")));
        }
        let failed: Vec<String> = self
            .failed
            .iter()
            .map(|(key, f)| format!("{key}: {f}"))
            .collect();
        if !failed.is_empty() {
            parts.push(format!("failed on {}", listed(&failed, "; ")));
        }
        let detail = parts.join("; ");
        let outcome = if !self.failed.is_empty() {
            if self
                .failed
                .iter()
                .any(|(_, f)| f.class == ErrorClass::Transient)
            {
                Outcome::GaveUp
            } else {
                Outcome::Failed
            }
        } else if !self.applied.is_empty() {
            if dry == DryRun::Off {
                Outcome::Applied
            } else {
                Outcome::DryRun
            }
        } else if !self.refused.is_empty() {
            Outcome::Refused
        } else {
            Outcome::AlreadyDone
        };
        Finished::new(outcome, detail)
    }
}

/// Ingresses named in an action's detail at most (a host-less ban may touch them all).
const MAX_LISTED: usize = 10;

/// `items` joined, the first [`MAX_LISTED`] of them.
fn listed(items: &[String], separator: &str) -> String {
    let mut text = items[..items.len().min(MAX_LISTED)].join(separator);
    if items.len() > MAX_LISTED {
        text.push_str(&format!("{separator}and {} more", items.len() - MAX_LISTED));
    }
    text
}

fn failed(doing: &str, f: &Failure) -> Finished {
    let outcome = if f.class == ErrorClass::Transient {
        Outcome::GaveUp
    } else {
        Outcome::Failed
    };
    Finished::new(outcome, format!("{doing}: {f}"))
}

/// The reason kept in a record: the rule, and the WAF classes when known.
fn reason(decided: &Decided) -> String {
    match decided.evidence.fields.get("waf.classes") {
        Some(serde_json::Value::String(c)) => format!("{} ({c})", decided.evidence.rule),
        _ => decided.evidence.rule.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(class: ErrorClass) -> Failure {
        Failure {
            class,
            message: "m".into(),
        }
    }

    #[test]
    fn a_failure_anywhere_fails_the_action_else_applied_wins() {
        let tally = |applied: &[&str], refused: &[&str], failed: Option<ErrorClass>| Tally {
            applied: applied.iter().map(|s| s.to_string()).collect(),
            already: vec!["shop/c: denied".into()],
            refused: refused.iter().map(|s| s.to_string()).collect(),
            failed: failed
                .map(|c| vec![("shop/d".to_owned(), failure(c))])
                .unwrap_or_default(),
        };
        let off = DryRun::Off;
        let f = tally(&["shop/a"], &["shop/b: full"], None).finish(off, "client x");
        assert_eq!(f.outcome, Outcome::Applied);
        assert_eq!(
            f.detail,
            "client x on shop/a; refused on shop/b: full; nothing to do on shop/c: denied"
        );
        let t = tally(&["shop/a"], &[], Some(ErrorClass::Transient));
        assert_eq!(t.finish(off, "x").outcome, Outcome::GaveUp);
        let t = tally(&[], &["shop/b"], Some(ErrorClass::Permanent));
        assert_eq!(t.finish(off, "x").outcome, Outcome::Failed);
        assert_eq!(
            tally(&[], &["b"], None).finish(off, "x").outcome,
            Outcome::Refused
        );
        assert_eq!(
            tally(&[], &[], None).finish(off, "x").outcome,
            Outcome::AlreadyDone
        );
        assert_eq!(
            tally(&["a"], &[], None).finish(DryRun::Server, "x").outcome,
            Outcome::DryRun
        );
    }

    #[test]
    fn long_lists_are_cut() {
        let items: Vec<String> = (0..12).map(|i| format!("ns/i{i}")).collect();
        let text = listed(&items, ", ");
        assert!(
            text.starts_with("ns/i0, ns/i1") && text.ends_with("ns/i9, and 2 more"),
            "{text}"
        );
    }
}
