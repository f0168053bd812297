//! `cargo xtask image`: the agent's container image.
//!
//! The image is `FROM scratch` plus a root filesystem assembled here: the stripped release
//! binary (the kernel programs are embedded in it) and the shared libraries `ldd` says it
//! loads (glibc, libgcc_s) with their loader. No base image is pulled, so it builds offline;
//! the repository's `Dockerfile` calls `cargo xtask image --rootfs-only` in its builder stage,
//! so both images hold the same files, assembled by this code.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::{
    prereq,
    util::{cargo, output, run_checked, workspace_root},
};

/// Where the binary sits in the image.
const AGENT_IN_IMAGE: &str = "usr/bin/youwatch-agent";

/// The final stage; the `Dockerfile`'s last stage says the same.
const CONTAINERFILE: &str = r#"FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/youwatch-agent"]
CMD ["run"]
"#;

#[derive(clap::Args)]
pub struct Args {
    /// Image name and tag.
    #[arg(long, default_value = concat!("localhost/youwatch-agent:", env!("CARGO_PKG_VERSION")))]
    tag: String,
    /// Only assemble the image's root filesystem in DIR (used by the Dockerfile's builder
    /// stage); no container tool needed.
    #[arg(long, value_name = "DIR")]
    rootfs_only: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    prereq::ebpf_toolchain()?;
    run_checked(cargo().args(["build", "--release", "--locked", "-p", "youwatch-agent"]))?;
    let agent = workspace_root().join("target/release/youwatch-agent");
    if let Some(dir) = &args.rootfs_only {
        let size = assemble_rootfs(&agent, dir)?;
        println!("root filesystem in {} ({})", dir.display(), mib(size));
        return Ok(());
    }
    prereq::image_tools()?;
    let context = workspace_root().join("target/image");
    let rootfs = context.join("rootfs");
    let size = assemble_rootfs(&agent, &rootfs)?;
    std::fs::write(context.join("Containerfile"), CONTAINERFILE)?;
    run_checked(
        Command::new("podman")
            .args(["build", "--tag", &args.tag, "--file"])
            .arg(context.join("Containerfile"))
            .arg(&context),
    )
    .context("building the image with podman")?;
    let inspected = output(Command::new("podman").args([
        "image",
        "inspect",
        "--format",
        "{{.Size}}",
        &args.tag,
    ]))?;
    let image_size: u64 = inspected.trim().parse().unwrap_or(0);
    println!(
        "image {}: {} (binary {}, root filesystem {})",
        args.tag,
        mib(image_size),
        mib(std::fs::metadata(&agent)?.len()),
        mib(size)
    );
    println!(
        "save it for a registry or a node with: podman save {} -o youwatch-agent.tar",
        args.tag
    );
    Ok(())
}

/// Copies the agent and every library it loads into `dir` (emptied first), at the paths the
/// dynamic loader looks for them. Returns the bytes copied.
fn assemble_rootfs(agent: &Path, dir: &Path) -> anyhow::Result<u64> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    let mut files = vec![(agent.to_owned(), PathBuf::from(AGENT_IN_IMAGE))];
    for lib in shared_libraries(agent)? {
        let relative = lib.strip_prefix("/").unwrap_or(&lib).to_owned();
        files.push((lib, relative));
    }
    let mut total = 0;
    for (from, to) in files {
        let to = dir.join(to);
        std::fs::create_dir_all(to.parent().expect("a file path has a parent"))?;
        // Copies what a symlink points to, under the link's own name.
        total += std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    // Mount points the DaemonSet uses, so a read-only root needs no runtime-created dirs.
    for mount in [
        "etc/youwatch",
        "var/lib/youwatch",
        "var/log/modsecurity",
        "tmp",
    ] {
        std::fs::create_dir_all(dir.join(mount))?;
    }
    Ok(total)
}

/// The absolute paths `ldd` resolves for `binary`, the loader included.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let listing = output(Command::new("ldd").arg(binary))
        .context("ldd lists the libraries the agent loads (Debian: apt-get install libc-bin)")?;
    let mut libs = Vec::new();
    for line in listing.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
        // "linux-vdso.so.1 (0x...)" (in the kernel, nothing to copy).
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => libs.push(PathBuf::from(p)),
            Some("not") => bail!("ldd: a library of the agent is missing: {}", line.trim()),
            _ => {}
        }
    }
    if libs.is_empty() {
        bail!("ldd found no libraries for {}: {listing}", binary.display());
    }
    Ok(libs)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_holds_the_binary_and_its_loader() {
        let dir = std::env::temp_dir().join(format!("xtask-rootfs-{}", std::process::id()));
        let ls = Path::new("/bin/ls");
        assemble_rootfs(ls, &dir).unwrap();
        assert!(dir.join(AGENT_IN_IMAGE).exists());
        let libs = shared_libraries(ls).unwrap();
        assert!(
            libs.iter()
                .any(|l| l.to_string_lossy().contains("ld-linux")),
            "{libs:?}"
        );
        for lib in libs {
            assert!(
                dir.join(lib.strip_prefix("/").unwrap()).is_file(),
                "{}",
                lib.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
