//! `cargo xtask bench <which>`: benchmarks that print figures and ratios measured side by side
//! in one run (the machine is shared and noisy). Nothing here asserts a time.

mod exec;
mod rules;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Which {
    /// Exec overhead with the sensor attached vs detached, and kernel → user latency.
    Exec(exec::Args),
    /// Rule evaluation per exec event: Falco's stable ruleset + defaults vs defaults only.
    Rules(rules::Args),
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Exec(args) => exec::run(args),
        Which::Rules(args) => rules::run(args),
    }
}
