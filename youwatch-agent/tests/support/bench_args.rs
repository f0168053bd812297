//! The benches' command line. `cargo bench` (and `cargo xtask bench`) pass `--bench`: a full
//! run, where a bad argument stops with clap's usage. `cargo test --all-targets` runs each
//! bench binary without it, perhaps with test-harness arguments: a short smoke run that
//! ignores what it cannot parse.

/// This bench's options `T` (its parser takes `--bench`), and whether this is a full run.
pub fn parse<T: clap::Parser + Default>() -> (T, bool) {
    let benching = std::env::args().any(|a| a == "--bench");
    let opts = match T::try_parse() {
        Ok(opts) => opts,
        Err(e) if benching => e.exit(),
        Err(_) => T::default(),
    };
    (opts, benching)
}

/// `given`, else the full run's default, else the smoke run's.
pub fn or<T>(given: Option<T>, benching: bool, full: T, smoke: T) -> T {
    given.unwrap_or(if benching { full } else { smoke })
}

/// For a bench whose one option is a count (`--<flag> N`): the count, and whether this is a
/// full run.
pub fn count(flag: &'static str, help: &'static str, full: usize, smoke: usize) -> (usize, bool) {
    let command = clap::Command::new(env!("CARGO_CRATE_NAME"))
        .arg(
            clap::Arg::new("count")
                .long(flag)
                .value_name("N")
                .value_parser(clap::value_parser!(usize))
                .help(format!("{help} (default {full}; {smoke} in the smoke run)")),
        )
        .arg(
            clap::Arg::new("bench")
                .long("bench")
                .action(clap::ArgAction::SetTrue)
                .help("Set by `cargo bench`"),
        );
    let benching = std::env::args().any(|a| a == "--bench");
    let given = match command.try_get_matches() {
        Ok(m) => m.get_one::<usize>("count").copied(),
        Err(e) if benching => e.exit(),
        Err(_) => None,
    };
    (or(given, benching, full, smoke), benching)
}
