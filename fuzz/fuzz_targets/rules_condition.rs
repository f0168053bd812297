//! An arbitrary condition through the parser and the compiler (with the embedded default
//! rules' lists and macros in scope), then evaluated on execs. Nothing may panic; errors
//! must point inside the text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use youwatch_agent::rules::{
    DEFAULT_RULES, Engine, LoadOptions, RuleMatching, RulesMetrics, condition, load,
    sample::Exec, source::SourceFile,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = condition::parse(text) {
        assert!(e.offset <= text.len(), "error offset {} past the end", e.offset);
        return;
    }
    // As a rule after the defaults: exercises macro and list resolution, folding, outputs.
    let quoted = text.replace('\'', "''");
    let rule = format!(
        "- rule: fuzz\n  desc: d\n  condition: '{quoted}'\n  output: 'x %proc.name %proc.aname[2] %k8s.pod.label[app]'\n  priority: WARNING\n"
    );
    let set = load(
        &[
            SourceFile::new("defaults.yaml", DEFAULT_RULES.to_owned()),
            SourceFile::new("fuzz.yaml", rule),
        ],
        &LoadOptions::default(),
    );
    if !set.diagnostics.errors.is_empty() {
        return;
    }
    let engine = Engine::new(&set, RuleMatching::All, Vec::new(), "node".into(), RulesMetrics::default());
    for exec in [
        Exec::new(["sh", "-c", "id"]).ancestor(["node", "app.js"]).ancestor(["runc"]).pod("ns", "juice-shop-1").build(),
        Exec::new(["/usr/bin/python3", "-c", "import socket"]).user(33, "www-data").build(),
    ] {
        let _ = engine.evaluate(&exec);
    }
});
