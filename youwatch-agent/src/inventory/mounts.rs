//! A container's mounts as the kubelet hands them to the runtime (the CRI `mounts` that
//! Falco's container plugin reads), derived from the pod spec: `container.mount*` fields.
//!
//! The host side of a volume is where the kubelet keeps it: the path itself for `hostPath`,
//! `<kubelet root>/pods/<uid>/volumes/<plugin>/<name>` for the volumes the kubelet builds
//! (emptyDir, configMap, secret, projected, downwardAPI, inline CSI), and a per-mount bind
//! under `volume-subpaths` for a `subPath`. Persistent volumes' host paths depend on the
//! volume, which the pod spec does not name: their source is left empty. The kubelet also adds
//! `/etc/hosts` (kept here) and the termination-message file (left out: its host name has a
//! random part).

use k8s_openapi::api::core::v1::{Volume, VolumeMount};

use crate::event::MountInfo;

/// The kubelet's `--root-dir` default. Nodes with another root (k0s, some managed
/// distributions) see other sources for kubelet-built volumes; `hostPath` sources hold.
pub const KUBELET_ROOT: &str = "/var/lib/kubelet";

/// Mounts kept per container: the pod spec is untrusted input.
pub const MAX_MOUNTS: usize = 64;

/// The runtime mounts of container `name`, whose spec lists `mounts`, in pod `uid` with
/// `volumes`.
pub fn container_mounts(
    uid: &str,
    name: &str,
    mounts: &[VolumeMount],
    volumes: &[Volume],
) -> Vec<MountInfo> {
    let pod_dir = format!("{KUBELET_ROOT}/pods/{uid}");
    let mut out: Vec<MountInfo> = mounts
        .iter()
        .enumerate()
        .take(MAX_MOUNTS)
        .map(|(index, m)| {
            let volume = volumes.iter().find(|v| v.name == m.name);
            let has_sub_path = [&m.sub_path, &m.sub_path_expr]
                .into_iter()
                .any(|p| p.as_deref().is_some_and(|p| !p.is_empty()));
            let source = if has_sub_path {
                // pkg/volume/util/subpath: the kubelet bind-mounts the sub-path here first.
                format!("{pod_dir}/volume-subpaths/{}/{name}/{index}", m.name)
            } else {
                volume
                    .and_then(|v| volume_source(&pod_dir, v))
                    .unwrap_or_default()
            };
            MountInfo {
                source,
                dest: m.mount_path.clone(),
                mode: String::new(),
                rdwr: !m.read_only.unwrap_or(false),
                propagation: propagation(m.mount_propagation.as_deref()).to_owned(),
            }
        })
        .collect();
    if out.len() < MAX_MOUNTS && !out.iter().any(|m| m.dest == "/etc/hosts") {
        out.push(MountInfo {
            source: format!("{pod_dir}/etc-hosts"),
            dest: "/etc/hosts".to_owned(),
            mode: String::new(),
            rdwr: true,
            propagation: propagation(None).to_owned(),
        });
    }
    out
}

/// The host path of a whole volume, where the pod spec tells it.
fn volume_source(pod_dir: &str, v: &Volume) -> Option<String> {
    if let Some(host) = &v.host_path {
        return Some(host.path.clone());
    }
    let plugin = if v.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if v.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if v.secret.is_some() {
        "kubernetes.io~secret"
    } else if v.projected.is_some() {
        "kubernetes.io~projected"
    } else if v.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if v.csi.is_some() {
        return Some(format!(
            "{pod_dir}/volumes/kubernetes.io~csi/{}/mount",
            v.name
        ));
    } else {
        return None;
    };
    Some(format!("{pod_dir}/volumes/{plugin}/{}", v.name))
}

/// CRI propagation names as the container plugin prints them.
fn propagation(spec: Option<&str>) -> &'static str {
    match spec {
        Some("HostToContainer") => "rslave",
        Some("Bidirectional") => "rshared",
        _ => "private",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts(json: serde_json::Value) -> Vec<MountInfo> {
        let spec: k8s_openapi::api::core::v1::PodSpec = serde_json::from_value(json).unwrap();
        let c = &spec.containers[0];
        container_mounts(
            "u1",
            &c.name,
            c.volume_mounts.as_deref().unwrap_or_default(),
            spec.volumes.as_deref().unwrap_or_default(),
        )
    }

    #[test]
    fn sources_as_the_kubelet_gives_them_to_the_runtime() {
        let got = mounts(serde_json::json!({
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "sock", "mountPath": "/var/run/docker.sock"},
                {"name": "cache", "mountPath": "/cache", "readOnly": true},
                {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                 "readOnly": true},
                {"name": "host", "mountPath": "/host/etc", "subPath": "etc",
                 "mountPropagation": "HostToContainer"},
                {"name": "data", "mountPath": "/data", "mountPropagation": "Bidirectional"}
            ]}],
            "volumes": [
                {"name": "sock", "hostPath": {"path": "/var/run/docker.sock", "type": "Socket"}},
                {"name": "cache", "emptyDir": {}},
                {"name": "token", "projected": {"sources": []}},
                {"name": "host", "hostPath": {"path": "/"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
            ]
        }));
        let rendered: Vec<String> = got
            .iter()
            .map(|m| {
                let mut s = String::new();
                m.render(&mut s);
                s
            })
            .collect();
        assert_eq!(
            rendered,
            [
                "/var/run/docker.sock:/var/run/docker.sock::true:private",
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache:/cache::false:private",
                "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~projected/token:/var/run/secrets/kubernetes.io/serviceaccount::false:private",
                "/var/lib/kubelet/pods/u1/volume-subpaths/host/app/3:/host/etc::true:rslave",
                ":/data::true:rshared",
                "/var/lib/kubelet/pods/u1/etc-hosts:/etc/hosts::true:private",
            ]
        );
    }

    #[test]
    fn own_etc_hosts_mount_replaces_the_kubelets() {
        let got = mounts(serde_json::json!({
            "containers": [{"name": "app", "volumeMounts": [
                {"name": "h", "mountPath": "/etc/hosts"}
            ]}],
            "volumes": [{"name": "h", "hostPath": {"path": "/etc/hosts"}}]
        }));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].source, "/etc/hosts");
    }

    #[test]
    fn mounts_are_bounded() {
        let many: Vec<_> = (0..200)
            .map(|i| serde_json::json!({"name": "v", "mountPath": format!("/m{i}")}))
            .collect();
        let got = mounts(serde_json::json!({
            "containers": [{"name": "app", "volumeMounts": many}],
            "volumes": [{"name": "v", "emptyDir": {}}]
        }));
        assert_eq!(got.len(), MAX_MOUNTS);
    }
}
