//! Errors a user can cause name the cause and the fix, and exit non-zero without a panic.

mod support;

use std::process::{Command, Output};

use support::require;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_youwatch-agent"))
}

fn failed_with(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected failure, got {}: {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "stderr lacks {needle:?}: {stderr}");
    }
}

#[test]
fn missing_watch_cgroup_is_named() {
    let out = agent()
        .args([
            "--dry-run",
            "--watch-cgroup",
            "/sys/fs/cgroup/no-such-yw-cgroup",
        ])
        .output()
        .unwrap();
    failed_with(
        &out,
        &["/sys/fs/cgroup/no-such-yw-cgroup", "does not exist"],
    );
}

#[test]
fn non_cgroup_directory_is_refused() {
    let out = agent()
        .args(["--dry-run", "--watch-cgroup", "/tmp"])
        .output()
        .unwrap();
    failed_with(&out, &["/tmp", "cgroup v2"]);
}

#[test]
fn bad_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "sensor:\n  ring_bufer_bytes: 4096\n").unwrap();
    let out = agent()
        .arg("--config")
        .arg(&path)
        .arg("--dry-run")
        .output()
        .unwrap();
    failed_with(&out, &["bad.yaml", "ring_bufer_bytes"]);
}

#[test]
fn bad_ring_size_is_explained() {
    if !require::root_and_cgroup2("bad_ring_size_is_explained") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ring.yaml");
    std::fs::write(&path, "sensor:\n  ring_buffer_bytes: 5000\n").unwrap();
    let out = agent()
        .arg("--config")
        .arg(&path)
        .arg("--dry-run")
        .output()
        .unwrap();
    failed_with(&out, &["ring_buffer_bytes", "5000", "power of two"]);
}

#[test]
fn unprivileged_user_is_told_to_use_root() {
    // Needs root to drop to an unprivileged user in the first place.
    if !require::root_and_cgroup2("unprivileged_user_is_told_to_use_root") {
        return;
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_youwatch-agent"))
        .arg("--dry-run")
        .output()
        .unwrap();
    failed_with(&out, &["needs root", "uid 65534"]);
}
