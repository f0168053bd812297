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

use support::{require, soak};

struct Args {
    rate: u64,
    secs: u64,
    only: Vec<String>,
    dir: Option<PathBuf>,
    benching: bool,
}

fn args() -> Args {
    let benching = std::env::args().any(|a| a == "--bench");
    let mut out = Args {
        rate: 20_000,
        secs: 30,
        only: Vec::new(),
        dir: None,
        benching,
    };
    let mut args = std::env::args().skip(1);
    let value = |name: &str, args: &mut dyn Iterator<Item = String>| {
        args.next()
            .unwrap_or_else(|| panic!("{name} needs a value"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--rate" => out.rate = value("--rate", &mut args).parse().expect("--rate N"),
            "--secs" => out.secs = value("--secs", &mut args).parse().expect("--secs N"),
            "--only" => out.only.push(value("--only", &mut args)),
            "--dir" => out.dir = Some(value("--dir", &mut args).into()),
            "--bench" => {}
            other if benching => {
                panic!("unknown argument {other}; use --rate N --secs N --only NAME --dir DIR")
            }
            _ => {}
        }
    }
    out
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
