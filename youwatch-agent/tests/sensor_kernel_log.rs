//! `sensor.kernel_log`: the kernel programs' own diagnostics reach the agent's log (target
//! `youwatch_agent::kernel`) at the chosen level, and nothing at all when off (the default:
//! the level is a load-time constant and the verifier drops the statements). The agent
//! binary in `--dry-run --watch-cgroup`. Needs root and BPF (fails under CI=true without them).

mod support;

use std::time::Duration;

use support::{
    agent::{Agent, agent_command},
    cgroup_tree::CgroupTree,
    require,
};

/// Runs one exec in a watched subtree with `kernel_log: level`; the kernel's log line about
/// it, if any.
fn kernel_line_for_an_exec(label: &str, level: &str) -> Option<String> {
    let tree = CgroupTree::new(label);
    tree.mkdir("ctr");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "agent:\n  state_dir: {}\ntelemetry:\n  listen: \"\"\nsensor:\n  kernel_log: {level}\n",
        dir.path().join("state").display()
    );
    let mut cmd = agent_command(dir.path(), &config);
    cmd.env("YOUWATCH_LOG", "info,youwatch_agent::kernel=trace")
        .arg("--watch-cgroup")
        .arg(tree.root());
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("watching cgroup subtree");
    let out = tree
        .command_in("ctr", "/bin/echo")
        .arg("yw-kernel-log")
        .output()
        .unwrap();
    assert!(out.status.success());
    // Delivered: the kernel has run the program for it.
    let exec = agent.exec_with("yw-kernel-log");
    let line = agent.log_within_all(
        &["youwatch_agent::kernel", "in watched cgroup"],
        Duration::from_secs(2),
    );
    if let Some(line) = &line {
        let pid = exec["event"]["pid"].to_string();
        assert!(
            line.contains(&format!("exec of pid {pid} ")),
            "{line}\n{exec}"
        );
    }
    line
}

#[test]
fn at_debug_the_kernel_reports_each_exec() {
    if !require::root_and_cgroup2("at_debug_the_kernel_reports_each_exec") {
        return;
    }
    let line = kernel_line_for_an_exec("kernel-log-debug", "debug");
    assert!(line.is_some(), "no kernel log line for the exec");
}

#[test]
fn off_by_default_the_kernel_says_nothing() {
    if !require::root_and_cgroup2("off_by_default_the_kernel_says_nothing") {
        return;
    }
    assert_eq!(kernel_line_for_an_exec("kernel-log-off", "\"off\""), None);
    // Below the level: a warn-level kernel says nothing about an ordinary exec.
    assert_eq!(kernel_line_for_an_exec("kernel-log-warn", "warn"), None);
}
