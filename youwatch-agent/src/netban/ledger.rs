//! The cluster's ban ledger for the node ban: IPBan objects on the API server.
//!
//! - **Record** (the response, deciding a ban): create the address's object; if it exists
//!   (another agent, or an earlier offense), extend it when the new ban lasts longer — a merge
//!   patch carrying the `resourceVersion` it was computed from, re-read and recomputed on 409
//!   — and leave it when it already lasts as long. An object found expired (not yet deleted)
//!   is renewed as a fresh ban.
//! - **Delete when expired** (every agent, [`super::gc`]): with `uid` and `resourceVersion`
//!   preconditions, so a ban extended meanwhile is never deleted.
//! - **Delete** (`unban`): whoever wrote it (`uid` precondition only).
//!
//! Transient errors (5xx, 429, timeouts, connection loss) are retried until the deadline.

use std::time::SystemTime;

use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
};

use super::crd::{IpBan, IpBanSpec, name_for};
use crate::{
    cluster::rbac,
    response::{
        config::RetryConfig,
        ingress::ledger::parse_time,
        retry::{ErrorClass, Failure, with_retry},
    },
};

/// The field manager named in managedFields.
const FIELD_MANAGER: &str = "youwatch-agent";

/// Times a record is recomputed after conflicts before giving up (each conflict means
/// someone else wrote: the next try starts from their version).
const MAX_CONFLICTS: u32 = 16;

/// What [`Ledger::record`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new object.
    Created,
    /// An existing ban now lasts longer (or an expired one was renewed).
    Extended { previous: SystemTime },
    /// An existing ban already lasts as long or longer: nothing written.
    Covered { expires: SystemTime },
}

/// Reads and writes IPBans; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    pub client: Client,
    pub retry: RetryConfig,
    /// `--dry-run=server`: writes carry dryRun=All.
    pub server_dry_run: bool,
}

impl Ledger {
    fn writer(&self) -> Api<IpBan> {
        rbac::IPBAN_WRITE.all(self.client.clone())
    }

    /// Creates or extends the ban `spec` (its address's object), until done or `deadline`.
    pub async fn record(
        &self,
        spec: &IpBanSpec,
        deadline: SystemTime,
        on_retry: &(dyn Fn() + Sync),
    ) -> Result<Recorded, Failure> {
        let net = super::crd::parse_address(&spec.address).map_err(permanent)?;
        let wanted = parse_time(&spec.expires).map_err(permanent)?;
        let name = name_for(&super::kernel::table::normalize(net));
        let api = self.writer();
        let post = PostParams {
            dry_run: self.server_dry_run,
            field_manager: Some(FIELD_MANAGER.into()),
        };
        for _ in 0..MAX_CONFLICTS {
            let object = IpBan::new(name.clone(), spec.clone());
            let created = with_retry(
                &self.retry,
                deadline,
                |_| on_retry(),
                || api.create(&post, &object),
            )
            .await;
            match created {
                Ok(_) => return Ok(Recorded::Created),
                Err(f) if f.class == ErrorClass::Conflict => {}
                Err(f) => return Err(f),
            }
            // It exists: extend it if ours lasts longer.
            let existing =
                match with_retry(&self.retry, deadline, |_| on_retry(), || api.get(&name)).await {
                    Ok(existing) => existing,
                    // Deleted in between (expired and collected): create it again.
                    Err(f) if f.class == ErrorClass::NotFound => continue,
                    Err(f) => return Err(f),
                };
            let previous = parse_time(&existing.spec.expires).ok();
            let now = SystemTime::now();
            let in_force = previous.filter(|p| *p > now);
            if let Some(previous) = in_force
                && previous >= wanted
            {
                return Ok(Recorded::Covered { expires: previous });
            }
            let mut merged = spec.clone();
            if in_force.is_some() {
                merged.offenses = merged.offenses.max(existing.spec.offenses);
            }
            let body = serde_json::json!({
                "metadata": {"resourceVersion": existing.metadata.resource_version},
                "spec": merged,
            });
            let params = PatchParams {
                dry_run: self.server_dry_run,
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            let patch = Patch::Merge(&body);
            let patched = with_retry(
                &self.retry,
                deadline,
                |_| on_retry(),
                || api.patch(&name, &params, &patch),
            )
            .await;
            match patched {
                Ok(_) => {
                    return Ok(Recorded::Extended {
                        previous: previous.unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
                // Someone wrote first (409), or it was deleted (404): start over from theirs.
                Err(f) if matches!(f.class, ErrorClass::Conflict | ErrorClass::NotFound) => {}
                Err(f) => return Err(f),
            }
        }
        Err(Failure {
            class: ErrorClass::Transient,
            message: format!("IPBan {name}: still conflicting after {MAX_CONFLICTS} re-reads"),
        })
    }

    /// Deletes `ban` if it is still the version seen (an extension in between keeps it).
    /// Whether it was deleted by this call.
    pub async fn delete_expired(&self, ban: &IpBan, deadline: SystemTime) -> Result<bool, Failure> {
        let version = ban.metadata.resource_version.clone();
        self.delete_as_seen(ban, version, deadline).await
    }

    /// Deletes `ban` (`unban`), whatever its version; false if it was gone already.
    pub async fn delete(&self, ban: &IpBan, deadline: SystemTime) -> Result<bool, Failure> {
        self.delete_as_seen(ban, None, deadline).await
    }

    /// Deletes `ban` if its uid (and `resource_version`, when given) still match; false if it
    /// was gone or changed.
    async fn delete_as_seen(
        &self,
        ban: &IpBan,
        resource_version: Option<String>,
        deadline: SystemTime,
    ) -> Result<bool, Failure> {
        let api: Api<IpBan> = rbac::IPBAN_DELETE.all(self.client.clone());
        let params = DeleteParams {
            dry_run: self.server_dry_run,
            preconditions: Some(Preconditions {
                uid: ban.metadata.uid.clone(),
                resource_version,
            }),
            ..DeleteParams::default()
        };
        let name = ban.name().to_owned();
        match with_retry(&self.retry, deadline, |_| {}, || api.delete(&name, &params)).await {
            Ok(_) => Ok(true),
            Err(f) if matches!(f.class, ErrorClass::Conflict | ErrorClass::NotFound) => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Every IPBan (`bans`). `None` when the API server does not serve IPBans (the CRD is not
    /// installed).
    pub async fn list(&self, deadline: SystemTime) -> Result<Option<Vec<IpBan>>, Failure> {
        let api: Api<IpBan> = rbac::IPBAN_WATCH.all(self.client.clone());
        let params = ListParams::default();
        match with_retry(&self.retry, deadline, |_| {}, || api.list(&params)).await {
            Ok(list) => Ok(Some(list.items)),
            Err(f) if f.class == ErrorClass::NotFound => Ok(None),
            Err(f) => Err(f),
        }
    }
}

fn permanent(message: String) -> Failure {
    Failure {
        class: ErrorClass::Permanent,
        message,
    }
}
