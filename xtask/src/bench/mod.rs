//! `cargo xtask bench <which>`: benchmarks that print figures and ratios measured side by side
//! in one run (the machine is shared and noisy). Nothing here asserts a time.

mod exec;
mod inventory;
mod memory;
pub mod report;
mod response;
mod rules;
mod waf;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Which {
    /// Exec overhead with the sensor attached vs detached, kernel → user latency, and the
    /// agent's CPU per watched exec at steady rates.
    Exec(exec::Args),
    /// WAF audit-log pipeline: throughput on a >= 1 GB log of real ModSecurity entries vs
    /// Python json.loads and wc -l (one core each), and line-appended -> decision latency.
    Waf(waf::Args),
    /// Pod visible in a watch event → its cgroup in the kernel's WATCHED map.
    Inventory(inventory::Args),
    /// Exec in a guarded pod → DELETE on the wire (agent binary, test API server).
    Response(response::Args),
    /// The agent's RSS (peak, steady, where it goes) with guarded pods, release build; CPU and
    /// peak RSS through a 10k-exec burst and a 1M-entry WAF log burst.
    Memory(memory::Args),
    /// Rule evaluation per exec event: Falco's stable ruleset + defaults vs defaults only.
    Rules(rules::Args),
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Exec(args) => exec::run(args),
        Which::Waf(args) => waf::run(args),
        Which::Inventory(args) => inventory::run(args),
        Which::Rules(args) => rules::run(args),
        Which::Response(args) => response::run(args),
        Which::Memory(args) => memory::run(args),
    }
}
