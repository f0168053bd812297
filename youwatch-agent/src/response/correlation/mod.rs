//! The response stage's half of the correlation (`crate::correlate` says what it is):
//!
//! - the intake routes each suspicious request from the WAF stage to the Service it reached
//!   (the managed Ingresses, as ingress-nginx routes) and records it; [`publish`] writes the
//!   Service's latest ones as evidence for the other nodes;
//! - a runtime detection in a pod (own rules or the Falco fallback) that a playbook acts on
//!   opens a look-back in its own task: the Services selecting the pod (one list), the
//!   requests recorded here and, through [`fetch`], those other nodes published; ranked into
//!   an incident as soon as one names a client to ban, else at the end of
//!   `correlation.wait` (a request is logged when it ends, which may be after the shell it
//!   caused). The incident goes back to the intake as a [`Finding`]. The pod's deletion
//!   never waits for it.
//!
//! One incident per pod (further detections in it while the incident is open or recent are
//! counted as duplicates), at most `correlation.max_open` at once.

mod fetch;
mod publish;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use self::publish::Publisher;
use super::{
    config::RetryConfig,
    dry_run::DryRun,
    in_force::InForce,
    ingress::{IngressIndex, RegexCache, read_pod, services_of_pod},
    playbook::IncidentBan,
    pod_reads::{PodRead, PodReads},
    retry::ErrorClass,
};
use crate::{
    cluster::ClusterContext,
    correlate::{
        Correlation, CorrelationConfig, CorrelationMetrics, Incident,
        incident::secs,
        log::SuspicionLog,
        metrics::{Fate, IncidentResult},
        rank::{self, BanPolicy, Candidate},
        suspicion::{Suspicion, Workload},
    },
    detection::{Detection, Origin, PodRef, Subject},
    stage::{StageHandle, StopSignal},
};

/// Incidents waiting for the intake, at most (a look-back waits for room).
const FINDINGS: usize = 64;
/// Pods remembered as correlated (one incident each), at most.
const RECENT_PODS: usize = 4096;
/// How often requests past the retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(5);
/// When a look-back reads other nodes' evidence again, from its start: soon at first (the
/// evidence of a request just before the shell may be on its way), then less and less.
const POLLS_MS: [u64; 10] = [0, 250, 500, 1000, 2000, 4000, 8000, 15_000, 30_000, 60_000];

/// A decided incident and the bans its detection's playbooks call for.
pub struct Finding {
    pub incident: Incident,
    pub bans: Vec<IncidentBan>,
    /// When the runtime detection was taken (the bans' latency counts from there).
    pub taken: Instant,
}

/// Starts look-backs; dropped when the intake stops (open ones still report).
pub struct Correlator {
    shared: Arc<Shared>,
    findings: mpsc::Sender<Finding>,
    open: Arc<Semaphore>,
    recent: Mutex<InForce>,
}

struct Shared {
    config: CorrelationConfig,
    ban_ttl: Duration,
    policy: BanPolicy,
    cluster: Arc<ClusterContext>,
    /// What the deletion read of pods a Falco alert named (they may be gone by now).
    pod_reads: PodReads,
    retry: RetryConfig,
    log: Mutex<SuspicionLog>,
    /// Bumped at every request recorded (open look-backs look again).
    recorded: watch::Sender<u64>,
    metrics: CorrelationMetrics,
    stop: StopSignal,
}

/// What [`start`] returns: the correlator (none without a cluster or correlation), where its
/// incidents arrive (closed when there are none), and its background tasks.
pub struct Started {
    pub correlator: Option<Correlator>,
    pub findings: mpsc::Receiver<Finding>,
    pub stage: Option<StageHandle>,
}

/// Starts the intake (and the publisher, unless client dry-run writes nothing) on the
/// managed Ingresses.
pub fn start(
    correlation: Option<Correlation>,
    cluster: Option<Arc<ClusterContext>>,
    index: Option<IngressIndex>,
    pod_reads: PodReads,
    retry: &RetryConfig,
    dry_run: DryRun,
) -> Started {
    let (tx, findings) = mpsc::channel(FINDINGS);
    let (Some(correlation), Some(cluster), Some(index)) = (correlation, cluster, index) else {
        return Started {
            correlator: None,
            findings,
            stage: None,
        };
    };
    let Correlation {
        config,
        ban_ttl,
        suspicions,
        metrics,
    } = correlation;
    let stop = StopSignal::new();
    let shared = Arc::new(Shared {
        policy: config.ban_policy(),
        log: Mutex::new(SuspicionLog::new(config.limits())),
        recorded: watch::channel(0).0,
        config,
        ban_ttl,
        cluster,
        pod_reads,
        retry: retry.clone(),
        metrics,
        stop: stop.clone(),
    });
    let publisher = (shared.config.cross_node.publish && dry_run != DryRun::Client)
        .then(|| Arc::new(Publisher::new(dry_run == DryRun::Server)));
    let mut tasks = vec![tokio::spawn(intake(
        shared.clone(),
        suspicions,
        index,
        publisher.clone(),
    ))];
    if let Some(publisher) = publisher {
        tasks.push(tokio::spawn(publisher.run(shared.clone())));
    }
    let task = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    Started {
        correlator: Some(Correlator {
            open: Arc::new(Semaphore::new(shared.config.max_open)),
            recent: Mutex::new(InForce::new(RECENT_PODS)),
            shared,
            findings: tx,
        }),
        findings,
        stage: Some(StageHandle::task("correlation", stop, task)),
    }
}

impl Correlator {
    /// Opens the look-back of `detection` when it is a runtime detection in a pod that a
    /// playbook acts on (`acted`, or `bans` to decide), once per pod.
    pub fn consider(
        &self,
        detection: &Arc<Detection>,
        acted: bool,
        bans: Vec<IncidentBan>,
        taken: Instant,
    ) {
        let Subject::Pod(pod) = &detection.subject else {
            return;
        };
        if !matches!(detection.origin, Origin::Rules | Origin::Falco) || (!acted && bans.is_empty())
        {
            return;
        }
        let config = &self.shared.config;
        // By name, not uid: a Falco alert names a pod without its uid, and every detection
        // of one pod must share one look-back.
        let key = format!("{}/{}", pod.namespace, pod.name);
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            self.shared.metrics.skipped("busy");
            tracing::warn!(pod = %pod.name, namespace = %pod.namespace, max_open = config.max_open, "runtime detection not correlated: correlation.max_open look-backs are open");
            return;
        };
        let now = SystemTime::now();
        let hold = now + config.window + config.wait;
        let duplicate = self
            .recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .held_or_insert(key, hold, now);
        if duplicate {
            self.shared.metrics.skipped("duplicate");
            return;
        }
        let bans = bans
            .into_iter()
            .map(|b| IncidentBan {
                ttl: Some(b.ttl.unwrap_or(self.shared.ban_ttl)),
                ..b
            })
            .collect();
        let look = LookBack {
            shared: self.shared.clone(),
            detection: detection.clone(),
            pod: pod.clone(),
            bans,
            taken,
        };
        tokio::spawn(look.run(permit, self.findings.clone()));
    }
}

/// Routes each suspicious request and records it for its Service.
async fn intake(
    shared: Arc<Shared>,
    mut suspicions: mpsc::Receiver<Suspicion>,
    index: IngressIndex,
    publisher: Option<Arc<Publisher>>,
) {
    // Requests wait in the queue (or are dropped, counted) until the Ingresses are known.
    tokio::select! {
        listed = index.listed() => if !listed { return },
        _ = shared.stop.stopped() => return,
    }
    let mut regexes = RegexCache::default();
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            s = suspicions.recv() => {
                let Some(mut s) = s else { return };
                let path = std::mem::take(&mut s.path);
                let Some(workload) = index.route(s.host.as_deref(), &path, &mut regexes) else {
                    shared.metrics.suspicion(Fate::Unrouted);
                    continue;
                };
                let recorded = {
                    let mut log = shared.log();
                    let recorded = log.record(&workload, s, now_secs());
                    shared.metrics.held.set(log.len() as i64);
                    recorded
                };
                for _ in 0..recorded.evicted {
                    shared.metrics.suspicion(Fate::Evicted);
                }
                if !recorded.kept {
                    shared.metrics.suspicion(Fate::Stale);
                    continue;
                }
                shared.metrics.suspicion(Fate::Recorded);
                shared.recorded.send_modify(|n| *n = n.wrapping_add(1));
                if let Some(p) = &publisher {
                    p.dirty(workload);
                }
            }
            _ = prune.tick() => {
                let mut log = shared.log();
                log.prune(now_secs());
                shared.metrics.held.set(log.len() as i64);
            }
            _ = shared.stop.stopped() => return,
        }
    }
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, SuspicionLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This node's requests to `services` in the window of a detection at `at`.
    fn local(&self, services: &[Workload], at: u64) -> Vec<Candidate> {
        let window = self.config.window.as_secs();
        let from = at.saturating_sub(window + rank::CLOCK_SLACK_SECS);
        let to = at.saturating_add(rank::CLOCK_SLACK_SECS);
        let log = self.log();
        services
            .iter()
            .flat_map(|w| {
                log.between(w, from, to)
                    .into_iter()
                    .map(|suspicion| Candidate {
                        suspicion,
                        workload: w.clone(),
                        seen_by: None,
                    })
            })
            .collect()
    }
}

/// One runtime detection's look-back.
struct LookBack {
    shared: Arc<Shared>,
    detection: Arc<Detection>,
    pod: PodRef,
    bans: Vec<IncidentBan>,
    taken: Instant,
}

impl LookBack {
    async fn run(self, _permit: OwnedSemaphorePermit, findings: mpsc::Sender<Finding>) {
        let shared = self.shared.clone();
        let incident = self.incident().await;
        let result = match (incident.candidates.is_empty(), incident.ban.is_empty()) {
            (true, _) => IncidentResult::NoCandidates,
            (false, true) => IncidentResult::NoBan,
            (false, false) => IncidentResult::Ban,
        };
        shared
            .metrics
            .incident(result, self.taken.elapsed().as_secs_f64());
        let finding = Finding {
            incident,
            bans: self.bans,
            taken: self.taken,
        };
        if findings.send(finding).await.is_err() {
            tracing::warn!("an incident was decided after the response stage stopped");
        }
    }

    /// Looks until a candidate names a client to ban, `correlation.wait` passes, or the
    /// agent stops.
    async fn incident(&self) -> Incident {
        let shared = &self.shared;
        let config = &shared.config;
        let started = tokio::time::Instant::now();
        let deadline = started + config.wait;
        let at = secs(self.detection.time);
        let mut notes = Vec::new();
        let mut pod = self.pod.clone();
        let (services, uid) = self.services(&mut notes).await;
        // The incident's Event must name the pod by uid too (kubectl describe finds it so).
        pod.uid = pod.uid.or(uid);
        let read = config.cross_node.read && !services.is_empty();
        let mut remote: Vec<Candidate> = Vec::new();
        let mut polls = POLLS_MS
            .iter()
            .map(|ms| started + Duration::from_millis(*ms));
        let mut next_poll = polls.next();
        let mut read_failed = false;
        let mut changes = shared.recorded.subscribe();
        loop {
            changes.borrow_and_update();
            if read && next_poll.is_some_and(|p| p <= tokio::time::Instant::now()) {
                match fetch::evidence(shared, &services).await {
                    Ok(found) => remote = found,
                    Err(e) if !std::mem::replace(&mut read_failed, true) => notes.push(e),
                    Err(_) => {}
                }
                next_poll = polls.next();
            }
            let window = config.window.as_secs();
            let mut candidates = shared.local(&services, at);
            candidates.extend(
                remote
                    .iter()
                    .filter(|c| rank::in_window(c.suspicion.time, at, window))
                    .cloned(),
            );
            let mut incident = Incident::new(
                self.detection.clone(),
                pod.clone(),
                services.clone(),
                config.window,
                rank::rank(candidates, at),
                config.max_candidates,
                &shared.policy,
            );
            let now = tokio::time::Instant::now();
            // Nothing can arrive for a pod no Service selects.
            if !incident.ban.is_empty()
                || now >= deadline
                || services.is_empty()
                || shared.stop.is_stopped()
            {
                incident.notes = notes;
                return incident;
            }
            let wake = next_poll
                .filter(|_| read)
                .map_or(deadline, |p| p.min(deadline));
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = shared.stop.stopped() => {}
            }
        }
    }

    /// The Services selecting the pod (a note in `notes` when none), and the pod's uid when
    /// it had to be read.
    async fn services(&self, notes: &mut Vec<String>) -> (Vec<Workload>, Option<String>) {
        let shared = &self.shared;
        let pod = &self.pod;
        let deadline = SystemTime::now() + shared.retry.request_timeout;
        let (labels, uid) = match self.read(deadline).await {
            Ok(Some(read)) => (read.labels, read.uid),
            Ok(None) => (pod.labels.clone(), None),
            Err(note) => {
                notes.push(note);
                return (Vec::new(), None);
            }
        };
        if labels.is_empty() {
            notes.push(format!(
                "the pod {}/{} has no labels: no Service selects it",
                pod.namespace, pod.name
            ));
            return (Vec::new(), uid);
        }
        let names = match services_of_pod(
            &shared.cluster.client,
            &shared.retry,
            deadline,
            |_| {},
            (&pod.namespace, &pod.name, &labels),
        )
        .await
        {
            Ok(names) => names,
            Err(f) => {
                notes.push(format!(
                    "the Services selecting the pod could not be found: {f}"
                ));
                return (Vec::new(), uid);
            }
        };
        if names.is_empty() {
            notes.push(format!(
                "no Service in namespace {} selects the pod's labels {labels:?}: no request was routed to it",
                pod.namespace
            ));
        }
        let services = names
            .into_iter()
            .map(|service| Workload {
                namespace: pod.namespace.clone(),
                service,
            })
            .collect();
        (services, uid)
    }

    /// The pod's labels and uid when the detection lacks them (a Falco alert): what the
    /// deletion read of it, else read now; gone meanwhile, what the deletion read just before
    /// deleting it. `None` when the detection knows both.
    async fn read(&self, deadline: SystemTime) -> Result<Option<PodRead>, String> {
        let shared = &self.shared;
        let pod = &self.pod;
        if !pod.labels.is_empty() && pod.uid.is_some() {
            return Ok(None);
        }
        let known = || shared.pod_reads.get(&pod.namespace, &pod.name);
        if let Some(read) = known() {
            return Ok(Some(read));
        }
        let client = &shared.cluster.client;
        match read_pod(
            client,
            &shared.retry,
            deadline,
            |_| {},
            &pod.namespace,
            &pod.name,
        )
        .await
        {
            Ok(live) => Ok(Some(PodRead {
                uid: live.metadata.uid,
                labels: live.metadata.labels.unwrap_or_default(),
            })),
            Err(f) if f.class == ErrorClass::NotFound => known().map(Some).ok_or_else(|| {
                format!(
                    "the pod {}/{} is gone and was not read before",
                    pod.namespace, pod.name
                )
            }),
            Err(f) => Err(format!("the pod could not be read: {f}")),
        }
    }
}

fn now_secs() -> u64 {
    secs(SystemTime::now())
}
