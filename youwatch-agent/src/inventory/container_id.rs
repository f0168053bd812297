//! Container ids from cgroup directory names, for every runtime layout we know:
//! containerd (`cri-containerd-<id>.scope`, `nerdctl-<id>.scope`), CRI-O (`crio-<id>.scope`, `crio-<id>`), docker
//! (`docker-<id>.scope`), podman (`libpod-<id>.scope`) and the cgroupfs driver's plain `<id>`.
//! Also the `scheme://<id>` form the Kubernetes API uses in container statuses.

use std::path::Path;

/// The container runtime a cgroup name points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A bare id directory (cgroupfs driver): the runtime is not named.
    Unknown,
}

/// Prefixes of systemd-driver scopes, and the runtime each names. Monitor scopes
/// (`crio-conmon-<id>`, `libpod-conmon-<id>`) hold the runtime's helper, not the container,
/// and do not parse (the id check fails on `conmon-`).
const PREFIXES: [(&str, Runtime); 5] = [
    ("cri-containerd-", Runtime::Containerd),
    // containerd without Kubernetes (nerdctl, systemd driver).
    ("nerdctl-", Runtime::Containerd),
    ("crio-", Runtime::CriO),
    ("docker-", Runtime::Docker),
    ("libpod-", Runtime::Podman),
];

/// `(runtime, id)` when `name` (one path component) is a container's cgroup.
pub fn from_cgroup_name(name: &str) -> Option<(Runtime, &str)> {
    let stem = name.strip_suffix(".scope").unwrap_or(name);
    for (prefix, runtime) in PREFIXES {
        if let Some(id) = stem.strip_prefix(prefix) {
            return is_container_id(id).then_some((runtime, id));
        }
    }
    // cgroupfs driver: the directory is the bare 64-hex id.
    (name.len() == 64 && is_container_id(name)).then_some((Runtime::Unknown, name))
}

/// The first path component at or below `from` (inclusive) that names a container, walking
/// down `path` (which must start with `from`).
pub fn from_cgroup_path<'a>(path: &'a Path, from: &Path) -> Option<(Runtime, &'a str)> {
    if !path.starts_with(from) {
        return None;
    }
    // Start at `from`'s own name: node-local mode watches container scopes directly.
    let skip = from.components().count().saturating_sub(1);
    path.components()
        .skip(skip)
        .filter_map(|c| c.as_os_str().to_str())
        .find_map(from_cgroup_name)
}

/// The id in a Kubernetes status `containerID` (`containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>`); a value without a scheme is taken as the id.
pub fn from_status(container_id: &str) -> &str {
    container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id)
}

/// 12 to 64 lowercase hex characters (ids are 64; prefixes of 12+ appear in configs).
pub fn is_container_id(s: &str) -> bool {
    (12..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_runtime_layout_parses() {
        let cases = [
            (format!("cri-containerd-{ID}.scope"), Runtime::Containerd),
            (format!("nerdctl-{ID}.scope"), Runtime::Containerd),
            (format!("crio-{ID}.scope"), Runtime::CriO),
            (format!("crio-{ID}"), Runtime::CriO),
            (format!("docker-{ID}.scope"), Runtime::Docker),
            (format!("libpod-{ID}.scope"), Runtime::Podman),
            (ID.to_owned(), Runtime::Unknown),
        ];
        for (name, runtime) in cases {
            assert_eq!(from_cgroup_name(&name), Some((runtime, ID)), "{name}");
        }
    }

    #[test]
    fn non_containers_do_not_parse() {
        for name in [
            format!("crio-conmon-{ID}.scope"),
            format!("libpod-conmon-{ID}.scope"),
            "kubepods-burstable-pod1234.slice".to_owned(),
            "docker-xyz.scope".to_owned(),
            "init.scope".to_owned(),
            ID[..40].to_owned(),
            ID.to_uppercase(),
        ] {
            assert_eq!(from_cgroup_name(&name), None, "{name}");
        }
    }

    #[test]
    fn finds_the_container_below_a_pod() {
        let pod = Path::new("/sys/fs/cgroup/kubepods.slice/kubepods-pod1.slice");
        let task = pod.join(format!("cri-containerd-{ID}.scope/sub"));
        assert_eq!(
            from_cgroup_path(&task, pod),
            Some((Runtime::Containerd, ID))
        );
        assert_eq!(from_cgroup_path(pod, pod), None);
        let container = pod.join(format!("docker-{ID}.scope"));
        assert_eq!(
            from_cgroup_path(&container.join("x"), &container),
            Some((Runtime::Docker, ID))
        );
    }

    #[test]
    fn status_ids_lose_their_scheme() {
        assert_eq!(from_status(&format!("containerd://{ID}")), ID);
        assert_eq!(from_status(&format!("cri-o://{ID}")), ID);
        assert_eq!(from_status(ID), ID);
    }
}
