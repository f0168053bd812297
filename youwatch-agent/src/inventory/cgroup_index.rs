//! cgroup id → cgroup path, for the cgroups below a watched one. The kernel reports the
//! exec'ing task's cgroup id; its path names the container (`cri-containerd-<id>.scope`...).
//!
//! A miss scans the watched directory (bounded in depth and entries) and remembers every id it
//! meets, so one scan serves all the containers of a pod. Paths come from the directory tree,
//! not `/proc/<pid>/cgroup`, which is relative to the reader's cgroup namespace and gone with
//! a short-lived process.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::fifo::FifoMap;

/// Levels below the watched cgroup that are scanned (pod → container → nested cgroups).
const SCAN_DEPTH: usize = 3;
/// Directories looked at per scan.
const SCAN_ENTRIES: usize = 1024;

pub struct CgroupIndex {
    paths: FifoMap<u64, PathBuf>,
}

impl CgroupIndex {
    pub fn new(capacity: usize) -> Self {
        Self {
            paths: FifoMap::new(capacity),
        }
    }

    /// The path of cgroup `id`, which must be `under` or below it.
    pub fn resolve(&mut self, id: u64, under: &Path) -> Option<PathBuf> {
        if let Some(path) = self.paths.get(&id)
            && path.starts_with(under)
        {
            return Some(path.clone());
        }
        self.scan(under);
        self.paths.get(&id).cloned()
    }

    /// Records `path`'s id (the watched cgroups themselves are known without a scan).
    pub fn remember(&mut self, id: u64, path: PathBuf) {
        self.paths.insert(id, path);
    }

    fn scan(&mut self, under: &Path) {
        let mut queue = vec![(under.to_path_buf(), 0usize)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = queue.pop() {
            if let Ok(meta) = std::fs::metadata(&dir) {
                self.paths.insert(meta.ino(), dir.clone());
            }
            if depth == SCAN_DEPTH {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if seen >= SCAN_ENTRIES {
                    return;
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    seen += 1;
                    queue.push((entry.path(), depth + 1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn resolves_containers_below_a_pod() {
        let dir = tempfile::tempdir().unwrap();
        let pod = dir.path().join("kubepods-pod1.slice");
        let app = pod.join("cri-containerd-aaa.scope");
        let nested = app.join("inner");
        std::fs::create_dir_all(&nested).unwrap();
        let mut index = CgroupIndex::new(64);
        assert_eq!(index.resolve(ino(&app), &pod), Some(app.clone()));
        assert_eq!(index.resolve(ino(&nested), &pod), Some(nested));
        // A container created later is found by the next scan.
        let debug = pod.join("cri-containerd-bbb.scope");
        std::fs::create_dir(&debug).unwrap();
        assert_eq!(index.resolve(ino(&debug), &pod), Some(debug));
        // Not below the watched cgroup: not reported.
        assert_eq!(index.resolve(ino(dir.path()), &pod), None);
    }
}
