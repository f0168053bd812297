//! Kubernetes Events on the Ingress for what the agent did to it: Warning `SourceDenied`,
//! `Quarantined`, `DenyRefused`, `QuarantineRefused`; Normal `SourceReleased`,
//! `QuarantineLifted` when undone (expiry, `unban`, `release`).

use std::time::SystemTime;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::ObjectReference;

use super::{
    edit::Lifted,
    ledger::{Denied, format_time},
    patch::IngressKey,
};
use crate::response::{
    action::Decided,
    events::{EventSink, Report},
};

/// Addresses named in one release Event at most (the note holds 1 kB).
const MAX_NAMED: usize = 20;

/// Writes the Events; cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    pub events: EventSink,
}

impl Reporter {
    pub fn denied(
        &self,
        key: &IngressKey,
        uid: Option<String>,
        decided: &Decided,
        net: &IpNet,
        until: SystemTime,
        extended: bool,
    ) {
        let verb = if extended {
            "extended the denial of"
        } else {
            "denied"
        };
        self.emit(
            key,
            uid,
            "SourceDenied",
            "Patch",
            true,
            format!(
                "youwatch {verb} client {net} until {} (playbook {}): {}",
                format_time(until),
                decided.playbook,
                decided.evidence.summary()
            ),
        );
    }

    pub fn quarantined(
        &self,
        key: &IngressKey,
        uid: Option<String>,
        decided: &Decided,
        until: SystemTime,
        extended: bool,
    ) {
        let verb = if extended {
            "extended the quarantine of"
        } else {
            "quarantined"
        };
        self.emit(
            key,
            uid,
            "Quarantined",
            "Patch",
            true,
            format!(
                "youwatch {verb} this Ingress (all traffic denied) until {} (playbook {}): {}",
                format_time(until),
                decided.playbook,
                decided.evidence.summary()
            ),
        );
    }

    /// `reason`: `DenyRefused` or `QuarantineRefused`.
    pub fn refused(
        &self,
        key: &IngressKey,
        uid: Option<String>,
        reason: &'static str,
        decided: &Decided,
        why: &str,
    ) {
        self.emit(
            key,
            uid,
            reason,
            "Refuse",
            true,
            format!(
                "youwatch did not change this Ingress (playbook {}): {why}; detection: {}",
                decided.playbook,
                decided.evidence.summary()
            ),
        );
    }

    /// Bans removed; `why`: "expired", "unbanned by ...".
    pub fn released(
        &self,
        key: &IngressKey,
        uid: Option<String>,
        released: &[(IpNet, Denied)],
        why: &str,
    ) {
        if released.is_empty() {
            return;
        }
        let mut named: Vec<String> = released
            .iter()
            .take(MAX_NAMED)
            .map(|(net, d)| {
                format!(
                    "{net} (denied by {} until {})",
                    d.node,
                    format_time(d.until)
                )
            })
            .collect();
        if released.len() > MAX_NAMED {
            named.push(format!("and {} more", released.len() - MAX_NAMED));
        }
        self.emit(
            key,
            uid,
            "SourceReleased",
            "Patch",
            false,
            format!(
                "youwatch removed {} denied client(s) ({why}): {}",
                released.len(),
                named.join(", ")
            ),
        );
    }

    pub fn lifted(&self, key: &IngressKey, uid: Option<String>, lifted: &Lifted, why: &str) {
        let restored = match &lifted.allowlist {
            Some(v) => format!("allowlist {v:?}"),
            None => "no allowlist".into(),
        };
        self.emit(
            key,
            uid,
            "QuarantineLifted",
            "Patch",
            false,
            format!(
                "youwatch lifted the quarantine ({why}; it was decided by {} until {}): {restored}",
                lifted.record.node,
                format_time(lifted.record.until)
            ),
        );
    }

    fn emit(
        &self,
        key: &IngressKey,
        uid: Option<String>,
        reason: &'static str,
        action: &'static str,
        warning: bool,
        note: String,
    ) {
        self.events.emit(Report {
            regarding: ingress_ref(key, uid),
            reason,
            action,
            note,
            warning,
        });
    }
}

fn ingress_ref(key: &IngressKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("networking.k8s.io/v1".into()),
        kind: Some("Ingress".into()),
        namespace: Some(key.namespace.clone()),
        name: Some(key.name.clone()),
        uid,
        ..ObjectReference::default()
    }
}
