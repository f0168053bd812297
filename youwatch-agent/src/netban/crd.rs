//! `IPBan` (`ipbans.youwatch.dev/v1alpha1`, cluster-scoped): one banned source address or
//! CIDR with its expiry, the cluster's ban ledger for the node ban. The manifest is
//! `deploy/base/ipban-crd.yaml` (a test holds it to this type).
//!
//! An agent's ban of an address is the object named after the address
//! ([`name_for`]: `v4-203-0-113-9-32`), so two agents banning the same address meet on one
//! object (the second finds it, 409 AlreadyExists, and extends it if its ban lasts longer).
//! Users may create IPBans by hand with any name, for ranges too.

use std::{net::IpAddr, time::SystemTime};

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::response::ingress::ledger::{format_time, parse_time};

pub const GROUP: &str = "youwatch.dev";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "IPBan";
pub const PLURAL: &str = "ipbans";

/// Longest evidence kept on an object.
pub const MAX_EVIDENCE: usize = 512;

/// An `IPBan` object.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBan {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: IpBanSpec,
}

/// What is banned, until when, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpBanSpec {
    /// An address or CIDR: `203.0.113.9/32`, `2001:db8::/64`.
    pub address: String,
    /// RFC 3339; the ban lapses then on every node, whoever removes the object.
    pub expires: String,
    #[serde(default)]
    pub reason: String,
    /// The detection that caused it (rule, client, rule ids...).
    #[serde(default)]
    pub evidence: String,
    /// The node whose agent decided the ban (or last extended it).
    #[serde(default)]
    pub origin_node: String,
    /// The scorer's offense count (a repeat offender's ban is longer).
    #[serde(default)]
    pub offenses: u32,
    /// The attacked virtual host, when known (informational: the node ban is per address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

impl k8s_openapi::Resource for IpBan {
    const API_VERSION: &'static str = "youwatch.dev/v1alpha1";
    const GROUP: &'static str = GROUP;
    const KIND: &'static str = KIND;
    const VERSION: &'static str = VERSION;
    const URL_PATH_SEGMENT: &'static str = PLURAL;
    type Scope = k8s_openapi::ClusterResourceScope;
}

impl k8s_openapi::Metadata for IpBan {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl IpBan {
    /// A new object named `name`.
    pub fn new(name: String, spec: IpBanSpec) -> IpBan {
        IpBan {
            api_version: <IpBan as k8s_openapi::Resource>::API_VERSION.into(),
            kind: KIND.into(),
            metadata: ObjectMeta {
                name: Some(name),
                ..ObjectMeta::default()
            },
            spec,
        }
    }

    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The banned range and its expiry, or what is wrong with the object.
    pub fn parsed(&self) -> Result<(IpNet, SystemTime), String> {
        Ok((
            parse_address(&self.spec.address)?,
            parse_time(&self.spec.expires).map_err(|e| format!("spec.expires {e}"))?,
        ))
    }
}

/// An address (`203.0.113.9`, as `/32`) or CIDR, as an IPBan holds it.
pub fn parse_address(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    text.parse::<IpNet>().map_err(|_| {
        format!(
            "spec.address {text:?} is not an address or CIDR (e.g. 203.0.113.9 or 198.51.100.0/24)"
        )
    })
}

/// The object name of the agents' ban of `net`: `v4-203-0-113-9-32`,
/// `v6-2001-0db8-0000-0000-0000-0000-0000-0001-128` (every IPv6 group written out, so the
/// name never holds `--` and stays a DNS label).
pub fn name_for(net: &IpNet) -> String {
    match net {
        IpNet::V4(n) => {
            let [a, b, c, d] = n.addr().octets();
            format!("v4-{a}-{b}-{c}-{d}-{}", n.prefix_len())
        }
        IpNet::V6(n) => {
            let groups: Vec<String> = n
                .addr()
                .segments()
                .iter()
                .map(|g| format!("{g:04x}"))
                .collect();
            format!("v6-{}-{}", groups.join("-"), n.prefix_len())
        }
    }
}

/// The spec of an agent's ban.
pub fn spec(
    net: &IpNet,
    expires: SystemTime,
    reason: &str,
    evidence: &str,
    origin_node: &str,
    offenses: u32,
    host: Option<&str>,
) -> IpBanSpec {
    IpBanSpec {
        address: net.to_string(),
        expires: format_time(expires),
        reason: reason.to_owned(),
        evidence: crate::response::action::truncate(evidence, MAX_EVIDENCE),
        origin_node: origin_node.to_owned(),
        offenses,
        host: host.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn names_are_dns_labels_per_address() {
        let name = |s: &str| name_for(&s.parse().unwrap());
        assert_eq!(name("203.0.113.9/32"), "v4-203-0-113-9-32");
        assert_eq!(name("198.51.100.0/24"), "v4-198-51-100-0-24");
        let v6 = name("2001:db8::1/128");
        assert_eq!(v6, "v6-2001-0db8-0000-0000-0000-0000-0000-0001-128");
        assert!(v6.len() <= 63 && !v6.contains("--"));
        assert_eq!(name("::/0").len(), "v6-".len() + 8 * 5 - 1 + 2);
    }

    #[test]
    fn parses_its_spec_and_names_what_is_wrong() {
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let net: IpNet = "203.0.113.9/32".parse().unwrap();
        let ban = IpBan::new(name_for(&net), spec(&net, at, "r", "e", "node-a", 2, None));
        assert_eq!(ban.parsed().unwrap(), (net, at));
        let json = serde_json::to_value(&ban).unwrap();
        assert_eq!(json["apiVersion"], "youwatch.dev/v1alpha1");
        assert_eq!(json["kind"], "IPBan");
        assert_eq!(json["spec"]["originNode"], "node-a");
        assert_eq!(json["spec"]["expires"], "2027-01-15T08:00:00Z");
        assert!(json["spec"].get("host").is_none());

        let mut bad = ban.clone();
        bad.spec.address = "nope".into();
        assert!(bad.parsed().unwrap_err().contains("\"nope\""));
        let mut bad = ban;
        bad.spec.expires = "soon".into();
        assert!(bad.parsed().unwrap_err().contains("spec.expires \"soon\""));
        assert_eq!(
            parse_address("::ffff:203.0.113.9").unwrap().to_string(),
            "203.0.113.9/32"
        );
    }
}
