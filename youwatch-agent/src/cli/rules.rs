//! `youwatch-agent rules check FILE…`, `rules list` and `rules replay`.

use std::{
    io::{BufReader, Write},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use anyhow::Context;
use clap::Subcommand;

use super::ConfigArg;
use crate::rules::{
    DEFAULT_RULES, DEFAULT_RULES_NAME, LoadError, RuleMatching, RuleSet, Status, load, read_file,
    replay, source::SourceFile,
};

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
    /// Evaluate recorded exec events against rule files, offline, and print the alerts as
    /// the agent writes them (Falco JSON alert lines). Events are the JSON lines the agent
    /// prints with --dry-run, one exec per line ("-" reads standard input); the alert and
    /// action lines it prints among them are ignored. Exits 1 when the rules have errors or a
    /// line is not an event (reported on stderr with its line number).
    ///
    /// Example: youwatch-agent rules replay --rules my_rules.yaml execs.jsonl
    Replay {
        /// Rule files, in load order (repeat --rules, or list them before the events file).
        #[arg(long = "rules", required = true, num_args = 1.., value_name = "FILE")]
        rules: Vec<PathBuf>,
        /// Recorded exec events (JSON lines).
        #[arg(value_name = "EVENTS.jsonl")]
        events: Option<PathBuf>,
        /// Load the embedded default rules first.
        #[arg(long)]
        with_defaults: bool,
        /// `first`: only the first matching rule fires per event (the agent's default);
        /// `all`: every matching rule fires.
        #[arg(long, default_value = "first", value_parser = ["first", "all"])]
        rule_matching: String,
        /// The hostname written in alerts.
        #[arg(long, default_value = "replay")]
        hostname: String,
    },
    /// List the rules the agent loads with its configuration (embedded defaults, then
    /// rules.files): name, priority, status and where each is defined.
    List {
        #[command(flatten)]
        config: ConfigArg,
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
        } => Ok(report(&load_files(&files, with_defaults))),
        RulesCommand::Replay {
            mut rules,
            events,
            with_defaults,
            rule_matching,
            hostname,
        } => {
            // `--rules a.yaml b.yaml events.jsonl`: the last path is the events file.
            let events = match events {
                Some(e) => e,
                None if rules.len() > 1 => rules.pop().unwrap_or_default(),
                None => anyhow::bail!(
                    "rules replay: give the events file after the rule files, e.g. \
                     rules replay --rules my_rules.yaml execs.jsonl"
                ),
            };
            let matching = match rule_matching.as_str() {
                "all" => RuleMatching::All,
                _ => RuleMatching::First,
            };
            run_replay(&rules, &events, with_defaults, matching, &hostname)
        }
        RulesCommand::List {
            print_defaults: true,
            ..
        } => {
            print!("{DEFAULT_RULES}");
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::List { config, .. } => {
            let rules = config.load()?.rules;
            let set = load(&rules.sources()?, &rules.load_options());
            Ok(report(&set))
        }
    }
}

/// Loads `files` (after the embedded defaults when asked), with read errors first.
fn load_files(files: &[PathBuf], with_defaults: bool) -> RuleSet {
    let mut sources: Vec<Arc<SourceFile>> = Vec::new();
    if with_defaults {
        sources.push(SourceFile::new(
            DEFAULT_RULES_NAME,
            DEFAULT_RULES.to_owned(),
        ));
    }
    let mut read_errors: Vec<LoadError> = Vec::new();
    for path in files {
        match read_file(path) {
            Ok(f) => sources.push(f),
            Err(e) => read_errors.push(e),
        }
    }
    let mut set = load(&sources, &Default::default());
    set.diagnostics.errors.splice(0..0, read_errors);
    set
}

fn run_replay(
    rules: &[PathBuf],
    events: &Path,
    with_defaults: bool,
    matching: RuleMatching,
    hostname: &str,
) -> anyhow::Result<ExitCode> {
    let set = load_files(rules, with_defaults);
    if !set.diagnostics.errors.is_empty() {
        for e in &set.diagnostics.errors {
            eprintln!("error: {e}");
        }
        eprintln!(
            "{} error(s) in the rules: fix them (see `youwatch-agent rules check`) before replaying",
            set.diagnostics.errors.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    for w in set
        .diagnostics
        .warnings
        .iter()
        .chain(&set.unsupported_warnings())
    {
        eprintln!("{w}");
    }
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let (mut out, mut err) = (stdout.lock(), stderr.lock());
    let summary = if events == Path::new("-") {
        replay::replay(
            &set,
            matching,
            hostname,
            std::io::stdin().lock(),
            "<stdin>",
            &mut out,
            &mut err,
        )
    } else {
        let file = std::fs::File::open(events)
            .with_context(|| format!("opening the events file {}", events.display()))?;
        let name = events.display().to_string();
        replay::replay(
            &set,
            matching,
            hostname,
            BufReader::new(file),
            &name,
            &mut out,
            &mut err,
        )
    }
    .with_context(|| format!("replaying {}", events.display()))?;
    out.flush()?;
    let (evaluable, _, _) = set.counts();
    writeln!(
        err,
        "{} events, {} alerts, {} lines skipped; {evaluable} rules evaluated ({} alert or action lines ignored)",
        summary.events, summary.alerts, summary.bad_lines, summary.other_records
    )?;
    Ok(if summary.bad_lines == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
