//! Workload inventory: which cgroups to watch, and who (pod, container, process lineage) did
//! each exec.

use serde::Deserialize;

/// `inventory:` section.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {}
