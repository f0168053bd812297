//! Enforcement's detections: each forbidden exec the kernel stopped (or, in monitor mode,
//! would have stopped), and the disarmer tripping. Falco-format like every detection: the
//! pod is the subject, so the playbooks act on a stopped exec as on any Critical exec alert
//! (the default one deletes the pod).

use std::{collections::BTreeMap, time::SystemTime};

use serde_json::json;

use super::disarm::Trip;
use crate::{
    detection::{Detection, Origin, Priority, Subject},
    event::{EnforceOutcome, EnrichedExec},
    rules::{fields::EventView, output::OutputFormat, source::SourceText, subject},
    sensor::ebpf::Mechanism,
};

/// A forbidden exec the kernel stopped.
pub const RULE_PREVENTED: &str = "Forbidden exec prevented in guarded pod";
/// A forbidden exec in monitor mode: it ran.
pub const RULE_WOULD_STOP: &str = "Forbidden exec in guarded pod (monitor mode)";
/// A forbidden exec the kernel failed to stop: it ran.
pub const RULE_NOT_STOPPED: &str = "Forbidden exec not stopped in guarded pod";
/// The disarmer switched enforcement to monitor mode.
pub const RULE_DISARMED: &str = "YouWatch enforcement disarmed";

const TAGS: [&str; 4] = ["youwatch", "enforce", "process", "mitre_execution"];

/// The fields every enforcement alert shows, as a Falco output.
const FIELDS: &str = "process=%proc.exepath command=%proc.cmdline parent=%proc.pname \
                      user=%user.name pod=%k8s.ns.name/%k8s.pod.name container=%container.name \
                      image=%container.image.repository";

pub struct Alerts {
    fields: OutputFormat,
    hostname: String,
}

impl Alerts {
    pub fn new(hostname: String) -> Self {
        Self {
            fields: OutputFormat::compile(&SourceText::literal(FIELDS))
                .expect("the enforcement output is a valid Falco output"),
            hostname,
        }
    }

    /// The detection for an exec enforcement stopped or flagged; `None` for any other.
    /// `mechanism` is the one in force (for a `Killed`/`Denied` outcome the kernel says).
    pub fn exec(&self, exec: &EnrichedExec, mechanism: Mechanism) -> Option<Detection> {
        let e = exec.event.enforcement.as_ref()?;
        let (rule, priority, said, outcome) = match e.outcome {
            EnforceOutcome::Killed => (
                RULE_PREVENTED,
                Priority::Critical,
                "killed before its first instruction",
                "prevented",
            ),
            EnforceOutcome::Denied => (
                RULE_PREVENTED,
                Priority::Critical,
                "denied by the BPF LSM (EPERM), nothing of it ran",
                "prevented",
            ),
            EnforceOutcome::SignalFailed => (
                RULE_NOT_STOPPED,
                Priority::Critical,
                "the kernel could not kill it: it ran",
                "not_stopped",
            ),
            EnforceOutcome::WouldStop => (
                RULE_WOULD_STOP,
                Priority::Warning,
                "would have been stopped (monitor mode): it ran",
                "would_have_been_stopped",
            ),
        };
        let mechanism = match e.outcome {
            EnforceOutcome::Killed | EnforceOutcome::SignalFailed => Mechanism::SigKill.as_str(),
            EnforceOutcome::Denied => Mechanism::Lsm.as_str(),
            EnforceOutcome::WouldStop if mechanism == Mechanism::Lsm => "monitor (lsm available)",
            EnforceOutcome::WouldStop => "monitor",
        };
        let view = EventView::new(exec, 0, &self.hostname);
        let (fields, mut output_fields) = self.fields.render(&view, &[]);
        output_fields.extend([
            ("enforce.outcome".to_owned(), json!(outcome)),
            ("enforce.action".to_owned(), json!(e.outcome.as_str())),
            ("enforce.mechanism".to_owned(), json!(mechanism)),
            ("enforce.matched".to_owned(), json!(e.matched)),
            ("enforce.matched_by".to_owned(), json!(e.by.as_str())),
        ]);
        Some(Detection {
            time: exec.event.time,
            origin: Origin::Rules,
            rule: rule.to_owned(),
            priority,
            output: format!(
                "Forbidden exec {said} (forbidden name {:?} matched the {}) | {fields}",
                e.matched,
                matched_by_text(e.by)
            ),
            tags: TAGS.iter().map(|t| (*t).to_owned()).collect(),
            output_fields,
            subject: subject(exec),
        })
    }

    /// The disarmer tripped at `at`.
    pub fn disarmed(&self, at: SystemTime, trip: &Trip) -> Detection {
        let output_fields: BTreeMap<String, serde_json::Value> = [
            ("enforce.mode".to_owned(), json!("monitor")),
            ("enforce.disarm.reason".to_owned(), json!(trip.what)),
            ("enforce.disarm.binaries".to_owned(), json!(trip.binaries)),
            ("enforce.disarm.pods".to_owned(), json!(trip.pods)),
            ("evt.hostname".to_owned(), json!(self.hostname)),
        ]
        .into();
        Detection {
            time: at,
            origin: Origin::Rules,
            rule: RULE_DISARMED.to_owned(),
            priority: Priority::Alert,
            output: format!(
                "In-kernel enforcement disarmed on {}: {trip}; forbidden execs now run and are \
                 reported until the agent restarts",
                self.hostname
            ),
            tags: TAGS.iter().map(|t| (*t).to_owned()).collect(),
            output_fields,
            subject: Subject::None,
        }
    }
}

fn matched_by_text(by: crate::event::MatchedBy) -> &'static str {
    match by {
        crate::event::MatchedBy::File => "executed file's name",
        crate::event::MatchedBy::Path => "exec'd path",
        crate::event::MatchedBy::Interpreter => "#! interpreter",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        event::{Enforcement, MatchedBy},
        rules::sample::Exec,
    };

    fn stopped(outcome: EnforceOutcome) -> EnrichedExec {
        let mut exec = Exec::new(["sh", "-c", "touch /tmp/x"])
            .pod("shop", "juice-shop-1")
            .build();
        exec.event.enforcement = Some(Enforcement {
            outcome,
            matched: "dash".into(),
            by: MatchedBy::File,
        });
        exec
    }

    #[test]
    fn a_stopped_exec_is_a_critical_alert_on_its_pod() {
        let alerts = Alerts::new("node-1".into());
        let d = alerts
            .exec(&stopped(EnforceOutcome::Killed), Mechanism::SigKill)
            .unwrap();
        assert_eq!(
            (d.rule.as_str(), d.priority),
            (RULE_PREVENTED, Priority::Critical)
        );
        assert_eq!(d.output_fields["enforce.outcome"], "prevented");
        assert_eq!(d.output_fields["enforce.mechanism"], "sigkill");
        assert_eq!(d.output_fields["enforce.matched"], "dash");
        assert_eq!(d.output_fields["k8s.pod.name"], "juice-shop-1");
        assert!(
            d.output.contains("killed before its first instruction"),
            "{}",
            d.output
        );
        assert!(
            d.output.contains("command=sh -c touch /tmp/x"),
            "{}",
            d.output
        );
        assert!(matches!(d.subject, Subject::Pod(ref p) if p.name == "juice-shop-1"));

        let d = alerts
            .exec(&stopped(EnforceOutcome::WouldStop), Mechanism::SigKill)
            .unwrap();
        assert_eq!(
            (d.rule.as_str(), d.priority),
            (RULE_WOULD_STOP, Priority::Warning)
        );
        assert_eq!(
            d.output_fields["enforce.outcome"],
            "would_have_been_stopped"
        );

        let mut plain = stopped(EnforceOutcome::Killed);
        plain.event.enforcement = None;
        assert!(alerts.exec(&plain, Mechanism::SigKill).is_none());
    }

    #[test]
    fn disarming_is_an_alert_about_no_pod() {
        let trip = Trip {
            what: "6 distinct binaries".into(),
            binaries: vec!["sh".into(), "bash".into()],
            pods: 1,
            window: Duration::from_secs(600),
        };
        let d = Alerts::new("node-1".into()).disarmed(SystemTime::UNIX_EPOCH, &trip);
        assert_eq!(
            (d.priority, d.subject.clone()),
            (Priority::Alert, Subject::None)
        );
        assert!(
            d.output.contains("6 distinct binaries within 10m"),
            "{}",
            d.output
        );
    }
}
