//! `cargo xtask bench netban`: the node ban's program cost per packet (10, 10k, 100k entries,
//! TC and XDP, passed and dropped), the receive path with and without it over a veth, and the
//! time from a ban decided on one node to the first packet dropped on another. The bench itself
//! is `youwatch-agent/benches/netban.rs`.

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// BPF_PROG_TEST_RUN repetitions per figure.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Datagrams per timed run over the veth.
    #[arg(long, default_value_t = 200_000)]
    datagrams: u32,
    /// Interleaved rounds of the veth runs; medians are reported.
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Bans timed from decision to the first drop on another node.
    #[arg(long, default_value_t = 30)]
    bans: u32,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the node ban bench loads TC/XDP programs and creates network namespaces")?;
    util::run_checked(super::agent_bench("netban").args([
        "--repeat".to_owned(),
        args.repeat.to_string(),
        "--datagrams".to_owned(),
        args.datagrams.to_string(),
        "--rounds".to_owned(),
        args.rounds.to_string(),
        "--bans".to_owned(),
        args.bans.to_string(),
    ]))
}
