//! Builds the kernel programs (`youwatch-ebpf`) and hands their object to the agent, which
//! embeds it: `youwatch-agent` is one self-contained file.
//!
//! The eBPF crate needs nightly, `rust-src` and `bpf-linker`. `cargo xtask build-ebpf` installs
//! them; this script only builds, and says which command to run when something is missing.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("youwatch-agent lives in the workspace root");
    let ebpf_dir = root.join("youwatch-ebpf");
    let common_dir = root.join("youwatch-common");
    for path in [
        ebpf_dir.join("src"),
        ebpf_dir.join("Cargo.toml"),
        ebpf_dir.join(".cargo/config.toml"),
        ebpf_dir.join("rust-toolchain.toml"),
        common_dir.join("src"),
    ] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-env-changed=YOUWATCH_EBPF_OBJECT");

    // A prebuilt object (e.g. from a packaging step) skips the nested build.
    let object = match env::var_os("YOUWATCH_EBPF_OBJECT") {
        Some(path) => PathBuf::from(path),
        None => {
            check_toolchain();
            build_ebpf(root, &ebpf_dir)
        }
    };
    println!("cargo:rustc-env=YOUWATCH_EBPF_OBJECT={}", object.display());
}

/// Stops the build with `message` (cargo shows a failed build script's stderr).
fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1);
}

/// Checks what the nested build needs, so a missing piece is named instead of surfacing as a
/// linker error from deep inside it.
fn check_toolchain() {
    let all = "or run `cargo xtask build-ebpf`, which installs every missing piece";
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output();
    let sysroot = match sysroot {
        Ok(out) if out.status.success() => {
            PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
        }
        _ => fail(&format!(
            "the eBPF programs need the nightly toolchain (through rustup): run `rustup toolchain install nightly`, {all}"
        )),
    };
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        fail(&format!(
            "the eBPF programs need the nightly rust-src component: run `rustup component add rust-src --toolchain nightly`, {all}"
        ));
    }
    let linker = Command::new("bpf-linker").arg("--version").output();
    if !linker.is_ok_and(|o| o.status.success()) {
        fail(&format!(
            "bpf-linker is not on PATH: run `apt-get install -y llvm-22-dev libpolly-22-dev libzstd-dev && \
             PATH=/usr/lib/llvm-22/bin:$PATH LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker \
             --no-default-features --features llvm-22`, {all}"
        ));
    }
}

/// `cargo build --release` in youwatch-ebpf with its own toolchain file and target config,
/// in a target dir of its own (the outer build holds the lock on the workspace one).
fn build_ebpf(root: &Path, ebpf_dir: &Path) -> PathBuf {
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
    .current_dir(ebpf_dir);
    // The outer cargo (and clippy) export variables that would leak into the nested build.
    for (key, _) in env::vars_os() {
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
        Ok(status) if status.success() => {}
        Ok(status) => fail(&format!(
            "building youwatch-ebpf failed ({status}); if a toolchain piece is missing, {hint}"
        )),
        Err(err) => fail(&format!(
            "could not run `rustup run nightly cargo` to build youwatch-ebpf ({err}); {hint}"
        )),
    }
    target_dir.join("bpfel-unknown-none/release/youwatch-ebpf")
}
