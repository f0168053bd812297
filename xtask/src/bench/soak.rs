//! `cargo xtask bench soak`: exactly-once under rotation, restarts and 20,000 entries/s, per
//! scenario (lost, repeated, stops, rates). The harness is `youwatch-agent/benches/soak.rs`
//! (shared with `tests/waf_exactly_once.rs`).

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Entries written per second.
    #[arg(long, default_value_t = 20_000)]
    rate: u64,
    /// Seconds of writing per scenario.
    #[arg(long, default_value_t = 30)]
    secs: u64,
    /// Only the scenarios whose name contains this (repeatable).
    #[arg(long)]
    only: Vec<String>,
    /// Scratch directory (audit logs take rate x 1.9 KB x secs); the agent's log of a failing
    /// scenario is kept there.
    #[arg(long, default_value = "target/soak")]
    dir: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the soak bench runs the agent, which loads its eBPF sensor")?;
    let dir = util::workspace_root().join(&args.dir);
    std::fs::create_dir_all(&dir)?;
    let mut cmd = super::agent_bench("soak");
    cmd.args(["--rate", &args.rate.to_string()])
        .args(["--secs", &args.secs.to_string()])
        .arg("--dir")
        .arg(&dir);
    for only in &args.only {
        cmd.args(["--only", only]);
    }
    util::run_checked(&mut cmd)
}
