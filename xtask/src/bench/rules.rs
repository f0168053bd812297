//! `cargo xtask bench rules`: cost of evaluating one exec event against the whole rule set
//! (embedded defaults + Falco's stable ruleset), beside the defaults alone and no rules. The
//! bench itself is `youwatch-agent/benches/rules.rs` (it needs the agent library, which xtask
//! must not depend on).

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Interleaved rounds; medians are reported.
    #[arg(long, default_value_t = 21)]
    rounds: u32,
    /// Events evaluated per rule set per round.
    #[arg(long, default_value_t = 50_000)]
    events: u32,
    /// Also print the median per distinct exec of the mix.
    #[arg(long)]
    per_event: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Building the agent builds its eBPF object too.
    prereq::ebpf_toolchain()?;
    util::run_checked(
        super::agent_bench("rules")
            .args([
                "--rounds".to_owned(),
                args.rounds.to_string(),
                "--events".to_owned(),
                args.events.to_string(),
            ])
            .args(args.per_event.then_some("--per-event")),
    )
}
