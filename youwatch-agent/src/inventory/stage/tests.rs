//! The stage's logic on plain directories and a fake watched set (no root, no BPF); the
//! real-kernel tests are in `tests/inventory_*.rs`.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use super::*;
use crate::inventory::pod::tests::{CID, EID, UID, pod_json};

/// Watched and enforced ids.
#[derive(Clone, Default)]
struct FakeWatch(Arc<Mutex<(HashSet<u64>, HashSet<u64>)>>);

impl FakeWatch {
    fn ids(&self) -> HashSet<u64> {
        self.0.lock().unwrap().0.clone()
    }
    fn enforced(&self) -> HashSet<u64> {
        self.0.lock().unwrap().1.clone()
    }
}

impl CgroupWatch for FakeWatch {
    fn watch(&self, id: u64) -> Result<(), String> {
        self.0.lock().unwrap().0.insert(id);
        Ok(())
    }
    fn unwatch(&self, id: u64) -> Result<(), String> {
        let mut sets = self.0.lock().unwrap();
        sets.0.remove(&id);
        sets.1.remove(&id);
        Ok(())
    }
    fn set_enforced(&self, id: u64, on: bool) -> Result<(), String> {
        let mut sets = self.0.lock().unwrap();
        if on {
            sets.1.insert(id);
        } else {
            sets.1.remove(&id);
        }
        Ok(())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    watch: FakeWatch,
    state: State<FakeWatch>,
}

impl Fixture {
    fn new(wait_ms: u64) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = InventoryConfig {
            cgroup: crate::inventory::CgroupConfig {
                kubepods: dir.path().join("kubepods.slice").display().to_string(),
                ..Default::default()
            },
            attribution_wait_ms: wait_ms,
            ..Default::default()
        };
        std::fs::create_dir_all(dir.path().join("kubepods.slice")).unwrap();
        let watch = FakeWatch::default();
        let state = State::new(
            &config,
            Some(("node-a", Some("youwatch"))),
            watch.clone(),
            dir.path().to_path_buf(),
            InventoryMetrics::default(),
        )
        .unwrap();
        Fixture { dir, watch, state }
    }

    /// The burstable pod directory of the test pod (systemd driver).
    fn pod_dir(&self) -> PathBuf {
        self.dir.path().join(format!(
            "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
            UID.replace('-', "_")
        ))
    }

    /// A `kubectl debug` shell: the debug container is declared and its cgroup exists, but
    /// its status is not posted yet. The exec must be held.
    fn debug_shell_before_its_status(&mut self, change: impl FnOnce(&mut serde_json::Value)) {
        let pod_id = self.mkdir(&self.pod_dir());
        let debug_id = self.mkdir(&self.pod_dir().join(format!("cri-containerd-{EID}.scope")));
        let mut json = pod_json();
        json["status"]
            .as_object_mut()
            .unwrap()
            .remove("ephemeralContainerStatuses");
        change(&mut json);
        self.state.on_pod_update(PodUpdate::Apply(record(json)));
        assert!(
            self.state.on_exec(exec_in(debug_id, pod_id)).is_empty(),
            "held"
        );
    }

    fn mkdir(&self, path: &Path) -> u64 {
        std::fs::create_dir_all(path).unwrap();
        std::fs::metadata(path).unwrap().ino()
    }
}

fn record(json: serde_json::Value) -> PodRecord {
    PodRecord::from_pod(&serde_json::from_value(json).unwrap()).unwrap()
}

fn exec_in(cgroup_id: u64, watched: u64) -> ExecEvent {
    ExecEvent {
        time: SystemTime::now(),
        ktime_ns: 0,
        pid: std::process::id(),
        tgid: std::process::id(),
        ppid: std::os::unix::process::parent_id(),
        uid: 0,
        gid: 0,
        tty: 0,
        cgroup_id,
        watched_cgroup_id: watched,
        comm: "sh".into(),
        parent_comm: "containerd-shim".into(),
        filename: "/bin/sh".into(),
        argv: vec!["sh".into(), "-c".into(), "id".into()],
        args_truncated: false,
        filename_truncated: false,
        ..ExecEvent::default()
    }
}

/// Enforcement as `--enforce` sets it up, the agent being pod youwatch/agent-1.
fn enforcing() -> crate::inventory::EnforceSelection {
    crate::inventory::EnforceSelection::new(
        &crate::enforce::EnforceConfig::default(),
        true,
        Some(("youwatch".into(), "agent-1".into())),
    )
    .unwrap()
}

fn opted_in(mut json: serde_json::Value, on: bool) -> serde_json::Value {
    let value = if on { "true" } else { "false" };
    json["metadata"]["labels"]["youwatch.dev/enforce"] = value.into();
    json
}

#[test]
fn a_pod_is_enforced_while_it_opts_in() {
    let mut f = Fixture::new(0);
    f.state.set_enforce(Some(enforcing()));
    let pod_id = f.mkdir(&f.pod_dir());
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert_eq!(f.watch.ids(), HashSet::from([pod_id]));
    assert!(f.watch.enforced().is_empty(), "no label, not enforced");
    f.state
        .on_pod_update(PodUpdate::Apply(record(opted_in(pod_json(), true))));
    assert_eq!(f.watch.enforced(), HashSet::from([pod_id]));
    f.state
        .on_pod_update(PodUpdate::Apply(record(opted_in(pod_json(), false))));
    assert!(f.watch.enforced().is_empty(), "opted out");
    f.state
        .on_pod_update(PodUpdate::Apply(record(opted_in(pod_json(), true))));
    f.state.on_pod_update(PodUpdate::Delete(UID.into()));
    assert!(f.watch.ids().is_empty() && f.watch.enforced().is_empty());

    // A pod created with the label is enforced from the moment its cgroup is watched.
    f.state
        .on_pod_update(PodUpdate::Apply(record(opted_in(pod_json(), true))));
    assert_eq!(f.watch.enforced(), HashSet::from([pod_id]));
}

#[test]
fn the_agents_own_pod_is_never_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let config = InventoryConfig {
        cgroup: crate::inventory::CgroupConfig {
            kubepods: dir.path().join("kubepods.slice").display().to_string(),
            ..Default::default()
        },
        pod_name_pattern: String::new(),
        namespaces: crate::inventory::NamespaceConfig {
            exclude_own: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let watch = FakeWatch::default();
    let mut state = State::new(
        &config,
        Some(("node-a", Some("youwatch"))),
        watch.clone(),
        dir.path().to_path_buf(),
        InventoryMetrics::default(),
    )
    .unwrap();
    state.set_enforce(Some(enforcing()));
    let pod_dir = dir.path().join(format!(
        "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
        UID.replace('-', "_")
    ));
    std::fs::create_dir_all(&pod_dir).unwrap();
    let mut own = opted_in(pod_json(), true);
    own["metadata"]["namespace"] = "youwatch".into();
    own["metadata"]["name"] = "agent-1".into();
    state.on_pod_update(PodUpdate::Apply(record(own)));
    assert_eq!(watch.ids().len(), 1, "guarded, as configured");
    assert!(watch.enforced().is_empty(), "but never enforced");
}

#[test]
fn guarded_pod_is_watched_then_unwatched() {
    let mut f = Fixture::new(0);
    let pod_id = f.mkdir(&f.pod_dir());
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert_eq!(f.watch.ids(), HashSet::from([pod_id]));
    f.state.on_pod_update(PodUpdate::Delete(UID.into()));
    assert!(f.watch.ids().is_empty());
}

#[test]
fn pods_elsewhere_or_unselected_are_ignored() {
    let mut f = Fixture::new(0);
    f.mkdir(&f.pod_dir());
    let mut other_node = pod_json();
    other_node["spec"]["nodeName"] = "node-b".into();
    f.state.on_pod_update(PodUpdate::Apply(record(other_node)));
    let mut system = pod_json();
    system["metadata"]["namespace"] = "kube-system".into();
    f.state.on_pod_update(PodUpdate::Apply(record(system)));
    let mut own = pod_json();
    own["metadata"]["namespace"] = "youwatch".into();
    f.state.on_pod_update(PodUpdate::Apply(record(own)));
    assert!(f.watch.ids().is_empty());
    // Renamed out of the selection: unwatched.
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert_eq!(f.watch.ids().len(), 1);
    let mut renamed = pod_json();
    renamed["metadata"]["name"] = "nginx".into();
    f.state.on_pod_update(PodUpdate::Apply(record(renamed)));
    assert!(f.watch.ids().is_empty());
}

#[test]
fn pod_before_its_cgroup_is_watched_when_it_appears() {
    let mut f = Fixture::new(0);
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert!(f.watch.ids().is_empty());
    let pod_id = f.mkdir(&f.pod_dir());
    f.state.resolve_pending();
    assert_eq!(f.watch.ids(), HashSet::from([pod_id]));
}

#[test]
fn every_qos_class_resolves_when_the_status_has_none() {
    for (qos, dir) in [
        (
            "Guaranteed",
            format!("kubepods.slice/kubepods-pod{}.slice", UID.replace('-', "_")),
        ),
        (
            "BestEffort",
            format!(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
                UID.replace('-', "_")
            ),
        ),
    ] {
        for status in [Some(qos), None] {
            let mut f = Fixture::new(0);
            let id = f.mkdir(&f.dir.path().join(&dir));
            let mut json = pod_json();
            match status {
                Some(q) => json["status"]["qosClass"] = q.into(),
                None => {
                    json["status"].as_object_mut().unwrap().remove("qosClass");
                }
            }
            f.state.on_pod_update(PodUpdate::Apply(record(json)));
            assert_eq!(f.watch.ids(), HashSet::from([id]), "{qos} {status:?}");
        }
    }
}

#[test]
fn relist_drops_pods_deleted_while_disconnected() {
    let mut f = Fixture::new(0);
    f.mkdir(&f.pod_dir());
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert_eq!(f.watch.ids().len(), 1);
    f.state
        .on_pod_update(PodUpdate::Relist(vec![record(pod_json())]));
    assert_eq!(f.watch.ids().len(), 1, "a listed pod stays watched");
    f.state.on_pod_update(PodUpdate::Relist(Vec::new()));
    assert!(f.watch.ids().is_empty());
}

#[test]
fn vanished_cgroup_is_unwatched_and_found_again() {
    let mut f = Fixture::new(0);
    f.mkdir(&f.pod_dir());
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    std::fs::remove_dir(f.pod_dir()).unwrap();
    f.state.forget_vanished_cgroups();
    assert!(f.watch.ids().is_empty());
    let second = f.mkdir(&f.pod_dir());
    f.state.resolve_pending();
    // (cgroup2 never reuses an id; a plain filesystem may reuse the inode, which is fine here.)
    assert_eq!(f.watch.ids(), HashSet::from([second]));
}

#[test]
fn exec_names_pod_container_and_image() {
    let mut f = Fixture::new(0);
    let pod_id = f.mkdir(&f.pod_dir());
    let app_id = f.mkdir(&f.pod_dir().join(format!("cri-containerd-{CID}.scope")));
    f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    let out = f.state.on_exec(exec_in(app_id, pod_id));
    let exec = &out[0];
    let pod = exec.pod.as_ref().unwrap();
    assert_eq!(
        (pod.namespace.as_str(), pod.name.as_str()),
        ("shop", "juice-shop-7d9f8b6c5-x2x4z")
    );
    let c = exec.container.as_ref().unwrap();
    assert_eq!(
        (
            c.name.as_str(),
            c.image_repository.as_str(),
            c.image_tag.as_str()
        ),
        ("app", "docker.io/bkimminich/juice-shop", "v17.1.1")
    );
    assert_eq!(exec.process.cmdline(), "sh -c id");
    assert!(!exec.ancestors.is_empty());

    // In flight when the pod goes: still attributed.
    f.state.on_pod_update(PodUpdate::Delete(UID.into()));
    let late = f.state.on_exec(exec_in(app_id, pod_id));
    assert_eq!(late[0].container.as_ref().unwrap().name, "app");
}

#[test]
fn unlisted_container_waits_for_the_status() {
    let mut f = Fixture::new(60_000);
    f.debug_shell_before_its_status(|_| {});
    let out = f.state.on_pod_update(PodUpdate::Apply(record(pod_json())));
    assert_eq!(out.len(), 1);
    let c = out[0].container.as_ref().unwrap();
    assert_eq!((c.name.as_str(), c.id.as_str()), ("debugger", EID));
}

#[test]
fn unlisted_container_after_the_wait_gets_the_best_attribution() {
    let mut f = Fixture::new(60_000);
    f.debug_shell_before_its_status(|json| {
        json["spec"]
            .as_object_mut()
            .unwrap()
            .remove("initContainers");
    });
    assert!(f.state.release_expired(Instant::now()).is_empty());
    let out = f
        .state
        .release_expired(Instant::now() + Duration::from_secs(61));
    // The only declared container without a status is the debugger.
    assert_eq!(out[0].container.as_ref().unwrap().name, "debugger");
    assert_eq!(out[0].pod.as_ref().unwrap().uid, UID);
}
