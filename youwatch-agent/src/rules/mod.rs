//! Falco-format rules evaluated on our own exec events.

use serde::Deserialize;

/// `rules:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {}
