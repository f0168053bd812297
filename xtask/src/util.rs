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

/// While set, what commands run through [`run_checked`] print on stdout is also kept here
/// (the bench report collects each bench's figures this way).
static CAPTURE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Starts keeping the stdout of the commands run from now on.
pub fn start_capture() {
    *CAPTURE.lock().unwrap() = Some(String::new());
}

/// What was kept since [`start_capture`]; stops keeping.
pub fn take_capture() -> String {
    CAPTURE.lock().unwrap().take().unwrap_or_default()
}

/// Prints `text` on stdout, and keeps it while a capture is on: figures an xtask bench
/// computes itself (rather than a command it runs) reach the report this way.
pub fn say_line(text: &str) {
    println!("{text}");
    if let Some(kept) = CAPTURE.lock().unwrap().as_mut() {
        kept.push_str(text);
        kept.push('\n');
    }
}

/// [`say_line`] with `format!` arguments.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::util::say_line(&format!($($arg)*))
    };
}
pub(crate) use say;

/// Runs a command with inherited stdio; an error names the command and its exit status.
/// While a capture is on, its stdout is also copied into the capture, line by line.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let capturing = CAPTURE.lock().unwrap().is_some();
    let status = if capturing {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            println!("{line}");
            if let Some(kept) = CAPTURE.lock().unwrap().as_mut() {
                kept.push_str(&line);
                kept.push('\n');
            }
        }
        child.wait().with_context(|| format!("running {cmd:?}"))?
    } else {
        cmd.status().with_context(|| format!("running {cmd:?}"))?
    };
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

/// Whether this runs under CI (`CI=true`, as `.ci/run` sets it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}
