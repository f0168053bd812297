//! `youwatch-agent config default` and `config check FILE`.

use std::{path::PathBuf, process::ExitCode};

use clap::Subcommand;

use crate::config::{DEFAULT_YAML, check, reference};

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
    let report = check::check(&text, file);
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

/// Runs a `config` command.
pub fn run(cmd: ConfigCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCommand::Default { markdown: false } => {
            print!("{DEFAULT_YAML}");
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Default { markdown: true } => {
            print!("{}", reference::markdown(DEFAULT_YAML));
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check { file } => check_config(&file),
    }
}
