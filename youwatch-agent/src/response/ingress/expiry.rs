//! Expiry: every agent removes the expired entries of the ledgers on every Ingress it
//! manages — its own, another agent's (gone or not), and those that expired while it was
//! down (the first scan runs as soon as the Ingresses are listed). It sleeps until the
//! earliest expiry and rescans whenever an Ingress changes. Agents racing to remove the
//! same entry are harmless: the loser's re-read finds nothing left to do.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use k8s_openapi::api::networking::v1::Ingress;
use tokio::sync::Notify;

use super::{
    coalesce::Coalescer,
    edit::{Names, Op, Verdict},
    index::IngressIndex,
    ledger::{DenyLedger, Quarantined},
    metrics::IngressMetrics,
    patch::IngressKey,
    report::Reporter,
};
use crate::{
    cluster::rescan::{Rescan, earliest},
    stage::{StopSignal, Task},
};

/// Longest sleep between scans (clock changes, missed notifications).
const RESCAN: Duration = Duration::from_secs(60);
/// How long one removal is retried before the next scan tries again.
const REMOVAL_DEADLINE: Duration = Duration::from_secs(60);
/// Wait after a failed removal before trying that Ingress again.
const AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The expiry task's parts.
pub struct Expiry {
    pub index: IngressIndex,
    pub coalescer: Coalescer,
    pub names: Arc<Names>,
    pub reporter: Reporter,
    pub metrics: IngressMetrics,
}

impl Expiry {
    pub fn spawn(self, stop: StopSignal) -> Task {
        stop.spawn_until(self.run())
    }

    async fn run(self) {
        let this = Arc::new(self);
        if !this.index.listed().await {
            return;
        }
        let mut rescan = Rescan::new(this.index.changes(), RESCAN);
        let in_flight: Arc<Mutex<HashSet<IngressKey>>> = Arc::default();
        // Woken when a removal ends (its Ingress may be due again).
        let removed = Arc::new(Notify::new());
        loop {
            let now = SystemTime::now();
            let mut next: Option<SystemTime> = None;
            for ingress in this.index.all() {
                let (expired, later) = due(&ingress, &this.names, now);
                next = earliest(next, later);
                if !expired {
                    continue;
                }
                let key = IngressKey::of(&ingress);
                if !lock(&in_flight).insert(key.clone()) {
                    continue;
                }
                let (this, in_flight, removed) = (this.clone(), in_flight.clone(), removed.clone());
                tokio::spawn(async move {
                    let ok = this.remove_expired(&key, now).await;
                    if !ok {
                        tokio::time::sleep(AFTER_FAILURE).await;
                    }
                    lock(&in_flight).remove(&key);
                    removed.notify_one();
                });
            }
            if !rescan.wait_or(next, removed.notified()).await {
                return;
            }
        }
    }

    /// Removes what expired on `key` by `now`; whether the API server took it.
    async fn remove_expired(&self, key: &IngressKey, now: SystemTime) -> bool {
        let deadline = SystemTime::now() + REMOVAL_DEADLINE;
        match self
            .coalescer
            .submit(key.clone(), Op::Expire(now), deadline)
            .await
        {
            Ok(done) => {
                if let Verdict::Removed { released, lifted } = &done.verdict {
                    self.metrics.expired.inc_by(released.len() as u64);
                    let addresses: Vec<String> =
                        released.iter().map(|(n, _)| n.to_string()).collect();
                    tracing::info!(ingress = %key, released = ?addresses, quarantine_lifted = lifted.is_some(), "expired bans removed");
                    self.reporter
                        .released(key, done.uid.clone(), released, "their ban expired");
                    if let Some(lifted) = lifted {
                        self.metrics.lifted.inc();
                        self.reporter
                            .lifted(key, done.uid.clone(), lifted, "it expired");
                    }
                }
                true
            }
            Err(f) => {
                tracing::warn!(ingress = %key, error = %f, "cannot remove expired bans yet; retrying");
                false
            }
        }
    }
}

/// Whether `ingress` holds an entry expired at `now`, and the next expiry after `now`.
fn due(ingress: &Ingress, names: &Names, now: SystemTime) -> (bool, Option<SystemTime>) {
    let annotations = ingress.metadata.annotations.as_ref();
    let get = |k: &str| annotations.and_then(|a| a.get(k)).map(String::as_str);
    let mut untils: Vec<SystemTime> = DenyLedger::parse(get(&names.deny_ledger))
        .map(|l| l.entries.values().map(|d| d.until).collect())
        .unwrap_or_default();
    if let Ok(Some(q)) = Quarantined::parse(get(&names.quarantine_ledger)) {
        untils.push(q.until);
    }
    let expired = untils.iter().any(|t| *t <= now);
    let next = untils.into_iter().filter(|t| *t > now).min();
    (expired, next)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::response::ResponseConfig;

    #[test]
    fn finds_expired_and_next() {
        let names = Names::new(&ResponseConfig::default());
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop", "annotations": {
                "youwatch.dev/denied-sources": r#"{"1.2.3.4/32":{"until":"1970-01-01T00:01:40Z"},"1.2.3.5/32":{"until":"1970-01-01T00:03:20Z"}}"#,
                "youwatch.dev/quarantine": r#"{"previous":null,"until":"1970-01-01T00:02:30Z"}"#,
            }},
        }))
        .unwrap();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(due(&ingress, &names, at(50)), (false, Some(at(100))));
        assert_eq!(due(&ingress, &names, at(100)), (true, Some(at(150))));
        assert_eq!(due(&ingress, &names, at(300)), (true, None));
    }
}
