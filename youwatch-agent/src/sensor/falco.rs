//! Falco fallback input: alerts from an existing Falco (`http_output` webhook, or its
//! `file_output` JSON lines) become `Detection`s.

use serde::Deserialize;

/// `falco:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FalcoConfig {}
