//! Shared by the `rules_*` tests: loading rule sets and running synthetic execs through them.

#![allow(dead_code)]

use std::sync::Arc;

use youwatch_agent::{
    detection::Priority,
    event::EnrichedExec,
    rules::{
        DEFAULT_RULES, DEFAULT_RULES_NAME, Engine, LoadOptions, RuleMatching, RuleSet,
        RulesMetrics, load, source::SourceFile,
    },
};

const VENDORED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/falco/falco_rules.yaml"
);
const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/falco/falco_rules.yaml"
);

/// Falco's stable ruleset: the vendored copy (so the tests run on a clean clone), checked
/// against `../shared/falco/falco_rules.yaml` when that exists.
pub fn stable_rules() -> Arc<SourceFile> {
    let vendored = std::fs::read_to_string(VENDORED).expect("vendored falco_rules.yaml");
    if let Ok(shared) = std::fs::read_to_string(SHARED) {
        assert!(
            shared == vendored,
            "{SHARED} differs from the vendored copy {VENDORED}: update the copy (and its README)"
        );
    }
    SourceFile::new("falco_rules.yaml", vendored)
}

/// Falco's incubating and sandbox rulesets (vendored, same commit as the stable one); they
/// load after the stable ruleset, whose macros and lists they use.
pub fn incubating_rules() -> Arc<SourceFile> {
    vendored("falco-incubating_rules.yaml")
}

pub fn sandbox_rules() -> Arc<SourceFile> {
    vendored("falco-sandbox_rules.yaml")
}

fn vendored(name: &str) -> Arc<SourceFile> {
    let path = format!("{}/tests/data/falco/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    SourceFile::new(name, text)
}

pub fn default_rules() -> Arc<SourceFile> {
    SourceFile::new(DEFAULT_RULES_NAME, DEFAULT_RULES.to_owned())
}

/// Loads files in order and insists on zero errors.
pub fn load_ok(files: &[Arc<SourceFile>]) -> RuleSet {
    let set = load(files, &LoadOptions::default());
    assert!(
        set.diagnostics.errors.is_empty(),
        "load errors: {:#?}",
        set.diagnostics.errors
    );
    set
}

pub fn engine(files: &[Arc<SourceFile>], matching: RuleMatching) -> Engine {
    Engine::new(
        &load_ok(files),
        matching,
        Vec::new(),
        "node-1".into(),
        RulesMetrics::default(),
    )
}

/// (rule, priority) of every detection for `exec`.
pub fn fired(engine: &Engine, exec: &EnrichedExec) -> Vec<(String, Priority)> {
    engine
        .evaluate(exec)
        .into_iter()
        .map(|d| (d.rule, d.priority))
        .collect()
}
