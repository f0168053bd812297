//! `deploy/` stays true: every manifest is a valid Kubernetes object with no field its type
//! does not know, kustomize renders the base and each overlay, the DaemonSet mounts what the
//! shipped config reads and asks for no privilege it does not need, and the examples point at
//! the paths and names the agent uses.

mod support;

use std::{path::Path, process::Command, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, Deployment},
        core::v1::{
            ConfigMap, Container, Namespace, PodTemplateSpec, Secret, Service, ServiceAccount,
            Volume, VolumeMount,
        },
        networking::v1::Ingress,
        rbac::v1::{ClusterRole, ClusterRoleBinding},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use serde_json::Value;
use support::{
    manifests::{agent_container, daemonset, deploy_dir, documents, typed},
    require,
};
use youwatch_agent::{
    config::Config,
    enforce::EnforceMode,
    netban::crd::{self, IpBan, IpBanSpec},
    response::config::{DenyBackend, DenyBackends},
};

fn config(path: &str) -> Config {
    Config::load(Some(&deploy_dir().join(path))).unwrap_or_else(|e| panic!("{e}"))
}

/// Parses `doc` into the type its kind names (and fails on a kind this test does not know).
fn check_typed(doc: &Value, origin: &Path) {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => drop(typed::<Namespace>(doc, origin)),
        "ServiceAccount" => drop(typed::<ServiceAccount>(doc, origin)),
        "ClusterRole" => drop(typed::<ClusterRole>(doc, origin)),
        "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(doc, origin)),
        "ConfigMap" => drop(typed::<ConfigMap>(doc, origin)),
        "Secret" => drop(typed::<Secret>(doc, origin)),
        "DaemonSet" => drop(typed::<DaemonSet>(doc, origin)),
        "Deployment" => drop(typed::<Deployment>(doc, origin)),
        "Service" => drop(typed::<Service>(doc, origin)),
        "Ingress" => drop(typed::<Ingress>(doc, origin)),
        "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(doc, origin)),
        kind => panic!("{}: kind {kind:?} unknown to this test", origin.display()),
    }
}

#[test]
fn every_manifest_is_a_typed_object_without_unknown_fields() {
    for file in [
        "base/namespace.yaml",
        "base/ipban-crd.yaml",
        "base/rbac.yaml",
        "base/daemonset.yaml",
        "base/service.yaml",
        "examples/juice-shop.yaml",
        "examples/falco-webhook-token.yaml",
    ] {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{file} is empty");
        for doc in docs {
            check_typed(&doc, &deploy_dir().join(file));
        }
    }
}

#[test]
fn shipped_configs_are_valid_and_overlays_change_only_their_part() {
    let base = config("base/config.yaml");
    let mut detect = base.clone();
    detect.response.dry_run = true;
    detect.enforce.mode = EnforceMode::Monitor;
    assert_eq!(config("overlays/detect-only/config.yaml"), detect);
    let mut enforce = base.clone();
    enforce.response.dry_run = false;
    enforce.response.journal_sync = true;
    enforce.enforce.mode = EnforceMode::Enforce;
    assert_eq!(config("overlays/enforce/config.yaml"), enforce);
    let mut falco = base.clone();
    falco.falco.webhook.enabled = true;
    falco.falco.webhook.token_file = "/etc/youwatch-falco/token".into();
    assert_eq!(config("overlays/falco-webhook/config.yaml"), falco);
    let mut node_ban = base.clone();
    node_ban.node_ban.enabled = true;
    // Every playbook that bans (the WAF's, an incident's) bans in the kernel too.
    for playbook in &mut node_ban.response.playbooks {
        playbook.deny_ip_backends =
            DenyBackends(vec![DenyBackend::IngressAnnotation, DenyBackend::NodeTc]);
    }
    assert_eq!(config("overlays/node-ban/config.yaml"), node_ban);
}

#[test]
fn kustomize_renders_the_base_and_every_overlay() {
    let kubectl = Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok();
    if !require::runnable(
        "kustomize_renders_the_base_and_every_overlay",
        kubectl,
        "needs kubectl",
    ) {
        return;
    }
    for dir in [
        "",
        "overlays/detect-only",
        "overlays/enforce",
        "overlays/falco-webhook",
        "overlays/node-ban",
    ] {
        let path = deploy_dir().join(dir);
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ConfigMap",
            "DaemonSet",
            "Service",
            "CustomResourceDefinition",
        ] {
            assert!(
                kinds.contains(&kind),
                "{}: no {kind} in {kinds:?}",
                path.display()
            );
        }
        for doc in &docs {
            check_typed(doc, &path);
            if doc["kind"] != "Namespace"
                && doc["kind"] != "ClusterRole"
                && doc["kind"] != "ClusterRoleBinding"
                && doc["kind"] != "CustomResourceDefinition"
            {
                assert_eq!(
                    doc["metadata"]["namespace"],
                    "youwatch",
                    "{}: {doc}",
                    path.display()
                );
            }
        }
    }
}

fn mount<'a>(agent: &'a Container, name: &str) -> &'a VolumeMount {
    agent
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("the agent container mounts no volume {name}"))
}

fn host_path(ds: &DaemonSet, volume: &str) -> String {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    spec.volumes
        .iter()
        .flatten()
        .find(|v| v.name == volume)
        .and_then(|v| v.host_path.as_ref())
        .map(|h| h.path.clone())
        .unwrap_or_else(|| panic!("volume {volume} is not a hostPath"))
}

#[test]
fn the_daemonset_mounts_what_the_config_reads() {
    let config = config("base/config.yaml");
    let ds = daemonset();
    let agent = agent_container();
    let args = agent.args.clone().unwrap_or_default();
    let at = args.iter().position(|a| a == "--config").expect("--config");
    let config_file = Path::new(&args[at + 1]);
    assert_eq!(
        Path::new(&mount(&agent, "config").mount_path),
        config_file.parent().unwrap()
    );

    let state = mount(&agent, "state");
    assert_eq!(Path::new(&state.mount_path), config.agent.state_dir);
    assert_ne!(
        state.read_only,
        Some(true),
        "the state directory is written"
    );
    assert_eq!(Path::new(&host_path(&ds, "state")), config.agent.state_dir);

    let waf = mount(&agent, "waf-audit-log");
    assert_eq!(
        Path::new(&waf.mount_path),
        config.waf.audit_log.parent().unwrap()
    );
    assert_eq!(waf.read_only, Some(true));
    assert_eq!(
        Path::new(&host_path(&ds, "waf-audit-log")),
        config.waf.audit_log.parent().unwrap()
    );

    assert_eq!(mount(&agent, "cgroup").mount_path, "/sys/fs/cgroup");
    assert_eq!(mount(&agent, "btf").mount_path, "/sys/kernel/btf");

    let port = config.telemetry.listen_addr().unwrap().unwrap().port();
    let ports = agent.ports.clone().unwrap_or_default();
    assert!(
        ports
            .iter()
            .any(|p| p.container_port == i32::from(port) && p.name.as_deref() == Some("http"))
    );
    let env: Vec<String> = agent.env.iter().flatten().map(|e| e.name.clone()).collect();
    for name in ["NODE_NAME", "POD_NAMESPACE", "POD_NAME"] {
        assert!(
            env.iter().any(|e| e == name),
            "the DaemonSet does not set {name}"
        );
    }
}

#[test]
fn the_daemonset_asks_for_no_privilege_it_does_not_need() {
    let ds = daemonset();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_ne!(
        pod.host_network,
        Some(true),
        "no hostNetwork: the agent needs no host port"
    );
    assert_ne!(pod.host_ipc, Some(true));
    let agent = agent_container();
    let sc = agent.security_context.unwrap();
    assert_eq!(sc.privileged, Some(false));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.unwrap();
    assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]));
    // Which are added, and why, is proven by tests/deploy_capabilities.rs.
    assert!(
        !caps
            .add
            .unwrap_or_default()
            .iter()
            .any(|c| c == "SYS_ADMIN")
    );
}

#[test]
fn probes_and_shutdown_fit_the_agent() {
    let config = config("base/config.yaml");
    let ds = daemonset();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    let agent = agent_container();
    let path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.clone())
    };
    assert_eq!(path(&agent.liveness_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&agent.startup_probe).as_deref(), Some("/healthz"));
    assert_eq!(path(&agent.readiness_probe).as_deref(), Some("/readyz"));
    // The response drains for shutdown_grace; the sensor and inputs need a few seconds more.
    let grace = Duration::from_secs(pod.termination_grace_period_seconds.unwrap() as u64);
    assert!(
        config.response.shutdown_grace + Duration::from_secs(5) <= grace,
        "response.shutdown_grace {:?} does not fit terminationGracePeriodSeconds {grace:?}",
        config.response.shutdown_grace
    );
}

#[test]
fn the_ingress_nginx_examples_write_where_the_agent_reads() {
    let config = config("base/config.yaml");
    let audit_log = config.waf.audit_log.display().to_string();
    let audit_dir = config.waf.audit_log.parent().unwrap().display().to_string();
    let ds_dir = host_path(&daemonset(), "waf-audit-log");
    assert_eq!(ds_dir, audit_dir);
    let snippet_ok = |snippet: &str| {
        snippet.contains(&format!("SecAuditLog {audit_log}\n"))
            && snippet.contains("SecAuditLogFormat JSON")
    };

    // kubectl patch files.
    let origin = deploy_dir().join("examples/ingress-nginx-modsecurity.yaml");
    let cm: ConfigMap = typed(
        &documents("examples/ingress-nginx-modsecurity.yaml")[0],
        &origin,
    );
    assert!(snippet_ok(&cm.data.unwrap()["modsecurity-snippet"]));
    let origin = deploy_dir().join("examples/ingress-nginx-audit-volume.yaml");
    let patch = &documents("examples/ingress-nginx-audit-volume.yaml")[0];
    let template: PodTemplateSpec = typed(&patch["spec"]["template"], &origin);
    let spec = template.spec.unwrap();
    let volume = &spec.volumes.unwrap()[0];
    assert_eq!(volume.host_path.as_ref().unwrap().path, audit_dir);
    assert_eq!(
        spec.containers[0].volume_mounts.as_ref().unwrap()[0].mount_path,
        audit_dir
    );

    // Helm values.
    let origin = deploy_dir().join("examples/ingress-nginx-values.yaml");
    let values = &documents("examples/ingress-nginx-values.yaml")[0]["controller"];
    assert!(snippet_ok(
        values["config"]["modsecurity-snippet"].as_str().unwrap()
    ));
    let volumes: Vec<Volume> = typed(&values["extraVolumes"], &origin);
    assert_eq!(volumes[0].host_path.as_ref().unwrap().path, audit_dir);
    let mounts: Vec<VolumeMount> = typed(&values["extraVolumeMounts"], &origin);
    assert_eq!(mounts[0].mount_path, audit_dir);
    let init: Vec<Container> = typed(&values["extraInitContainers"], &origin);
    assert_eq!(
        init[0].volume_mounts.as_ref().unwrap()[0].mount_path,
        audit_dir
    );
}

#[test]
fn the_examples_name_what_the_agent_guards_and_serves() {
    let config = config("base/config.yaml");
    // Juice Shop's pods are named after its Deployment: the default pod name glob guards them.
    let origin = deploy_dir().join("examples/juice-shop.yaml");
    let docs = documents("examples/juice-shop.yaml");
    let deployment: Deployment = typed(
        docs.iter().find(|d| d["kind"] == "Deployment").unwrap(),
        &origin,
    );
    let name = deployment.metadata.name.unwrap();
    let glob = config.inventory.pod_name_pattern.trim_matches('*');
    assert!(
        name.contains(glob),
        "pods {name}-... are not matched by {}",
        config.inventory.pod_name_pattern
    );
    assert!(docs.iter().any(|d| d["kind"] == "Ingress"));
    // Its pods opt in to in-kernel enforcement.
    let labels = deployment
        .spec
        .unwrap()
        .template
        .metadata
        .unwrap()
        .labels
        .unwrap();
    assert_eq!(
        labels.get(&config.enforce.opt_in_label).map(String::as_str),
        Some(youwatch_agent::inventory::enforce::OPT_IN_VALUE)
    );

    // Falco sends to the agent's Service, on its port, with the token of the Secret the
    // falco-webhook overlay mounts.
    let values = &documents("examples/falco-values.yaml")[0];
    let url = values["falco"]["http_output"]["url"].as_str().unwrap();
    let port = config.telemetry.listen_addr().unwrap().unwrap().port();
    assert!(
        url.ends_with(&format!("@youwatch-agent.youwatch.svc:{port}/falco")),
        "{url}"
    );
    assert_eq!(values["falco"]["json_output"], true);
    let secret = values["extra"]["env"][0]["valueFrom"]["secretKeyRef"]["name"]
        .as_str()
        .unwrap();
    let overlay =
        std::fs::read_to_string(deploy_dir().join("overlays/falco-webhook/token-volume.yaml"))
            .unwrap();
    assert!(overlay.contains(&format!("secretName: {secret}")));
    let secrets = documents("examples/falco-webhook-token.yaml");
    assert!(
        secrets
            .iter()
            .any(|d| d["metadata"]["name"] == secret && d["metadata"]["namespace"] == "youwatch")
    );
    assert!(
        secrets
            .iter()
            .any(|d| d["metadata"]["name"] == secret && d["metadata"]["namespace"] == "falco")
    );
}

/// The IPBan CRD serves what `src/netban/crd.rs` reads and writes: its group, version, kind,
/// plural and scope, and exactly the spec fields of `IpBanSpec`.
#[test]
fn the_ipban_crd_matches_the_code() {
    let origin = deploy_dir().join("base/ipban-crd.yaml");
    let crd: CustomResourceDefinition = typed(&documents("base/ipban-crd.yaml")[0], &origin);
    let spec = crd.spec;
    assert_eq!(crd.metadata.name.as_deref(), Some("ipbans.youwatch.dev"));
    assert_eq!(spec.group, crd::GROUP);
    assert_eq!(spec.names.kind, crd::KIND);
    assert_eq!(spec.names.plural, crd::PLURAL);
    assert_eq!(
        spec.scope, "Cluster",
        "IpBan's Resource scope is ClusterResourceScope"
    );
    assert_eq!(spec.versions.len(), 1);
    let version = &spec.versions[0];
    assert_eq!(version.name, crd::VERSION);
    assert!(version.served && version.storage);
    let schema = version
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    let spec_schema = &schema.properties.as_ref().unwrap()["spec"];
    let declared: std::collections::BTreeSet<String> = spec_schema
        .properties
        .as_ref()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let full = IpBanSpec {
        host: Some("shop.example".into()),
        ..IpBanSpec::default()
    };
    let written = serde_json::to_value(IpBan::new("x".into(), full)).unwrap();
    let fields: std::collections::BTreeSet<String> = written["spec"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        declared, fields,
        "the CRD's spec properties are IpBanSpec's fields"
    );
    assert_eq!(
        spec_schema.required.clone().unwrap_or_default(),
        ["address", "expires"],
        "what IpBan::parsed needs"
    );
}

/// The node-ban overlay gives the agent what the node ban uses: the host's network namespace
/// (the node's interfaces), NET_ADMIN (attaching TC/XDP) and the host's bpffs at
/// node_ban.pin_dir.
#[test]
fn the_node_ban_overlay_reaches_the_nodes_interfaces() {
    let config = config("overlays/node-ban/config.yaml");
    let origin = deploy_dir().join("overlays/node-ban/host-network.yaml");
    let patch = &documents("overlays/node-ban/host-network.yaml")[0];
    let template: PodTemplateSpec = typed(&patch["spec"]["template"], &origin);
    let pod = template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("ClusterFirstWithHostNet"));
    let agent = &pod.containers[0];
    let caps = agent
        .security_context
        .clone()
        .unwrap()
        .capabilities
        .unwrap()
        .add
        .unwrap();
    let base = agent_container()
        .security_context
        .unwrap()
        .capabilities
        .unwrap()
        .add
        .unwrap();
    let mut expected = base.clone();
    expected.push("NET_ADMIN".into());
    assert_eq!(caps, expected, "the base's capabilities and NET_ADMIN");
    let mount = agent
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "bpffs")
        .unwrap();
    assert!(config.node_ban.pin_dir.starts_with(&mount.mount_path));
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "bpffs")
        .unwrap();
    assert_eq!(volume.host_path.unwrap().path, "/sys/fs/bpf");
}
