//! What the inventory keeps of a pod: identity, owner, QoS class, and its containers by
//! runtime id (from `containerStatuses`, `initContainerStatuses`, `ephemeralContainerStatuses`)
//! with what their spec says about them (privileged, mounts).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodSpec, SecurityContext, VolumeMount};

use super::{container_id, image, layout::Qos, mounts};
use crate::event::{ContainerInfo, MountInfo, PodInfo};

/// Which list of the pod spec a container comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerKind {
    Regular,
    Init,
    Ephemeral,
}

/// A container the pod spec declares, and what the status says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodContainer {
    pub name: String,
    pub kind: ContainerKind,
    /// Image as the status reports it (the spec's when the status has none or a bare id).
    pub image: String,
    /// Runtime id, without the `containerd://` scheme; `None` before it starts.
    pub id: Option<String>,
    /// `securityContext.privileged`.
    pub privileged: bool,
    /// Its mounts as the runtime gets them (see [`mounts`]).
    pub mounts: Vec<MountInfo>,
}

impl PodContainer {
    pub fn info(&self, id: &str) -> ContainerInfo {
        let (repository, tag) = image::split(&self.image);
        ContainerInfo {
            id: id.to_owned(),
            name: self.name.clone(),
            image: self.image.clone(),
            image_repository: repository.to_owned(),
            image_tag: tag.to_owned(),
            privileged: Some(self.privileged),
            mounts: Some(self.mounts.clone()),
        }
    }
}

/// A pod as the inventory sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    pub info: PodInfo,
    /// The UID the kubelet names the pod's cgroup after: `metadata.uid`, except for static
    /// pods, whose API object is a mirror with its own uid while the kubelet uses the
    /// manifest hash (annotation `kubernetes.io/config.mirror`).
    pub cgroup_uid: String,
    pub node_name: String,
    pub qos: Option<Qos>,
    pub containers: Vec<PodContainer>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PodError {
    #[error("pod {namespace}/{name} has no metadata.uid")]
    NoUid { namespace: String, name: String },
    #[error(
        "pod {namespace}/{name} has uid {uid:?}, which is not a UUID; its cgroup cannot be located"
    )]
    BadUid {
        namespace: String,
        name: String,
        uid: String,
    },
}

impl PodRecord {
    pub fn from_pod(pod: &Pod) -> Result<PodRecord, PodError> {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let name = meta.name.clone().unwrap_or_default();
        let uid = meta.uid.clone().ok_or_else(|| PodError::NoUid {
            namespace: namespace.clone(),
            name: name.clone(),
        })?;
        let cgroup_uid = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(MIRROR_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| uid.clone());
        // The UID becomes part of a filesystem path: accept only what a UUID may contain.
        for id in [&uid, &cgroup_uid] {
            if id.is_empty()
                || id.len() > 64
                || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
            {
                return Err(PodError::BadUid {
                    namespace,
                    name,
                    uid: id.clone(),
                });
            }
        }
        let labels = meta.labels.clone().unwrap_or_default();
        let owner = top_owner(pod, &labels);
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let mut containers = Vec::new();
        if let Some(spec) = spec {
            let volumes = spec.volumes.as_deref().unwrap_or_default();
            for d in declared(spec) {
                let statuses = status.and_then(|s| match d.kind {
                    ContainerKind::Regular => s.container_statuses.as_deref(),
                    ContainerKind::Init => s.init_container_statuses.as_deref(),
                    ContainerKind::Ephemeral => s.ephemeral_container_statuses.as_deref(),
                });
                let mounts = mounts::container_mounts(&uid, d.name, d.mounts, volumes);
                containers.push(merge(d, mounts, statuses));
            }
        }
        Ok(PodRecord {
            cgroup_uid,
            info: PodInfo {
                namespace,
                name,
                uid,
                labels,
                owner,
            },
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            qos: status
                .and_then(|s| s.qos_class.as_deref())
                .and_then(Qos::from_status),
            containers,
        })
    }

    /// The container with this runtime id.
    pub fn container(&self, id: &str) -> Option<&PodContainer> {
        self.containers.iter().find(|c| c.id.as_deref() == Some(id))
    }

    /// The one declared container that has no runtime id in the status yet, if exactly one:
    /// the container an exec from an unlisted id must belong to (a debug container whose
    /// status the kubelet has not posted yet).
    pub fn only_unstarted(&self) -> Option<&PodContainer> {
        let mut unstarted = self.containers.iter().filter(|c| c.id.is_none());
        let first = unstarted.next()?;
        unstarted.next().is_none().then_some(first)
    }
}

/// Set by the kubelet on the API mirror of a static pod: the static pod's own UID.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A container the spec declares, whichever list it is in.
struct Declared<'a> {
    kind: ContainerKind,
    name: &'a str,
    image: Option<&'a str>,
    /// `securityContext.privileged`.
    privileged: bool,
    mounts: &'a [VolumeMount],
}

impl<'a> Declared<'a> {
    fn new(
        kind: ContainerKind,
        name: &'a str,
        image: &'a Option<String>,
        security: &'a Option<SecurityContext>,
        mounts: &'a Option<Vec<VolumeMount>>,
    ) -> Self {
        Declared {
            kind,
            name,
            image: image.as_deref(),
            privileged: security
                .as_ref()
                .and_then(|s| s.privileged)
                .unwrap_or(false),
            mounts: mounts.as_deref().unwrap_or_default(),
        }
    }
}

/// Every container of the spec: regular, init, then ephemeral.
fn declared(spec: &PodSpec) -> impl Iterator<Item = Declared<'_>> {
    use ContainerKind::*;
    let regular = spec.containers.iter().map(|c| {
        Declared::new(
            Regular,
            &c.name,
            &c.image,
            &c.security_context,
            &c.volume_mounts,
        )
    });
    let init = spec.init_containers.iter().flatten().map(|c| {
        Declared::new(
            Init,
            &c.name,
            &c.image,
            &c.security_context,
            &c.volume_mounts,
        )
    });
    let ephemeral = spec.ephemeral_containers.iter().flatten().map(|c| {
        Declared::new(
            Ephemeral,
            &c.name,
            &c.image,
            &c.security_context,
            &c.volume_mounts,
        )
    });
    regular.chain(init).chain(ephemeral)
}

/// A declared container, with the image and id its status reports (a status without a spec
/// entry is ignored: the spec is the list of what may run).
fn merge(
    declared: Declared<'_>,
    mounts: Vec<MountInfo>,
    statuses: Option<&[ContainerStatus]>,
) -> PodContainer {
    let name = declared.name;
    let status = statuses.into_iter().flatten().find(|s| s.name == name);
    let status_image = status
        .map(|s| s.image.as_str())
        .filter(|i| !image::is_bare_id(i));
    PodContainer {
        name: name.to_owned(),
        kind: declared.kind,
        image: status_image
            .or(declared.image)
            .unwrap_or_default()
            .to_owned(),
        id: status
            .and_then(|s| s.container_id.as_deref())
            .map(container_id::from_status)
            .filter(|id| !id.is_empty())
            .map(str::to_owned),
        privileged: declared.privileged,
        mounts,
    }
}

/// The pod's top controller. A ReplicaSet created by a Deployment is named
/// `<deployment>-<pod-template-hash>` and its pods carry that hash as a label, so the
/// Deployment is named without reading the ReplicaSet (no extra RBAC, no extra watch).
fn top_owner(pod: &Pod, labels: &BTreeMap<String, String>) -> Option<(String, String)> {
    let refs = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let owner = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    if owner.kind == "ReplicaSet"
        && let Some(hash) = labels.get("pod-template-hash")
        && let Some(deployment) = owner
            .name
            .strip_suffix(hash.as_str())
            .and_then(|n| n.strip_suffix('-'))
        && !deployment.is_empty()
    {
        return Some(("Deployment".to_owned(), deployment.to_owned()));
    }
    Some((owner.kind.clone(), owner.name.clone()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const UID: &str = "11111111-2222-3333-4444-555555555555";
    pub const CID: &str = "aaaaaaaaaaaabbbbbbbbbbbbccccccccccccddddddddddddeeeeeeeeeeeeffff";
    pub const EID: &str = "eeeeeeeeeeee0000000000000000000000000000000000000000000000000000";

    /// A pod as the API returns it: one app container running, one ephemeral debug container.
    pub fn pod_json() -> serde_json::Value {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "juice-shop-7d9f8b6c5-x2x4z", "namespace": "shop", "uid": UID,
                "labels": {"app": "juice-shop", "pod-template-hash": "7d9f8b6c5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "juice-shop-7d9f8b6c5", "uid": "r", "controller": true}]
            },
            "spec": {
                "nodeName": "node-a",
                "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}],
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox:1.36"}]
            },
            "status": {
                "qosClass": "Burstable",
                "containerStatuses": [{"name": "app", "image": "docker.io/bkimminich/juice-shop:v17.1.1",
                    "imageID": "x", "containerID": format!("containerd://{CID}"),
                    "ready": true, "restartCount": 0}],
                "initContainerStatuses": [{"name": "init", "image": "sha256:0123", "imageID": "x",
                    "ready": false, "restartCount": 0}],
                "ephemeralContainerStatuses": [{"name": "debugger", "image": "docker.io/library/busybox:1.36",
                    "imageID": "x", "containerID": format!("containerd://{EID}"),
                    "ready": false, "restartCount": 0}]
            }
        })
    }

    pub fn pod() -> Pod {
        serde_json::from_value(pod_json()).unwrap()
    }

    #[test]
    fn extracts_identity_owner_and_containers() {
        let rec = PodRecord::from_pod(&pod()).unwrap();
        assert_eq!(rec.info.name, "juice-shop-7d9f8b6c5-x2x4z");
        assert_eq!(rec.info.namespace, "shop");
        assert_eq!(rec.info.uid, UID);
        assert_eq!(rec.info.labels["app"], "juice-shop");
        assert_eq!(
            rec.info.owner,
            Some(("Deployment".to_owned(), "juice-shop".to_owned()))
        );
        assert_eq!(rec.node_name, "node-a");
        assert_eq!(rec.qos, Some(Qos::Burstable));

        let app = rec.container(CID).unwrap().info(CID);
        assert_eq!(app.name, "app");
        assert_eq!(app.image_repository, "docker.io/bkimminich/juice-shop");
        assert_eq!(app.image_tag, "v17.1.1");
        assert_eq!(app.short_id(), "aaaaaaaaaaaa");

        let debug = rec.container(EID).unwrap();
        assert_eq!(
            (debug.name.as_str(), debug.kind),
            ("debugger", ContainerKind::Ephemeral)
        );
        // A bare image id in the status falls back to the spec's image.
        let init = rec.containers.iter().find(|c| c.name == "init").unwrap();
        assert_eq!(
            (init.image.as_str(), init.id.as_deref()),
            ("busybox:1.36", None)
        );
        assert_eq!(rec.only_unstarted().map(|c| c.name.as_str()), Some("init"));
    }

    #[test]
    fn privileged_and_mounts_come_from_each_containers_spec() {
        let mut json = pod_json();
        json["spec"]["containers"][0]["securityContext"] = serde_json::json!({"privileged": true});
        json["spec"]["containers"][0]["volumeMounts"] =
            serde_json::json!([{"name": "sock", "mountPath": "/run/docker.sock"}]);
        json["spec"]["ephemeralContainers"][0]["securityContext"] =
            serde_json::json!({"privileged": false});
        json["spec"]["volumes"] =
            serde_json::json!([{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}]);
        let rec = PodRecord::from_pod(&serde_json::from_value(json).unwrap()).unwrap();
        let app = rec.container(CID).unwrap().info(CID);
        assert_eq!(app.privileged, Some(true));
        let mounts = app.mounts.as_deref().unwrap();
        assert_eq!(
            (mounts[0].source.as_str(), mounts[0].dest.as_str()),
            ("/var/run/docker.sock", "/run/docker.sock")
        );
        assert_eq!(mounts.last().unwrap().dest, "/etc/hosts");
        let debug = rec.container(EID).unwrap().info(EID);
        assert_eq!(debug.privileged, Some(false));
        let init = rec.containers.iter().find(|c| c.name == "init").unwrap();
        assert!(!init.privileged, "no securityContext: not privileged");
    }

    #[test]
    fn replicaset_without_hash_label_stays_a_replicaset() {
        let mut json = pod_json();
        json["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove("pod-template-hash");
        let rec = PodRecord::from_pod(&serde_json::from_value(json).unwrap()).unwrap();
        assert_eq!(
            rec.info.owner,
            Some(("ReplicaSet".to_owned(), "juice-shop-7d9f8b6c5".to_owned()))
        );
    }

    #[test]
    fn static_pods_are_found_by_their_manifest_hash() {
        let mut json = pod_json();
        json["metadata"]["annotations"] =
            serde_json::json!({"kubernetes.io/config.mirror": "6d4b0c7e1f2a3b4c5d6e7f8091a2b3c4"});
        let rec = PodRecord::from_pod(&serde_json::from_value(json).unwrap()).unwrap();
        assert_eq!(rec.cgroup_uid, "6d4b0c7e1f2a3b4c5d6e7f8091a2b3c4");
        assert_eq!(rec.info.uid, UID);
        assert_eq!(PodRecord::from_pod(&pod()).unwrap().cgroup_uid, UID);
    }

    #[test]
    fn a_uid_that_is_not_a_uuid_is_refused_by_name() {
        let mut json = pod_json();
        json["metadata"]["uid"] = "../../etc".into();
        let err = PodRecord::from_pod(&serde_json::from_value(json).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("shop/juice-shop-7d9f8b6c5-x2x4z"),
            "{err}"
        );
    }
}
