//! `cargo xtask bench correlate`: a shell after one detection-only RCE request → the pod's
//! DELETE and the incident's ban on the wire, one agent (same node) and two (cross node)
//! against the test API server. The bench itself is `youwatch-agent/benches/correlate.rs`.

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Shells per topology (one request, one fresh pod each).
    #[arg(long, default_value_t = 100)]
    iterations: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the correlate bench loads eBPF programs and creates cgroups")?;
    util::run_checked(
        super::agent_bench("correlate")
            .args(["--iterations".to_owned(), args.iterations.to_string()]),
    )
}
