//! Developer entry points. `cargo xtask --help` lists them.

mod bench;
mod image;
mod prereq;
mod util;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// YouWatch developer tasks. Each installs what it needs when it is missing.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build the kernel programs (youwatch-ebpf) for bpfel-unknown-none, installing the nightly
    /// rust-src component, LLVM 22 and bpf-linker first when they are missing.
    BuildEbpf,
    /// Run every test (unit, kernel, WAF, API server), as root. Installs prerequisites first.
    /// Under CI=true, tests that need root, BPF or a real WAF fail instead of skipping.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The end-to-end scenarios (real kernel, real WAF, test API server), as root. Also part
    /// of `test`.
    E2e {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The newcomer demo, as root: a juice-shop pod, a real WAF, the agent; a shell and web
    /// attacks, and what the agent detected and did, with timings, on one screen.
    Demo,
    /// Build and run the agent (release). Arguments go to youwatch-agent; default `--dry-run`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Regenerate docs/config.md from youwatch-agent/config/default.yaml.
    Docs,
    /// Build the agent's container image with podman (offline: FROM scratch, the stripped
    /// release binary and the libraries it loads), or only its root filesystem.
    Image(image::Args),
    /// Benchmarks; figures are printed side by side as ratios, never asserted. Without a
    /// subcommand: every bench, and BENCHMARKS.md written from their output.
    Bench {
        #[command(subcommand)]
        which: Option<bench::Which>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::BuildEbpf => prereq::ebpf_toolchain().and_then(|()| util::build_ebpf()),
        Command::Test { args } => test(&args),
        Command::E2e { args } => e2e(&args),
        Command::Demo => demo(),
        Command::Run { args } => run(&args),
        Command::Docs => docs(),
        Command::Image(args) => image::run(args),
        Command::Bench { which: Some(which) } => bench::run(which),
        Command::Bench { which: None } => bench::report::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn test(args: &[String]) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    prereq::test_packages()?;
    util::require_root("the test suite loads eBPF programs and creates cgroups")?;
    let mut cmd = util::cargo();
    if util::in_ci() {
        // A clean clone builds once: incremental state would only cost disk (GBs).
        cmd.env("CARGO_INCREMENTAL", "0");
    }
    // Every failing test binary is reported, not only the first.
    cmd.args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .args(args);
    util::run_checked(&mut cmd)?;
    // Doc tests are not part of --all-targets.
    util::run_checked(util::cargo().args(["test", "--workspace", "--doc"]))?;
    if args.is_empty() {
        doc_check()?;
    }
    Ok(())
}

/// The developers' docs (private items included) build without a warning: a renamed item
/// leaves no dead link behind.
fn doc_check() -> anyhow::Result<()> {
    util::run_checked(
        util::cargo()
            .env("RUSTDOCFLAGS", "-D warnings --document-private-items")
            .args(["doc", "--no-deps", "--workspace"]),
    )
}

/// The end-to-end test binaries (`youwatch-agent/tests/e2e_*.rs`).
const E2E_TESTS: &[&str] = &["e2e_runtime", "e2e_web"];

fn e2e(args: &[String]) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    prereq::test_packages()?;
    util::require_root("the scenarios load eBPF programs, create cgroups and run nginx")?;
    let mut cmd = util::cargo();
    cmd.args(["test", "-p", "youwatch-agent"]);
    for test in E2E_TESTS {
        cmd.args(["--test", test]);
    }
    cmd.args(args);
    util::run_checked(&mut cmd)
}

/// docs/config.md: what `youwatch-agent config default --markdown` prints (the agent owns the
/// generator, so the test that keeps the file current uses the same code).
fn docs() -> anyhow::Result<()> {
    let markdown = util::output(util::cargo().args([
        "run",
        "-q",
        "-p",
        "youwatch-agent",
        "--",
        "config",
        "default",
        "--markdown",
    ]))?;
    let path = util::workspace_root().join("docs/config.md");
    std::fs::write(&path, markdown)?;
    println!("wrote {}", path.display());
    Ok(())
}

fn demo() -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    prereq::test_packages()?;
    util::require_root("the demo loads eBPF programs, creates cgroups and runs nginx")?;
    util::run_checked(util::cargo().args([
        "test",
        "-q",
        "-p",
        "youwatch-agent",
        "--test",
        "demo",
        "--",
        "--demo",
    ]))
}

fn run(args: &[String]) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    util::run_checked(util::cargo().args(["build", "--release", "-p", "youwatch-agent"]))?;
    let agent = util::workspace_root().join("target/release/youwatch-agent");
    let args: Vec<String> = if args.is_empty() {
        vec!["--dry-run".into()]
    } else {
        args.to_vec()
    };
    let mut cmd = std::process::Command::new(agent);
    cmd.args(&args);
    util::exec(cmd)
}
