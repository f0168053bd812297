//! The `node_ban:` section. `config/default.yaml` documents each setting with its default.

use std::{path::PathBuf, time::Duration};

use ipnet::IpNet;
use serde::Deserialize;

use super::kernel::AttachMode;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeBanConfig {
    /// Enforce the cluster's IPBan objects in this node's kernel.
    pub enabled: bool,
    /// Interfaces to attach to. Empty: those of the default IPv4 and IPv6 routes.
    pub interfaces: Vec<String>,
    pub attach: AttachMode,
    /// Network namespace whose interfaces are used (a path such as `/proc/1/ns/net`). Empty:
    /// the agent's own (a `hostNetwork` pod).
    pub netns: PathBuf,
    /// bpffs directory where the deny lists and counters are pinned, so a restarted agent
    /// finds its bans in force at once. Empty: nothing pinned (bans are reloaded from the
    /// ledger at start).
    pub pin_dir: PathBuf,
    /// Capacity of each deny list (IPv4, IPv6) and of the per-entry drop counters.
    pub max_entries: u32,
    /// Load balancers and proxies in front of the nodes (CIDRs): never banned, and an
    /// interface whose connections come mostly from them is refused.
    pub proxies: Vec<IpNet>,
    pub visibility: VisibilityConfig,
    /// An IPBan whose author is gone is deleted this long after its expiry by another agent
    /// (plus a per-node spread within the same length); its author deletes it at expiry.
    #[serde(with = "humantime_serde")]
    pub gc_grace: Duration,
}

impl Default for NodeBanConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interfaces: Vec::new(),
            attach: AttachMode::Auto,
            netns: PathBuf::new(),
            pin_dir: PathBuf::from("/sys/fs/bpf/youwatch"),
            max_entries: youwatch_common::netban::limits::DEFAULT_MAX_BANS,
            proxies: Vec::new(),
            visibility: VisibilityConfig::default(),
            gc_grace: Duration::from_secs(300),
        }
    }
}

/// `node_ban.visibility:` — does an interface see the clients' own addresses?
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct VisibilityConfig {
    /// Destination ports of the ingress traffic: connection opens (TCP SYN) to them are
    /// sampled by source. Empty: no check.
    pub ports: Vec<u16>,
    /// How often the sample is judged (then cleared).
    #[serde(with = "humantime_serde")]
    pub check_every: Duration,
    /// Connection opens a sample needs before it is judged.
    pub min_connections: u64,
    /// Below this share of connections from client addresses (not the node's own, not
    /// `proxies`, not `response.allowlist`), the interface is refused.
    pub min_client_share: f64,
}

impl Default for VisibilityConfig {
    fn default() -> Self {
        Self {
            ports: vec![80, 443],
            check_every: Duration::from_secs(30),
            min_connections: 20,
            min_client_share: 0.5,
        }
    }
}

/// Shortest prefixes the kernel accepts: a wider ban would cut off whole providers.
pub const MIN_PREFIX_V4: u8 = 16;
pub const MIN_PREFIX_V6: u8 = 48;

/// Largest `max_entries`: the per-CPU drop counters cost 8 bytes × entries × CPUs.
pub const MAX_ENTRIES: u32 = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("node_ban.{key}: {message}")]
pub struct ConfigError {
    pub key: &'static str,
    pub message: String,
}

impl NodeBanConfig {
    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError { key, message });
        if self.max_entries == 0 || self.max_entries > MAX_ENTRIES {
            return bad(
                "max_entries",
                format!("{} is not between 1 and {MAX_ENTRIES}", self.max_entries),
            );
        }
        if let Some(name) = self.interfaces.iter().find(|n| !valid_ifname(n)) {
            return bad(
                "interfaces",
                format!("{name:?} is not an interface name (1 to 15 bytes, no '/', ':' or blanks)"),
            );
        }
        let v = &self.visibility;
        if !(0.0..=1.0).contains(&v.min_client_share) {
            return bad(
                "visibility.min_client_share",
                format!("{} is not a share between 0 and 1", v.min_client_share),
            );
        }
        if !v.ports.is_empty() && v.check_every.is_zero() {
            return bad("visibility.check_every", "must be more than 0".into());
        }
        if v.ports.contains(&0) {
            return bad("visibility.ports", "0 is not a port".into());
        }
        Ok(())
    }
}

/// What the kernel accepts as an interface name (`dev_valid_name`).
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key() {
        let check = |change: fn(&mut NodeBanConfig), key: &str| {
            let mut c = NodeBanConfig::default();
            change(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(&format!("node_ban.{key}:")), "{err}");
        };
        check(|c| c.max_entries = 0, "max_entries");
        check(|c| c.interfaces = vec!["eth0:1".into()], "interfaces");
        check(
            |c| c.interfaces = vec!["a-very-long-ifname".into()],
            "interfaces",
        );
        check(
            |c| c.visibility.min_client_share = 1.5,
            "visibility.min_client_share",
        );
        check(|c| c.visibility.ports = vec![0], "visibility.ports");
        NodeBanConfig::default().validate().unwrap();
    }
}
