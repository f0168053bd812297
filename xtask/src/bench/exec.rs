//! `cargo xtask bench exec`: exec overhead with the sensor attached vs detached, kernel → user
//! latency, and the agent's CPU per watched exec at steady rates. The bench itself is
//! `youwatch-agent/benches/exec/` (it needs the agent library, which xtask must not depend on:
//! xtask installs what the agent's build needs).

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// `/bin/true` execs per timed run.
    #[arg(long, default_value_t = 5000)]
    execs: u32,
    /// Interleaved rounds; medians and the median of per-round ratios are reported.
    #[arg(long, default_value_t = 11)]
    rounds: u32,
    /// Steady exec rates (execs per second) at which the agent's CPU per exec is measured.
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000, 10_000])]
    rates: Vec<u32>,
    /// Seconds per steady rate.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Exec servers driving the steady rates.
    #[arg(long, default_value_t = 4)]
    servers: u32,
    /// Only the steady rates.
    #[arg(long)]
    steady_only: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the exec bench loads eBPF programs and creates cgroups")?;
    let rates: Vec<String> = args.rates.iter().map(u32::to_string).collect();
    let mut cmd = super::agent_bench("exec");
    cmd.args(["--execs", &args.execs.to_string()])
        .args(["--rounds", &args.rounds.to_string()])
        .args(["--rates", &rates.join(",")])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--servers", &args.servers.to_string()]);
    if args.steady_only {
        cmd.arg("--steady-only");
    }
    util::run_checked(&mut cmd)
}
