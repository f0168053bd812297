//! Falco-format rules evaluated on our own exec events.
//!
//! Rule files are read in order (the embedded defaults, then `rules.files`): each item is
//! read and checked ([`reader`]) and collected with Falco's semantics for redefinition,
//! `append`, `override` and `enabled` ([`collector`]). As in Falco, exceptions are written
//! into each condition's text and list names are substituted by their items before the
//! condition is parsed ([`condition`]); conditions are then compiled once into trees of
//! precompiled field tests ([`compile`], [`program`]). A rule that needs a field or event type
//! exec events do not carry is disabled with one warning that names it; everything else loads.
//! [`Engine`] evaluates the rules on each [`EnrichedExec`](crate::event::EnrichedExec) and renders matches as
//! [`Detection`](crate::detection::Detection)s with Falco's output format.

mod collector;
pub mod compile;
pub mod condition;
mod diagnostics;
mod document;
mod engine;
mod exceptions;
pub mod fields;
mod glob;
mod lists;
mod matcher;
pub mod output;
pub mod program;
mod reader;
pub mod replay;
mod requirements;
mod ruleset;
#[cfg(any(test, feature = "testing"))]
pub mod sample;
pub mod source;
mod transform;

use std::{path::PathBuf, sync::Arc};

use serde::Deserialize;

pub use diagnostics::{Diagnostics, LoadError, Warning};
pub use engine::{Engine, RuleMatching, RulesMetrics, subject};
pub use requirements::{ENGINE_VERSION, Version};
pub use ruleset::{
    CompiledRule, LoadOptions, OffReason, RuleInfo, RuleSet, Status, Unsupported, load, read_file,
};

use crate::detection::Priority;

/// The embedded default rules (`youwatch-agent/rules/default_rules.yaml`).
pub const DEFAULT_RULES: &str = include_str!("../../rules/default_rules.yaml");
/// How messages name the embedded defaults.
pub const DEFAULT_RULES_NAME: &str = "<embedded>/default_rules.yaml";

/// `rules:` section.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RulesConfig {
    /// Load the embedded default rules first.
    pub embedded_defaults: bool,
    /// Falco rule files, loaded after the defaults in this order; later files override
    /// earlier ones (redefine, `append`, `override`, `enabled`).
    pub files: Vec<PathBuf>,
    /// Rules less severe than this are not evaluated.
    pub min_priority: Priority,
    /// `first`: only the first matching rule (in load order) fires for an exec, like Falco's
    /// default; `all`: every matching rule fires.
    pub rule_matching: RuleMatching,
    pub disable: DisableConfig,
    /// Fields added to every alert's `output_fields`, besides those its output names.
    pub extra_output_fields: Vec<String>,
}

/// `rules.disable`: switch rules off without editing their files.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DisableConfig {
    /// Rule names.
    pub rules: Vec<String>,
    /// Rules carrying any of these tags.
    pub tags: Vec<String>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            embedded_defaults: true,
            files: Vec::new(),
            min_priority: Priority::Debug,
            rule_matching: RuleMatching::First,
            disable: DisableConfig::default(),
            extra_output_fields: [
                "container.id",
                "container.name",
                "container.image.repository",
                "container.image.tag",
                "k8s.ns.name",
                "k8s.pod.name",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{} error(s) in the rules:\n{}", .0.len(), join_lines(.0))]
    Load(Vec<LoadError>),
    #[error("rules.extra_output_fields: {0}")]
    ExtraField(String),
}

fn join_lines(errors: &[LoadError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl RulesConfig {
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            min_priority: self.min_priority,
            disabled_rules: self.disable.rules.clone(),
            disabled_tags: self.disable.tags.clone(),
        }
    }

    /// The embedded defaults (when enabled) and the configured files, read.
    pub fn sources(&self) -> Result<Vec<Arc<source::SourceFile>>, RulesError> {
        let mut files = Vec::new();
        if self.embedded_defaults {
            files.push(source::SourceFile::new(
                DEFAULT_RULES_NAME,
                DEFAULT_RULES.to_owned(),
            ));
        }
        for path in &self.files {
            files.push(read_file(path).map_err(|e| RulesError::Load(vec![e]))?);
        }
        Ok(files)
    }

    /// Loads and compiles the configured rules; logs warnings; refuses on any error.
    pub fn engine(&self, hostname: String, metrics: RulesMetrics) -> Result<Engine, RulesError> {
        let set = load(&self.sources()?, &self.load_options());
        if !set.diagnostics.errors.is_empty() {
            return Err(RulesError::Load(set.diagnostics.errors));
        }
        for n in &set.diagnostics.notes {
            tracing::info!("{}", n.labelled("note"));
        }
        for w in set
            .diagnostics
            .warnings
            .iter()
            .chain(&set.unsupported_warnings())
        {
            tracing::warn!("{w}");
        }
        let extra = self
            .extra_output_fields
            .iter()
            .map(|f| output::OutField::named(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(RulesError::ExtraField)?;
        let (evaluable, off, unsupported) = set.counts();
        tracing::info!(
            evaluable,
            off,
            unsupported,
            "rules loaded ({} files)",
            self.files.len() + usize::from(self.embedded_defaults)
        );
        Ok(Engine::new(
            &set,
            self.rule_matching,
            extra,
            hostname,
            metrics,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_load_cleanly() {
        let config = RulesConfig::default();
        let set = load(&config.sources().unwrap(), &config.load_options());
        assert!(
            set.diagnostics.errors.is_empty(),
            "{:?}",
            set.diagnostics.errors
        );
        assert!(
            set.diagnostics.warnings.is_empty(),
            "{:?}",
            set.diagnostics.warnings
        );
        assert!(set.unsupported_warnings().is_empty());
        assert!(
            set.infos.iter().all(|i| i.status == Status::Evaluable),
            "{:?}",
            set.infos
        );
        assert_eq!(set.infos.len(), 6);
    }

    #[test]
    fn config_priority_is_case_insensitive() {
        let c: RulesConfig =
            serde_saphyr::from_str("min_priority: warning\nrule_matching: all\n").unwrap();
        assert_eq!(c.min_priority, Priority::Warning);
        assert_eq!(c.rule_matching, RuleMatching::All);
        assert!(serde_saphyr::from_str::<RulesConfig>("min_priority: loud\n").is_err());
    }
}
