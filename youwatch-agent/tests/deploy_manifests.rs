//! `deploy/` stays true: kustomize renders it, and the config it ships is valid for this agent.

mod support;

use std::{path::PathBuf, process::Command};

use support::require;
use youwatch_agent::config::Config;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn shipped_config_is_valid() {
    let path = deploy_dir().join("config.yaml");
    Config::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn kustomize_renders_the_daemonset_with_its_config() {
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok();
    if !require::runnable(
        "kustomize_renders_the_daemonset_with_its_config",
        kubectl,
        "needs kubectl",
    ) {
        return;
    }
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "kind: DaemonSet",
        "kind: ClusterRole",
        "kind: ConfigMap",
        "config.yaml: |",
        "fieldPath: spec.nodeName",
        "/sys/kernel/btf",
        "namespace: youwatch",
    ] {
        assert!(text.contains(needle), "rendered manifests lack {needle:?}");
    }
    for example in [
        "juice-shop.yaml",
        "ingress-nginx-modsecurity.yaml",
        "ingress-nginx-audit-volume.yaml",
    ] {
        assert!(
            deploy_dir().join("examples").join(example).exists(),
            "{example}"
        );
    }
}
