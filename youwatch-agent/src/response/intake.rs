//! The intake's side of acting: a planned action is deduplicated (not already in force),
//! waits for room among the pending actions (back-pressure), is journaled and runs in its
//! own task; an incident from the correlation is reported and its bans taken the same way.

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use tokio::{sync::Semaphore, task::JoinSet};

use super::{
    DryRun, Executor,
    action::{Action, Decided, DenyIp},
    correlation::Finding,
    events::Report,
    metrics::Outcome,
    playbook::Planned,
    report_panic,
};
use crate::detection::Detection;

/// An incident's ban is recorded as a second offense (the request got through).
const INCIDENT_OFFENSE: u32 = 2;

/// Takes planned actions: dedup, room among the pending ones, journal, run.
pub(super) struct Intake {
    pub exec: Arc<Executor>,
    pub permits: Arc<Semaphore>,
    pub running: JoinSet<()>,
}

impl Intake {
    /// Runs again what a previous run decided but did not finish.
    pub(super) async fn recover(&mut self, recovered: Vec<Decided>) {
        for decided in recovered {
            self.exec.in_force().covered_or_insert(
                decided.action.key(),
                decided.give_up_at,
                SystemTime::now(),
            );
            let Ok(permit) = self.permits.clone().acquire_owned().await else {
                break;
            };
            self.running
                .spawn(self.exec.clone().run(decided, None, permit));
        }
    }

    /// Journals and starts `planned` unless the same action is in force; false when the
    /// stage is closing.
    pub(super) async fn act(
        &mut self,
        planned: Planned,
        detection: &Detection,
        taken: Option<Instant>,
        now: SystemTime,
    ) -> bool {
        let exec = &self.exec;
        let kind = planned.action.kind();
        if exec
            .in_force()
            .covered_or_insert(planned.action.key(), planned.give_up_at, now)
        {
            exec.metrics.outcome(kind, Outcome::Deduplicated);
            tracing::debug!(
                playbook = planned.playbook,
                key = planned.action.key(),
                "already in force"
            );
            return true;
        }
        // Back-pressure: wait for room among the pending actions.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let decided = exec.decide(planned, detection, now);
        self.running.spawn(exec.clone().run(decided, taken, permit));
        true
    }

    pub(super) fn reap(&mut self) {
        while let Some(result) = self.running.try_join_next() {
            report_panic(result);
        }
    }

    /// Reports an incident (alert, Event on the pod, a line in client dry-run) and takes
    /// the bans of its detection's playbooks.
    pub(super) async fn incident(&mut self, finding: Finding) {
        let Finding {
            incident,
            bans,
            taken,
        } = finding;
        let exec = self.exec.clone();
        tracing::info!(
            pod = %incident.pod.name,
            namespace = %incident.pod.namespace,
            candidates = incident.candidates.len() + incident.more,
            ban = incident.ban.len(),
            "incident: {}",
            incident.summary()
        );
        if exec.dry_run == DryRun::Client {
            let line = serde_json::json!({
                "dry_run": "client",
                "incident": incident.summary(),
                "fields": incident.fields(),
            });
            if let Err(e) = crate::run::print_json_line(&line) {
                tracing::warn!(error = %e, "cannot print an incident");
            }
        } else {
            exec.pods.events.emit(Report {
                regarding: k8s_openapi::api::core::v1::ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    namespace: Some(incident.pod.namespace.clone()),
                    name: Some(incident.pod.name.clone()),
                    uid: incident.pod.uid.clone(),
                    ..Default::default()
                },
                reason: "Incident",
                action: "Correlate",
                note: incident.event_note(),
                warning: true,
            });
        }
        // A full alert queue drops the report (counted) rather than hold up the bans.
        let _ = exec.reports.publish(incident.alert()).await;
        let now = SystemTime::now();
        for ban in &bans {
            let ttl = ban.ttl.unwrap_or(Duration::ZERO);
            for &i in &incident.ban {
                let s = &incident.candidates[i].suspicion;
                let until = now + ttl;
                let planned = Planned {
                    playbook: ban.playbook.clone(),
                    action: Action::DenyIp(DenyIp {
                        ip: s.ip,
                        host: s.host.clone(),
                        until,
                        offense: INCIDENT_OFFENSE,
                    }),
                    give_up_at: until,
                    dry_run: ban.dry_run,
                };
                let evidence = incident.ban_detection(i, ttl);
                if !self.act(planned, &evidence, Some(taken), now).await {
                    return;
                }
            }
        }
    }

    /// Lets running actions finish within `grace`; what is left stays journaled.
    pub(super) async fn drain(mut self, grace: Duration) {
        let running = &mut self.running;
        let drained = tokio::time::timeout(grace, async {
            while let Some(result) = running.join_next().await {
                report_panic(result);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                actions = self.running.len(),
                grace = %humantime::format_duration(grace),
                "shutting down with actions unfinished; they stay journaled and run at the next start"
            );
            self.running.abort_all();
        }
    }
}
