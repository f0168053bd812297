//! Building `youwatch-ebpf` (nightly, bpfel-unknown-none, bpf-linker), shared by the agent's
//! build.rs and `cargo xtask build-ebpf` through `#[path]` so both build it the same way.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// Checks what the build needs, so a missing piece is named with the command that installs it
/// instead of surfacing as a linker error from deep inside the nested build.
pub fn check_toolchain() -> Result<(), String> {
    let all = "or run `cargo xtask build-ebpf`, which installs every missing piece";
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => {
            return Err(format!(
                "the eBPF programs need the nightly toolchain (through rustup): run `rustup toolchain install nightly`, {all}"
            ));
        }
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        return Err(format!(
            "the eBPF programs need the nightly rust-src component: run `rustup component add rust-src --toolchain nightly`, {all}"
        ));
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|o| o.status.success()) {
        return Err(format!(
            "bpf-linker is not on PATH: run `apt-get install -y llvm-22-dev libpolly-22-dev libzstd-dev && \
             PATH=/usr/lib/llvm-22/bin:$PATH LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker \
             --no-default-features --features llvm-22`, {all}"
        ));
    }
    Ok(())
}

/// The objects `youwatch-ebpf` builds.
pub struct Objects {
    /// The exec sensor (`youwatch-ebpf`).
    pub exec: PathBuf,
    /// The node ban's TC/XDP programs (`youwatch-netban`).
    pub netban: PathBuf,
}

/// `cargo build --release` in youwatch-ebpf (its own toolchain file and target config), in
/// `<root>/target/ebpf`: an outer cargo holds the lock on the workspace target dir. Returns the
/// objects' paths.
pub fn build(root: &Path) -> Result<Objects, String> {
    let target_dir = root.join("target").join("ebpf");
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "--target-dir",
    ])
    .arg(&target_dir)
    .current_dir(root.join("youwatch-ebpf"));
    // An outer cargo (and clippy) export variables that would leak into the nested build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let inherited_cargo = key.starts_with("CARGO_")
            && !key.starts_with("CARGO_HOME")
            && !key.starts_with("CARGO_REGISTRIES_")
            && !key.starts_with("CARGO_NET_")
            && !key.starts_with("CARGO_HTTP_");
        let rustc = key.starts_with("RUSTC") || key.starts_with("RUSTDOC") || key == "RUSTFLAGS";
        let build_script = matches!(
            key.as_ref(),
            "CARGO"
                | "RUSTUP_TOOLCHAIN"
                | "TARGET"
                | "HOST"
                | "OUT_DIR"
                | "PROFILE"
                | "OPT_LEVEL"
                | "DEBUG"
                | "NUM_JOBS"
        );
        if inherited_cargo || rustc || build_script {
            cmd.env_remove(key.as_ref());
        }
    }
    let hint = "run `cargo xtask build-ebpf` once: it installs the nightly rust-src component, \
                LLVM 22 and bpf-linker, then builds the kernel programs";
    match cmd.status() {
        Ok(status) if status.success() => {
            let dir = target_dir.join("bpfel-unknown-none/release");
            Ok(Objects {
                exec: dir.join("youwatch-ebpf"),
                netban: dir.join("youwatch-netban"),
            })
        }
        Ok(status) => Err(format!(
            "building youwatch-ebpf failed ({status}); if a toolchain piece is missing, {hint}"
        )),
        Err(err) => Err(format!(
            "could not run `rustup run nightly cargo` to build youwatch-ebpf ({err}); {hint}"
        )),
    }
}
