//! The agent binary enforcing on a dev VM, without a cluster: `--enforce --watch-cgroup PATH`
//! stops a shell in that subtree and says how (alert, `/readyz`, metrics); with `--dry-run` it
//! only reports what it would have stopped; a subtree holding the agent itself is never
//! enforced. Needs root and BPF (fails under CI=true without them).

mod support;

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    agent::{AGENT, Agent, acting_command, agent_command, configured},
    cgroup_tree::CgroupTree,
    require,
};

/// Configuration with the HTTP listener on a free loopback port and alerts in `dir`.
fn config(dir: &Path) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!(
        "agent:\n  state_dir: {state}\ntelemetry:\n  listen: \"127.0.0.1:{port}\"\n  alerts:\n    stdout: false\n    file: {alerts}\n",
        state = dir.join("state").display(),
        alerts = dir.join("alerts.json").display(),
    )
}

/// The alert of `rule`, waiting for the alert writer.
fn alert(dir: &Path, rule: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("alerts.json")).unwrap_or_default();
        if let Some(alert) = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("alert lines are JSON"))
            .find(|a| a["rule"] == rule)
        {
            return alert;
        }
        assert!(Instant::now() < deadline, "no alert {rule:?} in:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `/readyz` once it answers 200.
fn ready(agent: &mut Agent) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = agent.http_get("/readyz");
        if status.contains("200") {
            return body;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_flag_stops_a_shell_in_the_watched_subtree_and_says_how() {
    if !require::root_and_cgroup2("enforce_flag_stops_a_shell_in_the_watched_subtree_and_says_how")
    {
        return;
    }
    let tree = CgroupTree::new("agent-enforce");
    tree.mkdir("ctr");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = acting_command(dir.path(), &config(dir.path()));
    cmd.arg("--enforce").arg("--watch-cgroup").arg(tree.root());
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("watching cgroup subtree");
    let readyz = ready(&mut agent);
    let mechanism = if readyz.contains("mechanism lsm") {
        "lsm"
    } else {
        "sigkill"
    };
    assert!(
        readyz.contains(&format!("enforce: ok: mode enforce, mechanism {mechanism}")),
        "{readyz}"
    );
    if mechanism == "sigkill" {
        assert!(readyz.contains("BPF LSM not used: "), "{readyz}");
        agent.wait_log_all(&["enforcement: mode enforce", "lsm_unavailable"]);
    }

    let created = dir.path().join("created-by-the-shell");
    let touch = format!("touch {}", created.display());
    let out = tree
        .command_in("ctr", "/bin/sh")
        .args(["-c", &touch])
        .output();
    match mechanism {
        "sigkill" => assert_eq!(out.unwrap().status.signal(), Some(libc::SIGKILL)),
        _ => assert_eq!(out.unwrap_err().raw_os_error(), Some(libc::EPERM)),
    }
    assert!(!created.exists(), "the shell ran");
    // Other programs run.
    let echo = tree
        .command_in("ctr", "/bin/echo")
        .arg("yw-allowed")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&echo.stdout), "yw-allowed\n");
    let prevented = alert(dir.path(), "Forbidden exec prevented in guarded pod");
    assert_eq!(prevented["priority"], "Critical");
    assert_eq!(prevented["output_fields"]["enforce.outcome"], "prevented");
    assert_eq!(prevented["output_fields"]["enforce.mechanism"], mechanism);
    assert_eq!(
        prevented["output_fields"]["proc.cmdline"],
        format!("sh -c {touch}")
    );

    let (_, metrics) = agent.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "youwatch_enforce_execs_total{{mechanism=\"{mechanism}\",outcome=\"stopped\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "youwatch_enforce_mode{{mode=\"enforce\",mechanism=\"{mechanism}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("youwatch_inventory_enforced_cgroups 1"),
        "{metrics}"
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_only_reports_what_it_would_stop() {
    if !require::root_and_cgroup2("dry_run_only_reports_what_it_would_stop") {
        return;
    }
    let tree = CgroupTree::new("agent-monitor");
    tree.mkdir("ctr");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = agent_command(dir.path(), &config(dir.path()));
    cmd.arg("--enforce").arg("--watch-cgroup").arg(tree.root());
    let mut agent = Agent::spawn(cmd);
    agent.wait_log("watching cgroup subtree");
    assert!(ready(&mut agent).contains("enforce: ok: mode monitor"));
    let created = dir.path().join("created");
    tree.sh(
        "ctr",
        &format!("touch {}; echo yw-monitor", created.display()),
    );
    assert!(created.exists(), "monitor mode lets it run");
    let exec = agent
        .stdout_json(Duration::from_secs(20), |v| {
            v["event"]["filename"] == "/bin/sh"
        })
        .expect("the exec on stdout");
    assert_eq!(exec["event"]["enforcement"]["outcome"], "would_stop");
    let flagged = alert(dir.path(), "Forbidden exec in guarded pod (monitor mode)");
    assert_eq!(flagged["priority"], "Warning");
    assert_eq!(
        flagged["output_fields"]["enforce.outcome"],
        "would_have_been_stopped"
    );
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subtree_holding_the_agent_is_never_enforced() {
    if !require::root_and_cgroup2("a_subtree_holding_the_agent_is_never_enforced") {
        return;
    }
    let tree = CgroupTree::new("agent-own");
    tree.mkdir("agent");
    tree.mkdir("other");
    let dir = tempfile::tempdir().unwrap();
    // The agent runs inside the subtree it is asked to enforce.
    let mut cmd = configured(
        tree.command_in("agent", AGENT),
        dir.path(),
        &config(dir.path()),
    );
    cmd.arg("--enforce").arg("--watch-cgroup").arg(tree.root());
    let mut agent = Agent::spawn(cmd);
    let refused = agent.wait_log("not enforcing in this cgroup");
    assert!(
        refused.contains("the agent itself runs in its subtree"),
        "{refused}"
    );
    agent.wait_log("watching cgroup subtree");
    assert!(ready(&mut agent).contains("enforce: ok: mode enforce"));
    let created = dir.path().join("created");
    tree.sh("other", &format!("touch {}", created.display()));
    assert!(created.exists());
    agent.stop();
}
