//! `cargo xtask bench response`: exec in a guarded pod → DELETE request on the wire, the agent
//! binary against the test API server. The bench itself is `youwatch-agent/benches/response.rs`.

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Shells exec'd (one fresh pod each).
    #[arg(long, default_value_t = 200)]
    execs: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the response bench loads eBPF programs and creates cgroups")?;
    util::run_checked(
        super::agent_bench("response").args(["--execs".to_owned(), args.execs.to_string()]),
    )
}
