//! Command line: the main job (`run`, the default) and the tools around it, one file per
//! command family. Every command that reads the configuration takes the same `--config`
//! ([`ConfigArg`]); the tools hand each stage only its own section of it.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{
    config::{Config, ConfigError},
    logging::LogArgs,
    run::{self, RunArgs},
};

pub mod bans;
pub mod config;
pub mod replay;
pub mod rules;

/// YouWatch node agent: sees every exec in the pods it guards with its own eBPF programs,
/// evaluates Falco-format rules on them, scores WAF attackers from the ModSecurity audit log,
/// and responds through the Kubernetes API.
///
/// Without a subcommand it runs the agent (same as `youwatch-agent run`).
///
/// Try it on a dev VM, as root, without a cluster:
///
///   youwatch-agent --dry-run --watch-cgroup /sys/fs/cgroup/unified/my.slice
///
/// prints every exec in that cgroup subtree as one JSON line and changes nothing.
///
/// Which workloads are guarded (config `inventory.mode`, default auto): with a kubeconfig
/// ($KUBECONFIG or ~/.kube/config) or inside a pod ($KUBERNETES_SERVICE_HOST), cluster mode
/// guards the pods of this node ($NODE_NAME) selected by the `inventory:` config (default:
/// pods named *juice-shop*, outside kube-system). Without either, node-local mode discovers
/// docker, containerd, CRI-O and podman containers from cgroupfs and watches those selected
/// by `inventory.node_local`, plus every --watch-cgroup. The first log lines say which mode
/// was chosen and why.
#[derive(Debug, Parser)]
#[command(
    name = "youwatch-agent",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent (the default when no subcommand is given).
    Run(RunArgs),
    /// Print or check the configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Replay a ModSecurity/Coraza JSON audit log through the WAF scoring, changing nothing:
    /// per entry its class, score and decision, then a summary and the IPs that would be banned.
    Replay(replay::ReplayArgs),
    /// Check Falco rule files, list the rules the agent loads, or replay recorded execs
    /// against rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// List the addresses the agents deny and the apps they quarantine, per Ingress, with
    /// their expiry, as the cluster holds them (the agents' ledger annotations).
    #[command(after_help = bans::CLUSTER_HELP)]
    Bans(bans::BansArgs),
    /// Let an address in again: remove the agents' ban of it from every Ingress (entries
    /// users wrote stay). Example: youwatch-agent unban 203.0.113.9
    #[command(after_help = bans::CLUSTER_HELP)]
    Unban(bans::UnbanArgs),
    /// Lift the agents' quarantine of an Ingress, restoring the allowlist it had before.
    /// Example: youwatch-agent release shop/juice-shop
    #[command(after_help = bans::CLUSTER_HELP)]
    Release(bans::ReleaseArgs),
}

/// `--config FILE`: the one configuration argument of every command that reads it.
#[derive(Clone, Debug, Default, Args)]
pub struct ConfigArg {
    /// Configuration file (YAML). Without it the embedded defaults are used
    /// (`youwatch-agent config default` prints them, commented).
    #[arg(long, short = 'c', env = "YOUWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The file over the defaults, or the embedded defaults without `--config`.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref())
    }
}

/// Runs the chosen command; the exit code is the command's verdict.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run::main(cli.run),
        Some(Command::Run(args)) => run::main(args),
        Some(Command::Config(cmd)) => config::run(cmd),
        Some(Command::Replay(args)) => replay::run(args),
        Some(Command::Rules(cmd)) => rules::run(cmd),
        Some(Command::Bans(args)) => bans::bans(args),
        Some(Command::Unban(args)) => bans::unban(args),
        Some(Command::Release(args)) => bans::release(args),
    }
}
