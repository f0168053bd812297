//! `cargo xtask bench inventory`: pod visible in a watch event → its cgroup in the kernel's
//! WATCHED map, against the test API server, with a bare kube watcher as the baseline. The
//! bench itself is `youwatch-agent/benches/inventory.rs`.

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Pods created (each measured twice: cgroup before the pod, and after).
    #[arg(long, default_value_t = 200)]
    pods: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the inventory bench loads eBPF programs and creates cgroups")?;
    util::run_checked(
        super::agent_bench("inventory").args(["--pods".to_owned(), args.pods.to_string()]),
    )
}
