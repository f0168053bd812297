//! Kubernetes Events for every action (`kubectl describe pod/ingress` shows what the agent did
//! and why): `events.k8s.io/v1`, type Warning, on the object acted on, one Event per action
//! (not aggregated into a series: each carries its own evidence).
//!
//! Events are reports, not actions: they are sent in the background, bounded, and a failure
//! is counted and logged, never retried at the expense of the next action.

use std::sync::Arc;

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::api::{Api, PostParams};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use crate::cluster::{ClusterContext, REPORTING_CONTROLLER, rbac};

/// Events being sent at once at most; more are dropped (counted).
const IN_FLIGHT: usize = 64;
/// Longest note the API server accepts (events.k8s.io/v1 validation: 1 kB).
const MAX_NOTE: usize = 1024;

/// What an Event says.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The object acted on (the pod deleted, the Ingress patched).
    pub regarding: ObjectReference,
    /// CamelCase reason: `PodDeleted`, `SourceDenied`, `Quarantined`, `ActionRefused`...
    pub reason: &'static str,
    /// What the agent did: `Delete`, `Patch`, `Refuse`.
    pub action: &'static str,
    pub note: String,
    /// Normal for an undo (expiry, release), Warning otherwise.
    pub warning: bool,
}

/// Sends Events; cheap to clone. Without a cluster it does nothing.
#[derive(Clone)]
pub struct EventSink {
    inner: Option<Arc<Inner>>,
    sent: Counter,
    failed: Counter,
}

struct Inner {
    cluster: Arc<ClusterContext>,
    in_flight: Arc<Semaphore>,
    dry_run: bool,
}

impl EventSink {
    /// `dry_run`: server dry-run sends Events with `dryRun=All` too.
    pub fn new(
        cluster: Option<Arc<ClusterContext>>,
        dry_run: bool,
        sent: Counter,
        failed: Counter,
    ) -> EventSink {
        EventSink {
            inner: cluster.map(|cluster| {
                Arc::new(Inner {
                    cluster,
                    in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
                    dry_run,
                })
            }),
            sent,
            failed,
        }
    }

    /// A sink that sends nothing (tests, no cluster).
    pub fn disabled() -> EventSink {
        EventSink::new(None, false, Counter::default(), Counter::default())
    }

    /// Waits until every Event emitted so far was written or failed (a CLI exits after).
    pub async fn settled(&self) {
        if let Some(inner) = &self.inner {
            let _ = inner.in_flight.acquire_many(IN_FLIGHT as u32).await;
        }
    }

    /// Sends `report` in the background.
    pub fn emit(&self, report: Report) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let Ok(permit) = inner.in_flight.clone().try_acquire_owned() else {
            self.failed.inc();
            tracing::warn!(
                reason = report.reason,
                "too many Events in flight; one not sent"
            );
            return;
        };
        let (sent, failed) = (self.sent.clone(), self.failed.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match inner.send(&report).await {
                Ok(()) => {
                    sent.inc();
                }
                Err(e) => {
                    failed.inc();
                    tracing::warn!(error = %e, reason = report.reason, "could not write a Kubernetes Event");
                }
            };
        });
    }
}

impl Inner {
    async fn send(&self, report: &Report) -> Result<(), kube::Error> {
        let namespace = report
            .regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!(
                    "{}.",
                    report.regarding.name.as_deref().unwrap_or("youwatch")
                )),
                namespace: Some(namespace.clone()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(report.action.to_owned()),
            reason: Some(report.reason.to_owned()),
            note: Some(cut(&report.note, MAX_NOTE)),
            regarding: Some(report.regarding.clone()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.cluster.reporting_instance.clone()),
            type_: Some(if report.warning { "Warning" } else { "Normal" }.to_owned()),
            ..Event::default()
        };
        let api: Api<Event> =
            rbac::EVENT_CREATE.namespaced(self.cluster.client.clone(), &namespace);
        let params = PostParams {
            dry_run: self.dry_run,
            ..PostParams::default()
        };
        api.create(&params, &event).await.map(|_| ())
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
