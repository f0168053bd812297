//! Builds the kernel programs (`youwatch-ebpf`: the exec sensor's object and the node ban's)
//! and hands them to the agent, which embeds them: `youwatch-agent` is one self-contained file.
//!
//! The eBPF crate needs nightly, `rust-src` and `bpf-linker`. `cargo xtask build-ebpf` installs
//! them; this script only builds, and says which command to run when something is missing.

#[path = "ebpf_build.rs"]
mod ebpf_build;

use std::{env, path::PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("youwatch-agent lives in the workspace root");
    for path in [
        "youwatch-ebpf/src",
        "youwatch-ebpf/Cargo.toml",
        "youwatch-ebpf/.cargo/config.toml",
        "youwatch-ebpf/rust-toolchain.toml",
        "youwatch-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=YOUWATCH_EBPF_OBJECT");
    println!("cargo:rerun-if-env-changed=YOUWATCH_NETBAN_OBJECT");
    println!("cargo:rerun-if-env-changed=YOUWATCH_EBPF_STUB");

    // Prebuilt objects (e.g. from a packaging step) skip the nested build; a stub lets
    // `cargo check`/`clippy` run where nightly or bpf-linker are missing.
    let stub = env::var_os("YOUWATCH_EBPF_STUB").is_some_and(|v| !v.is_empty() && v != "0");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let prebuilt = (
        env::var_os("YOUWATCH_EBPF_OBJECT").map(PathBuf::from),
        env::var_os("YOUWATCH_NETBAN_OBJECT").map(PathBuf::from),
    );
    let (exec, netban) = match prebuilt {
        (Some(exec), Some(netban)) => (exec, netban),
        _ if stub => {
            let stub = |name: &str| {
                let path = out.join(name);
                std::fs::write(&path, b"").expect("writing a stub eBPF object in OUT_DIR");
                path
            };
            println!(
                "cargo:warning=YOUWATCH_EBPF_STUB is set: built without the kernel programs; \
                 this youwatch-agent cannot load its exec sensor or node ban (unset it and run \
                 `cargo xtask build-ebpf` for a working binary)"
            );
            (stub("youwatch-ebpf.stub"), stub("youwatch-netban.stub"))
        }
        (exec, netban) => {
            match ebpf_build::check_toolchain().and_then(|()| ebpf_build::build(root)) {
                Ok(built) => (exec.unwrap_or(built.exec), netban.unwrap_or(built.netban)),
                Err(message) => {
                    // cargo shows a failed build script's stderr.
                    eprintln!("\nerror: {message}\n");
                    std::process::exit(1);
                }
            }
        }
    };
    println!("cargo:rustc-env=YOUWATCH_EBPF_OBJECT={}", exec.display());
    println!(
        "cargo:rustc-env=YOUWATCH_NETBAN_OBJECT={}",
        netban.display()
    );
}
