//! Response: turns detections into Kubernetes actions — delete a compromised pod, deny an
//! attacking address on the Ingress, quarantine an app — by playbook, with dry-run, guards,
//! rate limits, expiry, and for every action a Kubernetes Event, a Falco-format alert line, a
//! metric and a log line.
//!
//! The stage is the detection bus's lossless listener. For each detection, [`playbook`]
//! decides the actions; each new one (not already [`in_force`]) is written to the
//! [`journal`] *before* the bus is told the detection was taken, so a tailed input's cursor
//! never moves past a decision that a `kill -9` could lose; then it runs in its own task:
//! [`pods`] deletes pods, [`ingress`] patches Ingresses, [`node_tc`] writes IPBans (each
//! playbook's `deny_ip_backends`, [`deny`]). A finished action is marked done in
//! the journal; what is unfinished at shutdown (after `shutdown_grace`) runs at the next
//! start. At most `max_pending` actions are in flight: beyond, the intake waits and the
//! back-pressure reaches the producers.
//!
//! With the correlation ([`correlation`]), a runtime detection in a pod also opens a
//! look-back at the web requests that reached the pod's Services; its incident comes back to
//! the intake, which reports it (alert, Event on the pod, a line in client dry-run) and
//! takes the bans its playbooks call for like any other action.

pub mod action;
pub mod config;
mod correlation;
pub mod deny;
mod dry_run;
pub mod events;
mod in_force;
pub mod ingress;
mod intake;
pub mod journal;
pub mod metrics;
pub mod node_tc;
pub mod playbook;
mod pod_reads;
pub mod pods;
pub mod retry;

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use prometheus_client::registry::Registry;
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

pub use config::ResponseConfig;
pub use dry_run::{DryRun, PlannedRequest};

use self::{
    action::{Action, Decided, Evidence},
    deny::Backends,
    events::EventSink,
    in_force::InForce,
    ingress::{IngressHandle, IngressResponder},
    intake::Intake,
    journal::Journal,
    metrics::{Outcome, ResponseMetrics},
    node_tc::NodeTcBans,
    playbook::{Planned, Playbooks},
    pods::PodDeleter,
};
use crate::{
    bus::{Bus, Listener},
    cluster::ClusterContext,
    correlate::Correlation,
    detection::{Detection, Origin, Priority, Subject},
    stage::{StageHandle, StopSignal},
};

/// Actions remembered as in force (deduplication), at most.
const IN_FORCE_CAPACITY: usize = 65_536;

/// How an action ended, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    pub outcome: Outcome,
    pub detail: String,
}

impl Finished {
    pub fn new(outcome: Outcome, detail: impl Into<String>) -> Finished {
        Finished {
            outcome,
            detail: detail.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(transparent)]
    Ingress(#[from] ingress::IngressError),
    #[error(
        "--dry-run=server needs a cluster to send the requests to (a kubeconfig or a service account); use --dry-run to plan without one"
    )]
    ServerDryRunWithoutCluster,
}

/// The response stage, ready to run.
pub struct ResponseStage {
    config: ResponseConfig,
    dry_run: DryRun,
    playbooks: Playbooks,
    journal: Option<Journal>,
    recovered: Vec<Decided>,
    metrics: ResponseMetrics,
    pods: PodDeleter,
    ingress: IngressResponder,
    node_tc: NodeTcBans,
    cluster: Option<Arc<ClusterContext>>,
    correlation: Option<Correlation>,
}

impl ResponseStage {
    /// Checks the playbooks and opens the journal in `state_dir` (recovering what a previous
    /// run left pending). Without a cluster the stage can only plan: it runs as client
    /// dry-run, and says so.
    pub fn new(
        config: &ResponseConfig,
        cluster: Option<Arc<ClusterContext>>,
        dry_run: DryRun,
        state_dir: &Path,
    ) -> Result<ResponseStage, ResponseError> {
        let playbooks = Playbooks::new(config)?;
        let dry_run = match (dry_run, config.dry_run, &cluster) {
            (DryRun::Server, _, None) => return Err(ResponseError::ServerDryRunWithoutCluster),
            (DryRun::Off, true, _) => DryRun::Client,
            (DryRun::Off, _, None) => {
                tracing::info!(
                    "no cluster: the response stage plans its actions and prints them, as with --dry-run"
                );
                DryRun::Client
            }
            (mode, _, _) => mode,
        };
        // Planning changes nothing, so there is nothing to carry over a restart.
        let (journal, recovered) = if dry_run == DryRun::Client {
            (None, Vec::new())
        } else {
            let (journal, recovered) = Journal::open(state_dir, config.journal_sync)?;
            if !recovered.is_empty() {
                tracing::info!(
                    actions = recovered.len(),
                    "resuming the actions a previous run decided but did not finish"
                );
            }
            (Some(journal), recovered)
        };
        let metrics = ResponseMetrics::default();
        let events = EventSink::new(
            cluster.clone(),
            dry_run == DryRun::Server,
            metrics.events_sent.clone(),
            metrics.events_failed.clone(),
        );
        let pods = PodDeleter::new(
            cluster.clone(),
            dry_run,
            config.delete_pod.clone(),
            config.protected_namespaces.clone(),
            config.retry.clone(),
            events.clone(),
            metrics.clone(),
        );
        let node_tc = NodeTcBans::new(config, cluster.clone(), dry_run, metrics.clone());
        let ingress =
            IngressResponder::new(config, cluster.clone(), dry_run, events, metrics.clone())?;
        Ok(ResponseStage {
            config: config.clone(),
            dry_run,
            playbooks,
            journal,
            recovered,
            metrics,
            pods,
            ingress,
            node_tc,
            cluster,
            correlation: None,
        })
    }

    /// Also correlates runtime detections with the web requests before them (needs a
    /// cluster: without one the correlation is left off, and says so).
    pub fn with_correlation(mut self, correlation: Correlation) -> ResponseStage {
        if self.cluster.is_none() {
            tracing::info!(
                "no cluster: runtime detections are not correlated with web requests (the correlation needs the cluster's Ingresses and Services)"
            );
        } else {
            self.correlation = Some(correlation);
        }
        self
    }

    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
    }

    /// The effective mode (client dry-run without a cluster).
    pub fn dry_run(&self) -> DryRun {
        self.dry_run
    }

    /// Starts the stage on its bus listener. `reports` is where each finished action goes
    /// as an alert (a bus without lossless listeners: never back to this stage). The stage
    /// ends once the bus has closed and its actions have finished or `shutdown_grace`
    /// passed.
    pub fn spawn(self, detections: Listener, reports: Bus) -> StageHandle {
        let stop = StopSignal::new();
        let task = tokio::spawn(self.run(detections, reports));
        StageHandle::task("response", stop, task)
    }

    async fn run(self, mut detections: Listener, reports: Bus) {
        let (ingress, ingress_stage) = self.ingress.spawn();
        let correlation::Started {
            correlator,
            mut findings,
            stage: correlation_stage,
        } = correlation::start(
            self.correlation,
            self.cluster,
            ingress.index(),
            self.pods.reads.clone(),
            &self.config.retry,
            self.dry_run,
        );
        let mut intake = Intake {
            exec: Arc::new(Executor {
                pods: self.pods,
                ingress,
                node_tc: self.node_tc,
                backends: Backends::new(&self.config),
                journal: Mutex::new(self.journal),
                in_force: Mutex::new(InForce::new(IN_FORCE_CAPACITY)),
                metrics: self.metrics.clone(),
                reports,
                dry_run: self.dry_run,
            }),
            permits: Arc::new(Semaphore::new(self.config.max_pending)),
            running: JoinSet::new(),
        };
        intake.recover(self.recovered).await;
        loop {
            tokio::select! {
                envelope = detections.recv() => {
                    let Some(envelope) = envelope else { break };
                    let taken = Instant::now();
                    let now = SystemTime::now();
                    let planned = self.playbooks.decide(&envelope.detection, now);
                    let acted = !planned.is_empty();
                    for planned in planned {
                        if !intake.act(planned, &envelope.detection, Some(taken), now).await {
                            break;
                        }
                    }
                    // After the deletion is under way: the look-back never holds it up.
                    if let Some(correlator) = &correlator {
                        let bans = self.playbooks.incident_bans(&envelope.detection);
                        correlator.consider(&envelope.detection, acted, bans, taken);
                    }
                    // Journaled: the producer may move on (save its cursor).
                    envelope.done();
                    intake.reap();
                }
                Some(finding) = findings.recv() => intake.incident(finding).await,
            }
        }
        // The bus has closed: open look-backs decide with what they have.
        let grace = self.config.shutdown_grace;
        drop(correlator);
        if let Some(stage) = correlation_stage {
            stage.stop();
            let _ = tokio::time::timeout(grace, async {
                while let Some(finding) = findings.recv().await {
                    intake.incident(finding).await;
                }
            })
            .await;
            if let Err(e) = stage.join().await {
                tracing::error!(error = %e, "the correlation failed");
            }
        }
        intake.drain(grace).await;
        if let Err(e) = ingress_stage.shutdown().await {
            tracing::error!(error = %e, "the Ingress responder failed");
        }
    }
}

fn report_panic(result: Result<(), tokio::task::JoinError>) {
    if let Err(e) = result
        && e.is_panic()
    {
        tracing::error!(error = %e, "a response action panicked");
    }
}

/// Runs decided actions; shared by the intake and the action tasks.
struct Executor {
    pods: PodDeleter,
    ingress: IngressHandle,
    node_tc: NodeTcBans,
    /// Each playbook's deny_ip backends.
    backends: Backends,
    journal: Mutex<Option<Journal>>,
    in_force: Mutex<InForce>,
    metrics: ResponseMetrics,
    reports: Bus,
    dry_run: DryRun,
}

impl Executor {
    fn in_force(&self) -> std::sync::MutexGuard<'_, InForce> {
        self.in_force.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Option<Journal>> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives `planned` an id and journals it.
    fn decide(&self, planned: Planned, detection: &Detection, now: SystemTime) -> Decided {
        let mut journal = self.journal();
        let id = journal.as_mut().map_or(0, Journal::next_id);
        let decided = Decided {
            id,
            playbook: planned.playbook,
            action: planned.action,
            evidence: Evidence::of(detection),
            decided_at: now,
            give_up_at: planned.give_up_at,
            dry_run: planned.dry_run,
        };
        if let Some(j) = journal.as_mut() {
            if let Err(e) = j.add(&decided) {
                self.metrics.journal_errors.inc();
                tracing::error!(error = %e, "cannot journal a decided action; it is carried out but would not survive a restart");
            }
            self.metrics.pending.set(j.pending() as i64);
        }
        decided
    }

    async fn run(
        self: Arc<Self>,
        decided: Decided,
        taken: Option<Instant>,
        _permit: OwnedSemaphorePermit,
    ) {
        let kind = decided.action.kind();
        let finished = match &decided.action {
            Action::DeletePod(pod) => self.pods.run(&decided, pod).await,
            Action::DenyIp(d) => {
                let backends = self.backends.of(&decided.playbook);
                deny::deny(&backends, &self.ingress, &self.node_tc, &decided, d).await
            }
            Action::Quarantine(_) => self.ingress.run(&decided).await,
        };
        self.metrics.outcome(kind, finished.outcome);
        if finished.outcome == Outcome::Applied
            && let Some(taken) = taken
        {
            self.metrics.latency(kind, taken.elapsed().as_secs_f64());
        }
        // tracing wants a constant level: one macro, two levels.
        macro_rules! log_action {
            ($level:ident, $message:literal) => {
                tracing::$level!(
                    id = decided.id,
                    playbook = decided.playbook,
                    action = kind.as_str(),
                    target = decided.action.key(),
                    outcome = finished.outcome.as_str(),
                    detail = finished.detail,
                    rule = decided.evidence.rule,
                    $message
                )
            };
        }
        if matches!(finished.outcome, Outcome::Failed | Outcome::GaveUp) {
            // A later detection may try again.
            self.in_force().forget(&decided.action.key());
            log_action!(error, "response action failed");
        } else {
            log_action!(info, "response action");
        }
        // A planned (client dry-run) action was printed already. A full alert queue drops
        // the report (counted, logged) rather than hold up the next action.
        let planned_only = self.dry_run == DryRun::Client || decided.dry_run;
        if !planned_only {
            let _ = self
                .reports
                .publish(action_alert(&decided, &finished))
                .await;
        }
        if let Some(j) = self.journal().as_mut() {
            if let Err(e) = j.done(decided.id) {
                self.metrics.journal_errors.inc();
                tracing::warn!(error = %e, "cannot journal a finished action; a restart may try it again (harmless: actions are idempotent)");
            }
            self.metrics.pending.set(j.pending() as i64);
        }
    }
}

/// A finished action as an alert (`rule: "YouWatch response"`), for the alert output.
fn action_alert(decided: &Decided, finished: &Finished) -> Detection {
    let kind = decided.action.kind().as_str();
    let mut fields: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    fields.insert("response.action".into(), kind.into());
    fields.insert("response.outcome".into(), finished.outcome.as_str().into());
    fields.insert("response.playbook".into(), decided.playbook.clone().into());
    fields.insert("response.target".into(), decided.action.key().into());
    fields.insert("response.detail".into(), finished.detail.clone().into());
    fields.insert("response.rule".into(), decided.evidence.rule.clone().into());
    let priority = match finished.outcome {
        Outcome::Applied => Priority::Warning,
        Outcome::Failed | Outcome::GaveUp | Outcome::Refused => Priority::Error,
        _ => Priority::Notice,
    };
    Detection {
        time: SystemTime::now(),
        origin: Origin::Response,
        rule: "YouWatch response".into(),
        priority,
        output: format!(
            "{kind} {} ({}): {} (playbook {}, rule {})",
            decided.action.key(),
            finished.outcome.as_str(),
            finished.detail,
            decided.playbook,
            decided.evidence.rule
        ),
        tags: vec!["youwatch".into(), "response".into()],
        output_fields: fields,
        subject: Subject::None,
    }
}
