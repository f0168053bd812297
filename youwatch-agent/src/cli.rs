//! Command line: the main job (`run`, the default) and the tools around it.

use std::{path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{logging::LogArgs, run};

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
    Config(ConfigCommand),
    /// Replay a ModSecurity/Coraza JSON audit log through the WAF scoring, changing nothing:
    /// per entry its class, score and decision, then a summary and the IPs that would be banned.
    Replay(crate::waf::replay::ReplayArgs),
    /// Check Falco rule files, list the rules the agent loads, or replay recorded execs
    /// against rules.
    #[command(subcommand)]
    Rules(crate::rules::cli::RulesCommand),
    /// List the addresses the agents deny and the apps they quarantine, per Ingress, with
    /// their expiry, as the cluster holds them (the agents' ledger annotations).
    Bans(crate::response::cli::BansArgs),
    /// Let an address in again: remove the agents' ban of it from every Ingress (entries
    /// users wrote stay). Example: youwatch-agent unban 203.0.113.9
    Unban(crate::response::cli::UnbanArgs),
    /// Lift the agents' quarantine of an Ingress, restoring the allowlist it had before.
    /// Example: youwatch-agent release shop/juice-shop
    Release(crate::response::cli::ReleaseArgs),
}

#[derive(Clone, Debug, Default, Args)]
pub struct RunArgs {
    /// Configuration file (YAML). Without it the embedded defaults are used
    /// (`youwatch-agent config default` prints them, commented).
    #[arg(long, short = 'c', env = "YOUWATCH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Detect and report, but change nothing: no pod is deleted, no Ingress patched. Each exec
    /// and each planned request (with its reason) is printed on stdout as one JSON line.
    /// `--dry-run=server` sends every request with dryRun=All instead, so the API server
    /// validates it (RBAC, preconditions, admission) and persists nothing.
    #[arg(
        long,
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "client"
    )]
    pub dry_run: Option<crate::response::DryRun>,
    /// Watch this cgroup v2 directory and everything below it, in addition to the pods the
    /// inventory selects. Repeatable. Example: /sys/fs/cgroup/unified/system.slice/docker-<id>.scope
    #[arg(long, value_name = "PATH")]
    pub watch_cgroup: Vec<PathBuf>,
    /// Stop forbidden execs (enforce.forbidden: shells by default) in the kernel, before they
    /// run an instruction: in every --watch-cgroup subtree and in the guarded pods that opt in
    /// (label youwatch.dev/enforce: "true"). Sets enforce.mode to enforce; with --dry-run,
    /// to monitor (report what would have been stopped). Example on a dev VM:
    /// youwatch-agent --enforce --watch-cgroup /sys/fs/cgroup/unified/demo
    #[arg(long)]
    pub enforce: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the embedded default configuration: every setting, its default and what it does.
    Default {
        /// Print it as the Markdown reference (docs/config.md) instead of YAML.
        #[arg(long)]
        markdown: bool,
    },
    /// Check a configuration file: every error with its key path, the checks the stages make
    /// at start-up, and the effective configuration (the file over the defaults) as YAML.
    /// Exit status 1 when there are errors.
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

/// `config check FILE`: the effective configuration on stdout, every problem on stderr.
fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("reading config file {}: {e}", file.display()))?;
    let report = crate::config::check::check(&text, file);
    if let Some(effective) = &report.effective {
        print!("{effective}");
    }
    for problem in &report.problems {
        eprintln!("{}: {problem}", file.display());
    }
    if report.problems.is_empty() {
        eprintln!("{}: ok", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{}: {} error(s)", file.display(), report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}

/// Runs the chosen command; the exit code is the command's verdict.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None => run::main(cli.run),
        Some(Command::Run(args)) => run::main(args),
        Some(Command::Config(ConfigCommand::Default { markdown: false })) => {
            print!("{}", crate::config::DEFAULT_YAML);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Config(ConfigCommand::Default { markdown: true })) => {
            print!(
                "{}",
                crate::config::reference::markdown(crate::config::DEFAULT_YAML)
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Config(ConfigCommand::Check { file })) => check_config(&file),
        Some(Command::Replay(args)) => crate::waf::replay::run(args),
        Some(Command::Rules(cmd)) => crate::rules::cli::run(cmd),
        Some(Command::Bans(args)) => crate::response::cli::bans(args),
        Some(Command::Unban(args)) => crate::response::cli::unban(args),
        Some(Command::Release(args)) => crate::response::cli::release(args),
    }
}
