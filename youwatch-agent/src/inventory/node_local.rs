//! Node-local mode: no cluster, so containers are discovered from cgroupfs (docker,
//! containerd, CRI-O and podman scopes, and cgroupfs-driver id directories) and selected by
//! `inventory.node_local` (cgroup path globs, container ids).

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::{
    NodeLocalConfig,
    container_id::{self, Runtime},
};

/// Directory levels below the cgroup mount that are searched.
const MAX_DEPTH: usize = 8;
/// Directories visited per scan (a busy host has a few thousand cgroups).
const MAX_DIRS: usize = 50_000;

/// A container cgroup found on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalContainer {
    pub path: PathBuf,
    pub runtime: Runtime,
    pub id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeLocalError {
    #[error("inventory.node_local.cgroup_globs: {pattern:?} is not a valid glob: {message}")]
    Glob { pattern: String, message: String },
    #[error(
        "inventory.node_local.container_ids: {id:?} is not a container id \
         (12 to 64 lowercase hex characters, as `docker ps --no-trunc` shows)"
    )]
    Id { id: String },
}

/// Every container cgroup below `mount`. Container cgroups are not descended into (what is
/// below belongs to the container).
pub fn discover(mount: &Path) -> Vec<LocalContainer> {
    let mut found = Vec::new();
    let mut queue = vec![(mount.to_path_buf(), 0usize)];
    let mut visited = 0usize;
    while let Some((dir, depth)) = queue.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            visited += 1;
            if visited > MAX_DIRS {
                tracing::warn!(
                    "more than {MAX_DIRS} cgroups under {}: container discovery stopped early",
                    mount.display()
                );
                return found;
            }
            let path = entry.path();
            let name = entry.file_name();
            match name.to_str().and_then(container_id::from_cgroup_name) {
                Some((runtime, id)) => found.push(LocalContainer {
                    id: id.to_owned(),
                    runtime,
                    path,
                }),
                None if depth + 1 < MAX_DEPTH => queue.push((path, depth + 1)),
                None => {}
            }
        }
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// Which discovered containers to watch.
#[derive(Debug)]
pub struct LocalSelector {
    mount: PathBuf,
    absolute: GlobSet,
    relative: GlobSet,
    ids: Vec<String>,
}

impl LocalSelector {
    pub fn new(config: &NodeLocalConfig, mount: &Path) -> Result<LocalSelector, NodeLocalError> {
        let mut absolute = GlobSetBuilder::new();
        let mut relative = GlobSetBuilder::new();
        for pattern in &config.cgroup_globs {
            let glob = Glob::new(pattern).map_err(|e| NodeLocalError::Glob {
                pattern: pattern.clone(),
                message: e.kind().to_string(),
            })?;
            if pattern.starts_with('/') {
                absolute.add(glob);
            } else {
                relative.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| NodeLocalError::Glob {
                pattern: config.cgroup_globs.join(", "),
                message: e.to_string(),
            })
        };
        for id in &config.container_ids {
            if !container_id::is_container_id(id) {
                return Err(NodeLocalError::Id { id: id.clone() });
            }
        }
        Ok(LocalSelector {
            mount: mount.to_path_buf(),
            absolute: build(absolute)?,
            relative: build(relative)?,
            ids: config.container_ids.clone(),
        })
    }

    /// Nothing can match: only `--watch-cgroup` cgroups are watched.
    pub fn is_empty(&self) -> bool {
        self.absolute.is_empty() && self.relative.is_empty() && self.ids.is_empty()
    }

    pub fn matches(&self, container: &LocalContainer) -> bool {
        if self
            .ids
            .iter()
            .any(|id| container.id.starts_with(id.as_str()))
        {
            return true;
        }
        if self.absolute.is_match(&container.path) {
            return true;
        }
        container
            .path
            .strip_prefix(&self.mount)
            .is_ok_and(|rel| self.relative.is_match(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const ID2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    fn tree() -> (tempfile::TempDir, Vec<LocalContainer>) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path();
        for p in [
            format!("system.slice/docker-{ID1}.scope/inner"),
            format!("machine.slice/libpod-{ID2}.scope"),
            format!("machine.slice/libpod-conmon-{ID2}.scope"),
            "user.slice/user-0.slice".to_owned(),
        ] {
            std::fs::create_dir_all(m.join(p)).unwrap();
        }
        let found = discover(m);
        (dir, found)
    }

    #[test]
    fn discovers_container_scopes_only() {
        let (dir, found) = tree();
        assert_eq!(
            found,
            vec![
                LocalContainer {
                    path: dir.path().join(format!("machine.slice/libpod-{ID2}.scope")),
                    runtime: Runtime::Podman,
                    id: ID2.into()
                },
                LocalContainer {
                    path: dir.path().join(format!("system.slice/docker-{ID1}.scope")),
                    runtime: Runtime::Docker,
                    id: ID1.into()
                },
            ]
        );
    }

    #[test]
    fn selects_by_glob_or_id_prefix() {
        let (dir, found) = tree();
        let by_glob = LocalSelector::new(
            &NodeLocalConfig {
                cgroup_globs: vec!["system.slice/docker-*.scope".into()],
                ..Default::default()
            },
            dir.path(),
        )
        .unwrap();
        let picked: Vec<_> = found.iter().filter(|c| by_glob.matches(c)).collect();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].id, ID1);

        let by_id = LocalSelector::new(
            &NodeLocalConfig {
                container_ids: vec![ID2[..12].into()],
                ..Default::default()
            },
            dir.path(),
        )
        .unwrap();
        assert!(by_id.matches(&found[0]) && !by_id.matches(&found[1]));
        assert!(
            LocalSelector::new(&NodeLocalConfig::default(), dir.path())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn bad_selection_is_named() {
        let err = LocalSelector::new(
            &NodeLocalConfig {
                container_ids: vec!["abc".into()],
                ..Default::default()
            },
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"abc\""), "{err}");
        let err = LocalSelector::new(
            &NodeLocalConfig {
                cgroup_globs: vec!["a[".into()],
                ..Default::default()
            },
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("a["), "{err}");
    }
}
