//! `cargo xtask bench memory`: the release agent's RSS with guarded pods, and where it goes;
//! its CPU and peak RSS through an exec burst and a WAF log burst.
//! The bench itself is `youwatch-agent/benches/memory.rs`; it runs the shipped (release,
//! stripped) binary, and any other given with `--agent` side by side.

use std::path::PathBuf;

use crate::{prereq, util};

#[derive(clap::Args)]
pub struct Args {
    /// Guarded pods (each with its cgroup, running a few execs).
    #[arg(long, default_value_t = 39)]
    pods: u32,
    /// Execs asked at once in the exec burst.
    #[arg(long, default_value_t = 10_000)]
    execs: u64,
    /// Entries appended at once in the WAF log burst.
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Another agent binary to measure in the same run (e.g. an older build).
    #[arg(long)]
    agent: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::require_root("the memory bench loads eBPF programs and creates cgroups")?;
    util::run_checked(util::cargo().args(["build", "--release", "-p", "youwatch-agent"]))?;
    let release = util::workspace_root().join("target/release/youwatch-agent");
    // The release profile (not bench's): the harness shares the shipped build.
    let mut cmd = util::cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "youwatch-agent",
        "--bench",
        "memory",
        "--",
        "--bench",
    ])
    .args(["--pods".to_owned(), args.pods.to_string()])
    .args(["--execs".to_owned(), args.execs.to_string()])
    .args(["--entries".to_owned(), args.entries.to_string()])
    .arg("--agent")
    .arg(release);
    for agent in args.agent {
        cmd.arg("--agent").arg(agent);
    }
    util::run_checked(&mut cmd)
}
