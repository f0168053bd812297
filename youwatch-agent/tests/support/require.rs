//! Preconditions of tests that need root, BPF or installed packages: outside CI they skip with
//! a printed reason; under `CI=true` they fail, because CI must never pass by skipping.

/// True when running under CI (`CI=true`, as the CI runner and `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns false (and prints why) when the test cannot run here; panics instead under CI.
pub fn runnable(test: &str, ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("{test}: cannot run under CI=true: {why}");
    }
    eprintln!("SKIPPED {test}: {why}");
    false
}

/// Root (euid 0) and a cgroup v2 hierarchy: what every kernel-side test needs.
pub fn root_and_cgroup2(test: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !runnable(
        test,
        root,
        "needs root to load eBPF programs and create cgroups (run `sudo -E cargo xtask test`)",
    ) {
        return false;
    }
    let cgroup2 = youwatch_agent::cgroupfs::unified_mount().is_ok();
    runnable(test, cgroup2, "needs a mounted cgroup v2 hierarchy")
}
