//! Small process helpers shared by the tasks.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

#[path = "../../youwatch-agent/ebpf_build.rs"]
mod ebpf_build;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is in the workspace")
        .to_owned()
}

/// `cargo` as invoked by the user (the toolchain cargo xtask runs under).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

/// Runs a command with inherited stdio; an error names the command and its exit status.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; stderr is inherited.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Replaces this process with `cmd` (so signals such as Ctrl-C reach it directly).
pub fn exec(mut cmd: Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let err = cmd.exec();
    Err(err).with_context(|| format!("starting {cmd:?}"))
}

/// Fails with `why` unless running as root.
pub fn require_root(why: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc_geteuid() } != 0 {
        bail!("run this as root: {why} (e.g. `sudo -E cargo xtask ...`)");
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Builds youwatch-ebpf exactly as youwatch-agent's build.rs does (same code).
pub fn build_ebpf() -> anyhow::Result<()> {
    let objects = ebpf_build::check_toolchain()
        .and_then(|()| ebpf_build::build(&workspace_root()))
        .map_err(anyhow::Error::msg)?;
    println!("built {}", objects.exec.display());
    println!("built {}", objects.netban.display());
    Ok(())
}
