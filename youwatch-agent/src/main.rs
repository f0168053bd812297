use clap::Parser;
use youwatch_agent::{cli, logging};

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let Err(err) = logging::init(&cli.log) {
        eprintln!("youwatch-agent: {err:#}");
        return std::process::ExitCode::from(2);
    }
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed and why.
            eprintln!("youwatch-agent: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
