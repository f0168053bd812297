//! `cargo xtask bench exec`: exec overhead with the sensor attached vs detached, and kernel →
//! user latency. The bench itself is `youwatch-agent/benches/exec.rs` (it needs the agent
//! library, which xtask must not depend on: xtask installs what the agent's build needs).

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// `/bin/true` execs per timed run.
    #[arg(long, default_value_t = 5000)]
    execs: u32,
    /// Interleaved rounds; medians and the median of per-round ratios are reported.
    #[arg(long, default_value_t = 11)]
    rounds: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the exec bench loads eBPF programs and creates cgroups")?;
    util::run_checked(super::agent_bench("exec").args([
        "--execs".to_owned(),
        args.execs.to_string(),
        "--rounds".to_owned(),
        args.rounds.to_string(),
    ]))
}
