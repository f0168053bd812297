//! `youwatch-agent rules check FILE…` and `youwatch-agent rules list`.

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use clap::Subcommand;

use super::{
    DEFAULT_RULES, DEFAULT_RULES_NAME, RuleSet, Status, load, read_file, source::SourceFile,
};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check Falco rule files: print every rule with its status on exec events (evaluable,
    /// switched off, or not evaluable and why), then errors and warnings with
    /// file:line:column. Files load in the order given, later ones overriding earlier ones,
    /// as in the agent. Exits 1 when there is any error.
    ///
    /// Example: youwatch-agent rules check /etc/falco/falco_rules.yaml my_rules.yaml
    Check {
        /// Rule files, in load order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Load the embedded default rules first (as the agent does unless
        /// rules.embedded_defaults is false), e.g. to check a file that tunes them.
        #[arg(long)]
        with_defaults: bool,
    },
    /// List the rules the agent loads with its configuration (embedded defaults, then
    /// rules.files): name, priority, status and where each is defined.
    List {
        /// Configuration file; without it, the embedded defaults.
        #[arg(long, short = 'c', env = "YOUWATCH_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the embedded default rules file instead.
        #[arg(long)]
        print_defaults: bool,
    },
}

pub fn run(cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        RulesCommand::Check {
            files,
            with_defaults,
        } => {
            let mut sources: Vec<Arc<SourceFile>> = Vec::new();
            if with_defaults {
                sources.push(SourceFile::new(
                    DEFAULT_RULES_NAME,
                    DEFAULT_RULES.to_owned(),
                ));
            }
            let mut read_errors = Vec::new();
            for path in &files {
                match read_file(path) {
                    Ok(f) => sources.push(f),
                    Err(e) => read_errors.push(e),
                }
            }
            let mut set = load(&sources, &Default::default());
            set.diagnostics.errors.splice(0..0, read_errors);
            Ok(report(&set))
        }
        RulesCommand::List {
            print_defaults: true,
            ..
        } => {
            print!("{DEFAULT_RULES}");
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::List { config, .. } => {
            let config = Config::load(config.as_deref())?;
            let set = load(&config.rules.sources()?, &config.rules.load_options());
            Ok(report(&set))
        }
    }
}

/// Prints the rule table, diagnostics and a summary; the exit code says whether there were
/// errors.
fn report(set: &RuleSet) -> ExitCode {
    let width = set
        .infos
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0)
        .min(60);
    for info in &set.infos {
        let mark = match info.status {
            Status::Evaluable => "ok ",
            Status::Off(_) => "off",
            Status::Unsupported(_) => "n/a",
        };
        println!(
            "{mark} {:<13} {:<width$}  {}  [{}]",
            info.priority.as_str(),
            info.name,
            info.status,
            info.pos,
        );
    }
    for e in &set.diagnostics.errors {
        println!("error: {e}");
    }
    for w in &set.diagnostics.warnings {
        println!("{w}");
    }
    for n in &set.diagnostics.notes {
        println!("{}", n.labelled("note"));
    }
    let (evaluable, off, unsupported) = set.counts();
    println!(
        "{} rules: {evaluable} evaluable on exec events, {off} switched off, {unsupported} not evaluable; {} errors, {} warnings",
        set.infos.len(),
        set.diagnostics.errors.len(),
        set.diagnostics.warnings.len()
    );
    if set.diagnostics.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
