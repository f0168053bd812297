//! Enforcement's state while the agent runs, and the tap that keeps it: on the ring-buffer
//! reader (a task on the runtime), each stopped exec is counted by the [`Disarmer`], which switches the
//! kernel to monitor mode the moment it trips, whatever the stages behind the reader hold.

use std::{
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use super::{
    DisarmConfig, EnforceMode,
    disarm::{Disarmer, Trip},
};
use crate::{
    event::ExecEvent,
    sensor::ebpf::{Enforcement, ExecTap, KernelMode, Mechanism, ModeSwitch},
};

/// What enforcement is doing; shared by the tap, the run loop (alerts), `/readyz` and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct EnforceStatus(Arc<Mutex<Status>>);

struct Status {
    mode: EnforceMode,
    mechanism: Mechanism,
    lsm_unavailable: Option<String>,
    disarmed: Option<Disarmed>,
}

struct Disarmed {
    at: SystemTime,
    trip: Trip,
    /// Not yet turned into an alert.
    alert_pending: bool,
    /// The kernel could not be switched (it still enforces).
    switch_failed: Option<String>,
}

impl EnforceStatus {
    pub fn new(mode: EnforceMode, armed: &Enforcement) -> Self {
        Self(Arc::new(Mutex::new(Status {
            mode,
            mechanism: armed.mechanism,
            lsm_unavailable: armed.lsm_unavailable.clone(),
            disarmed: None,
        })))
    }

    /// The mode in force (monitor once disarmed).
    pub fn mode(&self) -> EnforceMode {
        self.lock().mode
    }

    /// The mechanism that stops execs in enforce mode.
    pub fn mechanism(&self) -> Mechanism {
        self.lock().mechanism
    }

    pub fn disarmed(&self) -> bool {
        self.lock().disarmed.is_some()
    }

    /// The one line `/readyz` shows for enforcement.
    pub fn describe(&self) -> String {
        let s = self.lock();
        let mut text = format!("mode {}", s.mode.as_str());
        if s.mode != EnforceMode::Off {
            text.push_str(&format!(", mechanism {}", s.mechanism.as_str()));
            if let Some(why) = &s.lsm_unavailable {
                text.push_str(&format!(" (BPF LSM not used: {why})"));
            }
        }
        if let Some(d) = &s.disarmed {
            text.push_str(&format!(
                "; DISARMED at {}: {}; forbidden execs now run and are reported; restart the \
                 agent to re-arm",
                humantime::format_rfc3339_seconds(d.at),
                d.trip
            ));
            if let Some(err) = &d.switch_failed {
                text.push_str(&format!(
                    "; switching the kernel to monitor mode FAILED: {err}"
                ));
            }
        }
        text
    }

    /// The trip, once, for its alert.
    pub fn take_disarm_alert(&self) -> Option<(SystemTime, Trip)> {
        let mut s = self.lock();
        let d = s.disarmed.as_mut().filter(|d| d.alert_pending)?;
        d.alert_pending = false;
        Some((d.at, d.trip.clone()))
    }

    fn disarm(&self, trip: Trip, switch_failed: Option<String>) {
        let mut s = self.lock();
        if switch_failed.is_none() {
            s.mode = EnforceMode::Monitor;
        }
        s.disarmed = Some(Disarmed {
            at: SystemTime::now(),
            trip,
            alert_pending: true,
            switch_failed,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Status> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs the disarmer on each stopped exec, in the reader.
pub struct EnforceTap {
    disarmer: Option<Disarmer>,
    switch: ModeSwitch,
    status: EnforceStatus,
}

impl EnforceTap {
    /// A tap for `status`; `None` when there is nothing to disarm (not in enforce mode, or
    /// `max_distinct: 0`).
    pub fn new(config: &DisarmConfig, switch: ModeSwitch, status: EnforceStatus) -> Option<Self> {
        if status.mode() != EnforceMode::Enforce {
            return None;
        }
        Some(Self {
            disarmer: Some(Disarmer::new(config)?),
            switch,
            status,
        })
    }
}

impl ExecTap for EnforceTap {
    fn on_exec(&mut self, event: &ExecEvent) {
        let Some(e) = event.enforcement.as_ref().filter(|e| e.outcome.stopped()) else {
            return;
        };
        let Some(disarmer) = self.disarmer.as_mut() else {
            return;
        };
        let Some(trip) = disarmer.record(Instant::now(), &e.matched, event.watched_cgroup_id)
        else {
            return;
        };
        self.disarmer = None;
        let switched = self.switch.set(KernelMode::Monitor);
        match &switched {
            Ok(()) => tracing::error!(
                %trip,
                "ENFORCEMENT DISARMED: the kernel is in monitor mode, forbidden execs now run \
                 and are reported (a bad rule must not take the node's workloads down); check \
                 enforce.forbidden and the enforced pods, then restart the agent to re-arm"
            ),
            Err(err) => tracing::error!(
                %trip,
                %err,
                "enforcement should disarm, but switching the kernel to monitor mode failed: \
                 it still stops forbidden execs"
            ),
        }
        self.status
            .disarm(trip, switched.err().map(|e| e.to_string()));
    }
}
