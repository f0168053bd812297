//! Exactly-once soak (`cargo xtask bench soak`; needs root: the agent loads its eBPF sensor).
//!
//! Runs every scenario of `tests/support/soak/scenarios.rs` against the release agent: a
//! writer of uniquely numbered ModSecurity entries (20,000/s by default), the rotator
//! (rename, copytruncate, delete-and-recreate, symlink swap, quick sequences), SIGTERM and
//! `kill -9` restarts; prints per scenario what was written, lost (and how much of it fell in
//! copytruncate's own window), repeated, and how stops went.
//!
//! `cargo test --all-targets` runs this binary without `--bench`: then one short scenario
//! checks the harness works.

#[path = "../tests/support/mod.rs"]
mod support;

use std::{path::PathBuf, time::Instant};

use support::{bench_args, require, soak};

struct Args {
    rate: u64,
    secs: u64,
    only: Vec<String>,
    dir: Option<PathBuf>,
    benching: bool,
}

#[derive(clap::Parser, Default)]
struct Cli {
    /// Entries written per second (default 20000).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds per scenario (default 30).
    #[arg(long)]
    secs: Option<u64>,
    /// Only the scenarios of these names (repeatable).
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Scratch directory for the scenarios (default: the system's); a failed scenario's
    /// files are kept there.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Set by `cargo bench`.
    #[arg(long)]
    bench: bool,
}

fn args() -> Args {
    let (cli, benching) = bench_args::parse::<Cli>();
    Args {
        rate: cli.rate.unwrap_or(20_000),
        secs: cli.secs.unwrap_or(30),
        only: cli.only,
        dir: cli.dir,
        benching,
    }
}

fn main() {
    let args = args();
    if !require::root_and_cgroup2("soak bench") {
        return;
    }
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_youwatch-agent"));
    let scenarios: Vec<soak::Scenario> = if args.benching {
        soak::scenarios::all(args.rate, args.secs)
            .into_iter()
            .filter(|s| {
                args.only.is_empty() || args.only.iter().any(|o| s.name.contains(o.as_str()))
            })
            .collect()
    } else {
        vec![soak::scenarios::named("rename", 2_000, 2)]
    };
    match args.benching {
        true => println!(
            "exactly-once soak: {} entries/s, {} s per scenario, agent {}",
            args.rate,
            args.secs,
            bin.display()
        ),
        false => println!("exactly-once soak, smoke run (the bench: cargo xtask bench soak)"),
    }
    println!("{}", soak::Figures::header());
    let mut failed = false;
    for scenario in &scenarios {
        let tmp = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))
            .expect("a scratch directory");
        let start = Instant::now();
        let f = soak::run(&bin, tmp.path(), scenario);
        println!("{f}");
        let this_failed = !f.lost.is_empty() || f.failed_terms() > 0 || f.foreign_alerts > 0;
        if this_failed {
            failed = true;
            println!(
                "  ^ {}",
                soak::describe_failure(tmp.path(), &f).replace('\n', "\n    ")
            );
        }
        println!(
            "  ({:.0} s; catch-up {:.1} s; alert queue drops {}; torn alert lines {}; SIGTERMs during start-up {}; rotations {:?})",
            start.elapsed().as_secs_f64(),
            f.catch_up.as_secs_f64(),
            f.counters.alerts_dropped,
            f.torn_alert_lines,
            f.terms_during_startup(),
            f.rotations
        );
        if let Some(dir) = &args.dir {
            // Keep nothing but what a failure needs: audit logs are gigabytes.
            if this_failed {
                let kept = dir.join(format!(
                    "failed-{}",
                    scenario.name.replace([' ', '/', ','], "_")
                ));
                let _ = std::fs::rename(tmp.path().join("agent.log"), kept);
            }
        }
    }
    if failed && !args.benching {
        panic!("the soak smoke run lost entries");
    }
}
