//! In-kernel containment: forbidden execs (shells, by default) in enforced workloads are
//! stopped by the kernel before the new program runs a single instruction.
//!
//! - The kernel side is the sensor's ([`crate::sensor::ebpf`]): the exec program sends SIGKILL
//!   at `sched_process_exec`, or a BPF LSM program denies the exec where the kernel allows one
//!   (probed at start-up, [`crate::sensor::ebpf::Mechanism`]).
//! - The inventory decides which cgroups are enforced (a pod's opt-in label, `pod_selector`,
//!   `--enforce` for `--watch-cgroup`; never the agent's own) and sets them in the kernel next
//!   to the watched ones ([`crate::inventory::enforce`]).
//! - This module holds the policy (`enforce:` config, [`names`]), the [`disarm`]er that switches
//!   the kernel to monitor mode when enforcement stops too many different things, the
//!   [`tap`] that runs it in the ring-buffer reader, the [`alert`]s and the [`metrics`].

pub mod alert;
pub mod disarm;
pub mod metrics;
pub mod names;
pub mod tap;

use std::time::Duration;

use serde::Deserialize;

pub use names::ForbiddenName;

use crate::{
    detection::Detection,
    event::EnrichedExec,
    sensor::ebpf::{ExecSensor, ExecTap, KernelMode, SensorError},
    yaml_word::YamlWord,
};

/// Enforcement while the agent runs, as the run loop uses it.
pub struct Running {
    pub status: tap::EnforceStatus,
    pub metrics: metrics::EnforceMetrics,
    /// For the sensor's ring-buffer reader (the disarmer); `None` when there is nothing to disarm.
    pub tap: Option<Box<dyn ExecTap>>,
    alerts: alert::Alerts,
}

/// Arms the kernel side in `mode` (the BPF LSM probed for enforce mode) and says which
/// mechanism is active.
pub fn arm(
    config: &EnforceConfig,
    mode: EnforceMode,
    sensor: &mut ExecSensor,
    hostname: String,
) -> Result<Running, SensorError> {
    let keys: Vec<_> = config.forbidden.iter().map(ForbiddenName::key).collect();
    let armed = sensor.arm_enforcement(&keys, mode.kernel())?;
    let status = tap::EnforceStatus::new(mode, &armed);
    match (mode, &armed.lsm_unavailable) {
        (EnforceMode::Off, _) => tracing::info!("enforcement: off"),
        (_, Some(why)) if mode == EnforceMode::Enforce => tracing::warn!(
            mechanism = armed.mechanism.as_str(),
            lsm_unavailable = why,
            "enforcement: mode enforce; the BPF LSM is not available, forbidden execs are \
             killed with SIGKILL at sched_process_exec before their first instruction"
        ),
        _ => tracing::info!(
            mode = mode.as_str(),
            mechanism = armed.mechanism.as_str(),
            forbidden = ?config.forbidden.iter().map(ForbiddenName::as_str).collect::<Vec<_>>(),
            "enforcement: armed"
        ),
    }
    let tap = tap::EnforceTap::new(&config.disarm, armed.switch.clone(), status.clone())
        .map(|t| Box::new(t) as Box<dyn ExecTap>);
    Ok(Running {
        metrics: metrics::EnforceMetrics::new(armed, status.clone()),
        status,
        tap,
        alerts: alert::Alerts::new(hostname),
    })
}

impl Running {
    /// The detections enforcement adds for one exec: its own alert when it was stopped or
    /// flagged, and the disarmer's, once, after it tripped.
    pub fn detections(&self, exec: &EnrichedExec) -> Vec<Detection> {
        let mut out = Vec::new();
        if let Some(d) = self.alerts.exec(exec, self.status.mechanism()) {
            out.push(d);
        }
        if let Some((at, trip)) = self.status.take_disarm_alert() {
            out.push(self.alerts.disarmed(at, &trip));
        }
        out
    }
}

/// `enforce:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnforceConfig {
    /// `off`, `monitor` (report what would have been stopped) or `enforce` (stop it).
    pub mode: EnforceMode,
    /// Names of the programs stopped in enforced workloads (at most 31 bytes each, no `/`).
    pub forbidden: Vec<ForbiddenName>,
    /// A guarded pod carrying this label with the value "true" is enforced. Empty: no label
    /// opt-in.
    pub opt_in_label: String,
    /// Guarded pods matching this label selector are enforced too, label or not. Empty: none.
    pub pod_selector: String,
    pub disarm: DisarmConfig,
}

impl Default for EnforceConfig {
    fn default() -> Self {
        Self {
            mode: EnforceMode::Off,
            forbidden: names::DEFAULT_FORBIDDEN
                .iter()
                .map(|n| ForbiddenName::new(n).expect("the default names are valid"))
                .collect(),
            opt_in_label: "youwatch.dev/enforce".to_owned(),
            pod_selector: String::new(),
            disarm: DisarmConfig::default(),
        }
    }
}

/// `enforce.disarm`: when enforcement stops more than `max_distinct` different binaries, or
/// in more than `max_distinct` different pods, within `window`, the kernel is switched to
/// monitor mode until the agent restarts.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DisarmConfig {
    /// 0: never disarm.
    pub max_distinct: usize,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for DisarmConfig {
    fn default() -> Self {
        Self {
            max_distinct: 5,
            window: Duration::from_secs(600),
        }
    }
}

/// What happens to a forbidden exec in an enforced workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "YamlWord")]
pub enum EnforceMode {
    /// Nothing is enforced; the kernel programs only report.
    #[default]
    Off,
    /// It runs; an alert says it would have been stopped.
    Monitor,
    /// The kernel stops it; an alert says so (and the playbooks act on the pod).
    Enforce,
}

impl TryFrom<YamlWord> for EnforceMode {
    type Error = String;

    fn try_from(word: YamlWord) -> Result<Self, String> {
        match word.text() {
            "off" => Ok(EnforceMode::Off),
            "monitor" => Ok(EnforceMode::Monitor),
            "enforce" => Ok(EnforceMode::Enforce),
            other => Err(format!(
                "unknown mode {other:?}: expected off, monitor or enforce"
            )),
        }
    }
}

impl EnforceMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforceMode::Off => "off",
            EnforceMode::Monitor => "monitor",
            EnforceMode::Enforce => "enforce",
        }
    }

    /// The mode from the config and the command line: `--enforce` asks for enforce mode,
    /// a dry run (`--dry-run`, `response.dry_run`) turns enforce into monitor (it reports,
    /// changes nothing).
    pub fn effective(self, cli_enforce: bool, dry_run: bool) -> EnforceMode {
        let mode = if cli_enforce {
            EnforceMode::Enforce
        } else {
            self
        };
        if dry_run && mode == EnforceMode::Enforce {
            EnforceMode::Monitor
        } else {
            mode
        }
    }

    pub fn kernel(self) -> KernelMode {
        match self {
            EnforceMode::Off => KernelMode::Off,
            EnforceMode::Monitor => KernelMode::Monitor,
            EnforceMode::Enforce => KernelMode::Enforce,
        }
    }
}

impl EnforceConfig {
    /// The checks made at start-up beyond what the types enforce, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        crate::inventory::labels::parse(&self.pod_selector)
            .map_err(|e| format!("enforce.pod_selector: {e}"))?;
        if !self.opt_in_label.is_empty() {
            crate::inventory::labels::parse(&self.opt_in_label).map_err(|e| {
                format!(
                    "enforce.opt_in_label {:?} is not a label key: {e}",
                    self.opt_in_label
                )
            })?;
            if self.opt_in_label.contains(['=', '!', ',', ' ', '(']) {
                return Err(format!(
                    "enforce.opt_in_label {:?} is not a label key: give the key only \
                     (youwatch.dev/enforce); the value must be \"true\"",
                    self.opt_in_label
                ));
            }
        }
        if self.mode != EnforceMode::Off && self.forbidden.is_empty() {
            return Err(format!(
                "enforce.forbidden is empty while enforce.mode is {}: nothing would be stopped \
                 (set mode: off, or list names such as sh, bash)",
                self.mode.as_str()
            ));
        }
        if self.forbidden.len() > youwatch_common::enforce::MAX_NAMES as usize {
            return Err(format!(
                "enforce.forbidden has {} names, at most {} fit the kernel's map",
                self.forbidden.len(),
                youwatch_common::enforce::MAX_NAMES
            ));
        }
        if self.disarm.max_distinct > 0 && self.disarm.window.is_zero() {
            return Err(
                "enforce.disarm.window is 0s: give a window such as 10m, or max_distinct: 0 to \
                 never disarm"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_only_reports_and_the_flag_asks_for_enforcement() {
        use EnforceMode::*;
        assert_eq!(Off.effective(true, false), Enforce);
        assert_eq!(Off.effective(true, true), Monitor);
        assert_eq!(Enforce.effective(false, true), Monitor);
        assert_eq!(Monitor.effective(false, false), Monitor);
        assert_eq!(Off.effective(false, true), Off);
    }

    #[test]
    fn validation_names_the_key() {
        let mut config = EnforceConfig {
            pod_selector: "app in".into(),
            ..Default::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .starts_with("enforce.pod_selector")
        );
        config.pod_selector.clear();
        config.opt_in_label = "youwatch.dev/enforce=true".into();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("enforce.opt_in_label")
        );
        config.opt_in_label.clear();
        config.mode = EnforceMode::Enforce;
        config.forbidden.clear();
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("enforce.forbidden is empty")
        );
        config.forbidden = EnforceConfig::default().forbidden;
        config.disarm.window = Duration::ZERO;
        assert!(
            config
                .validate()
                .unwrap_err()
                .contains("enforce.disarm.window")
        );
        assert!(EnforceConfig::default().validate().is_ok());
    }
}
