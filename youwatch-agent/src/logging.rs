//! `tracing` set-up: human-readable text on a terminal, JSON lines for log collectors.

use clap::{Args, ValueEnum};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for Loki, Elasticsearch, ...).
    Json,
}

#[derive(Clone, Debug, Args)]
pub struct LogArgs {
    /// Log line format (logs go to stderr; detections and dry-run output go to stdout).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "YOUWATCH_LOG_FORMAT", global = true)]
    pub log_format: LogFormat,
    /// Log filter, in `tracing` EnvFilter syntax: `info`, `debug`, `youwatch_agent::waf=debug`...
    #[arg(long, default_value = "info", env = "YOUWATCH_LOG", global = true)]
    pub log_level: String,
}

/// Installs the global subscriber. Fails on a filter that does not parse, naming it.
pub fn init(args: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log_level).map_err(|e| {
        anyhow::anyhow!(
            "--log-level {:?} is not a valid filter: {e}",
            args.log_level
        )
    })?;
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}
