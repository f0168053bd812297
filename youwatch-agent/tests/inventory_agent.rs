//! The agent binary end to end: mode choice from the environment, the inventory wired between
//! the sensor and stdout, and `--dry-run` printing one enriched JSON line per exec.
//! Needs root and BPF (fails under CI=true without them).

mod support;

use support::{
    agent::{Agent, agent_command},
    apiserver::ApiServer,
    cgroup_tree::CgroupTree,
    require,
};

const ID: &str = "c0ffee0000000000000000000000000000000000000000000000000000c0ffee";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_from_kubeconfig_prints_enriched_execs() {
    if !require::root_and_cgroup2("cluster_mode_from_kubeconfig_prints_enriched_execs") {
        return;
    }
    let tree = CgroupTree::new("inv-agent");
    let dir = tempfile::tempdir().unwrap();
    let server = ApiServer::start().await;
    let ctr = tree.guaranteed_pod(&server, "juice-shop-0", "node-e2e", ID);

    let config = format!(
        "telemetry:\n  listen: \"\"\ninventory:\n  cgroup:\n    kubepods: {}\n",
        tree.root().join("kubepods.slice").display()
    );
    let mut cmd = agent_command(dir.path(), &config);
    cmd.env("KUBECONFIG", server.write_kubeconfig(dir.path()))
        .env("NODE_NAME", "node-e2e");
    let mut agent = Agent::spawn(cmd);
    let mode = agent.wait_log("agent mode: cluster");
    assert!(mode.contains("KUBECONFIG"), "{mode}");
    agent.wait_log("watching pod cgroup");

    tree.sh(&ctr, "/bin/echo yw-e2e; true");
    let exec = agent.exec_with("yw-e2e");
    assert_eq!(exec["pod"]["name"], "juice-shop-0");
    assert_eq!(exec["pod"]["namespace"], "shop");
    assert_eq!(exec["container"]["name"], "app");
    assert_eq!(exec["container"]["image_tag"], "v17.1.1");
    assert_eq!(exec["ancestors"][0]["name"], "sh");
    agent.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_local_mode_without_a_cluster() {
    if !require::root_and_cgroup2("node_local_mode_without_a_cluster") {
        return;
    }
    let tree = CgroupTree::new("inv-local");
    let dir = tempfile::tempdir().unwrap();
    let scope = format!("system.slice/docker-{ID}.scope");
    tree.mkdir(&scope);
    // Selected by a glob; discovery finds it under the cgroup mount.
    let config = format!(
        "telemetry:\n  listen: \"\"\ninventory:\n  node_local:\n    cgroup_globs: [\"{}/system.slice/docker-*.scope\"]\n    rescan_interval_ms: 200\n",
        tree.root().display()
    );
    let mut agent = Agent::spawn(agent_command(dir.path(), &config));
    let mode = agent.wait_log("agent mode: node-local");
    assert!(mode.contains("no $KUBECONFIG"), "{mode}");
    agent.wait_log("watching container");
    tree.sh(&scope, "/bin/echo yw-local; true");
    let exec = agent.exec_with("yw-local");
    assert_eq!(exec["container"]["id"], ID);
    assert!(exec["pod"].is_null());
    agent.stop();
}
