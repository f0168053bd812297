//! `cargo xtask bench <which>`: benchmarks that print figures and ratios measured side by side
//! in one run (the machine is shared and noisy). Nothing here asserts a time.

mod correlate;
mod exec;
mod inventory;
mod memory;
mod netban;
pub mod report;
mod response;
mod rules;
mod soak;
mod waf;

use std::process::Command;

use clap::Subcommand;

use crate::util;

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
    /// WAF exactly-once soak: a 20,000 entries/s writer, every kind of rotation, SIGTERM and
    /// kill -9 restarts; lost and repeated entries per scenario.
    Soak(soak::Args),
    /// Shell after a web attack → pod DELETE and the incident's ban on the wire, same node
    /// and cross node (agent binaries, test API server).
    Correlate(correlate::Args),
    /// Node ban: program cost per packet (10/10k/100k entries, TC and XDP), the receive path
    /// with and without it, ban decided on one node → first packet dropped on another.
    Netban(netban::Args),
}

pub fn run(which: Which) -> anyhow::Result<()> {
    match which {
        Which::Exec(args) => exec::run(args),
        Which::Waf(args) => waf::run(args),
        Which::Inventory(args) => inventory::run(args),
        Which::Rules(args) => rules::run(args),
        Which::Response(args) => response::run(args),
        Which::Memory(args) => memory::run(args),
        Which::Soak(args) => soak::run(args),
        Which::Correlate(args) => correlate::run(args),
        Which::Netban(args) => netban::run(args),
    }
}

/// `cargo bench -p youwatch-agent --bench <name> --`: the bench's own arguments follow.
fn agent_bench(name: &str) -> Command {
    let mut cmd = util::cargo();
    cmd.args(["bench", "-p", "youwatch-agent", "--bench", name, "--"]);
    cmd
}
