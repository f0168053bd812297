//! Where a followed path's rotations live: the directories involved and the files in them
//! named like its rotations.

use std::{
    fs::Metadata,
    path::{Path, PathBuf},
    time::SystemTime,
};

/// Compressed rotations are never read (logrotate's `compress`).
const COMPRESSED: [&[u8]; 6] = [b".gz", b".zst", b".xz", b".bz2", b".lz4", b".zip"];

/// The directories where the path's changes show: its own, and its target's if a symlink.
pub(super) fn dirs(path: &Path) -> Vec<PathBuf> {
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut dirs = vec![parent(path)];
    if let Ok(target) = std::fs::canonicalize(path) {
        let d = parent(&target);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    dirs
}

/// A regular file found next to the path.
pub(super) struct Sibling {
    pub path: PathBuf,
    pub meta: Metadata,
}

impl Sibling {
    pub fn modified(&self) -> Option<SystemTime> {
        self.meta.modified().ok()
    }

    /// Empty and created after the path's file (`path_born`; when either birth time is
    /// unknown, empty is enough): not a rotation but the next file being prepared, as a
    /// symlink swap creates its new target before pointing the path at it. It is found as
    /// the path's file once it is; taken for a rotated file never read, it would be read
    /// before the path's file and followed in its place, and the path's file never read.
    pub fn is_next_target(&self, path_born: Option<SystemTime>) -> bool {
        self.meta.len() == 0
            && match (path_born, self.meta.created().ok()) {
                (Some(path), Some(own)) => own > path,
                _ => true,
            }
    }
}

/// Every regular file in the directories involved (for finding a file by its inode, whatever
/// it was renamed to).
pub(super) fn all_files(path: &Path) -> Vec<Sibling> {
    files(path, |_| true)
}

/// Regular files next to the path named like its rotations (`audit.log.1`,
/// `audit.log-20250101`), compressed ones excepted, oldest modification first.
pub(super) fn rotated(path: &Path) -> Vec<Sibling> {
    let Some(base) = path.file_name().map(|n| n.as_encoded_bytes().to_vec()) else {
        return Vec::new();
    };
    let mut found = files(path, |name| {
        name.len() > base.len() + 1
            && name.starts_with(&base)
            && matches!(name[base.len()], b'.' | b'-' | b'_')
            && !COMPRESSED.iter().any(|ext| name.ends_with(ext))
    });
    found.sort_by_key(Sibling::modified);
    found
}

fn files(path: &Path, wanted: impl Fn(&[u8]) -> bool) -> Vec<Sibling> {
    let mut found = Vec::new();
    for dir in dirs(path) {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if !wanted(entry.file_name().as_encoded_bytes()) {
                continue;
            }
            // Not following symlinks: the path itself may be one, and is not a rotation.
            if let Ok(meta) = entry.metadata()
                && meta.is_file()
            {
                found.push(Sibling {
                    path: entry.path(),
                    meta,
                });
            }
        }
    }
    found
}
