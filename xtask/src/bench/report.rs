//! `cargo xtask bench` (no subcommand): every bench with its defaults, one after the other in
//! one session, and `BENCHMARKS.md` written from what they print, with the machine they ran
//! on. The file is only ever written this way, never by hand.

use std::{fmt::Write as _, process::Command, time::Instant};

use anyhow::Context;
use clap::Parser;

use super::Which;
use crate::util;

/// One section of the report: its title, the command that reproduces it, the bench.
struct Section {
    title: &'static str,
    command: &'static str,
    which: fn() -> Which,
}

/// Parses a bench's default arguments, as `cargo xtask bench <name>` would.
fn defaults<T: clap::Args>() -> T {
    #[derive(Parser)]
    struct Wrapper<T: clap::Args> {
        #[command(flatten)]
        args: T,
    }
    Wrapper::<T>::parse_from(["bench"]).args
}

fn sections() -> Vec<Section> {
    vec![
        Section {
            title: "Response: exec → DELETE, WAF line → PATCH, vs the original pipeline",
            command: "cargo xtask bench response",
            which: || Which::Response(defaults()),
        },
        Section {
            title: "Exec sensor: overhead inside and outside guarded pods, delivery latency, CPU per exec at steady rates",
            command: "cargo xtask bench exec",
            which: || Which::Exec(defaults()),
        },
        Section {
            title: "Rules: evaluation per exec with Falco's stable ruleset",
            command: "cargo xtask bench rules",
            which: || Which::Rules(defaults()),
        },
        Section {
            title: "WAF: throughput vs Python json.loads and wc -l, append → decision",
            command: "cargo xtask bench waf",
            which: || Which::Waf(defaults()),
        },
        Section {
            title: "WAF exactly once: rotation, SIGTERM and kill -9 at 20,000 entries/s",
            command: "cargo xtask bench soak",
            which: || Which::Soak(defaults()),
        },
        Section {
            title: "Inventory: pod event → cgroup watched in the kernel",
            command: "cargo xtask bench inventory",
            which: || Which::Inventory(defaults()),
        },
        Section {
            title: "Correlation: a shell after a web attack → pod DELETE and the attacker's ban, same node and cross node",
            command: "cargo xtask bench correlate",
            which: || Which::Correlate(defaults()),
        },
        Section {
            title: "Node ban: program cost per packet, receive path, decision → first drop on another node",
            command: "cargo xtask bench netban",
            which: || Which::Netban(defaults()),
        },
        Section {
            title: "Memory: the agent's RSS; CPU and peak RSS through exec and WAF log bursts",
            command: "cargo xtask bench memory",
            which: || Which::Memory(defaults()),
        },
    ]
}

fn sh(cmd: &str) -> String {
    Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2");
    format!(
        "- {} CPUs ({}), {} memory, Linux {}\n- load average at the start: {}\n- commit {} ({})\n- {}\n",
        sh("nproc"),
        cpu.trim(),
        sh("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo"),
        sh("uname -r"),
        sh("cut -d' ' -f1-3 /proc/loadavg"),
        sh("git rev-parse --short HEAD"),
        if sh("git status --porcelain").is_empty() {
            "clean"
        } else {
            "with local changes"
        },
        sh("date -u +%Y-%m-%dT%H:%M:%SZ"),
    )
}

pub fn run() -> anyhow::Result<()> {
    let mut report = String::from(
        "# YouWatch benchmarks\n\n\
         Written by `cargo xtask bench` (every bench with its defaults, one after the other in \
         one session); never edited by hand. Each figure compares contenders measured side by \
         side in the same run; the machine is shared, so absolute times move between runs and \
         the ratios are what to read.\n\n## Machine\n\n",
    );
    report.push_str(&machine());
    let started = Instant::now();
    for section in sections() {
        eprintln!("xtask: bench report: {}", section.command);
        util::start_capture();
        let result = super::run((section.which)());
        let output = util::take_capture();
        let _ = write!(
            report,
            "\n## {}\n\n`{}`\n\n```\n{}",
            section.title, section.command, output
        );
        if let Err(e) = result {
            let _ = writeln!(report, "FAILED: {e:#}");
        }
        report.push_str("```\n");
    }
    let _ = writeln!(
        report,
        "\nAll benches took {:.0} s; load average at the end: {}.",
        started.elapsed().as_secs_f64(),
        sh("cut -d' ' -f1-3 /proc/loadavg")
    );
    let path = util::workspace_root().join("BENCHMARKS.md");
    std::fs::write(&path, report).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
