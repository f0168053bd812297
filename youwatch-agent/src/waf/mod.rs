//! ModSecurity / Coraza audit-log pipeline: tail, parse, classify, score attackers per client IP.

use serde::Deserialize;

/// `waf:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WafConfig {}
