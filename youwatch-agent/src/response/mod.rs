//! Response: turns detections into Kubernetes actions (delete pod, deny IP on the Ingress,
//! quarantine), by playbook, with dry-run, allowlists, rate limits, expiry and Events.

use serde::Deserialize;

/// `response:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResponseConfig {}
