//! Prerequisites, installed when missing: the nightly toolchain with rust-src, LLVM 22,
//! bpf-linker, the Debian packages the tests use (a real nginx + ModSecurity + CRS WAF,
//! iproute2 for the node ban's network namespaces, kubectl for the manifests), and podman for
//! `cargo xtask image`.

use std::{path::Path, process::Command};

use anyhow::{Context, bail};

use crate::util::{output, run_checked};

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev", "libzstd-dev"];

/// Debian packages the test suite needs.
const TEST_PACKAGES: &[&str] = &[
    "nginx",
    "libnginx-mod-http-modsecurity",
    "modsecurity-crs",
    // `ip` and `tc`: the node ban's tests build network namespaces.
    "iproute2",
];

/// Commands the test suite runs, and the package that brings each when it is not on PATH
/// (found by command, not by package: kubectl is often installed outside apt).
const TEST_COMMANDS: &[(&str, &str)] = &[("kubectl", "kubectl")];

/// Builds and inspects images offline (`FROM scratch`, no registry needed).
const IMAGE_PACKAGES: &[&str] = &["podman"];

/// Everything `youwatch-ebpf` needs to build.
pub fn ebpf_toolchain() -> anyhow::Result<()> {
    rust_src()?;
    if !Path::new(LLVM_PREFIX).join("bin/llvm-config").exists() {
        apt_install(LLVM_PACKAGES).context("installing LLVM 22 for bpf-linker")?;
    }
    bpf_linker()
}

/// What the tests need besides the eBPF toolchain (see [`TEST_PACKAGES`], [`TEST_COMMANDS`]).
pub fn test_packages() -> anyhow::Result<()> {
    install_missing(TEST_PACKAGES)?;
    for &(command, package) in TEST_COMMANDS {
        if !on_path(command) {
            apt_install(&[package]).with_context(|| {
                format!(
                    "the tests run `{command}` (kubectl kustomize renders deploy/); install it \
                     (https://kubernetes.io/docs/tasks/tools/), then run the tests again"
                )
            })?;
        }
    }
    Ok(())
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

/// The container tool `cargo xtask image` builds with.
pub fn image_tools() -> anyhow::Result<()> {
    install_missing(IMAGE_PACKAGES).context("installing podman to build the image")
}

fn install_missing(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn rust_src() -> anyhow::Result<()> {
    let rustup = || {
        output(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            "nightly",
        ]))
    };
    let installed = match rustup() {
        Ok(installed) => installed,
        // No nightly toolchain yet (youwatch-ebpf/rust-toolchain.toml asks for one).
        Err(_) => {
            eprintln!(
                "xtask: installing the nightly toolchain with rust-src (the eBPF programs need it)"
            );
            run_checked(Command::new("rustup").args([
                "toolchain",
                "install",
                "nightly",
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]))
            .context(
                "rustup is needed to build the eBPF programs: install it from https://rustup.rs",
            )?;
            return Ok(());
        }
    };
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: installing rust-src for the nightly toolchain");
    run_checked(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker() -> anyhow::Result<()> {
    if Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker (about a minute)");
    let path = format!(
        "{LLVM_PREFIX}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    run_checked(
        Command::new("cargo")
            .args(["install", "bpf-linker", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX),
    )
    .context(format!(
        "installing bpf-linker failed; install it by hand with: PATH={LLVM_PREFIX}/bin:$PATH \
         LLVM_SYS_221_PREFIX={LLVM_PREFIX} cargo install bpf-linker --no-default-features --features llvm-22"
    ))
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    if Command::new("apt-get").arg("--version").output().is_err() {
        bail!(
            "these packages are missing and this is not a Debian/Ubuntu system: {}; install them with your package manager",
            packages.join(" ")
        );
    }
    eprintln!("xtask: installing {}", packages.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-q"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .with_context(|| format!("apt-get install {} (run as root)", packages.join(" ")))
}
