//! cgroup v2 filesystem helpers: find the unified hierarchy, and map directories to the
//! 64-bit ids the kernel reports (`bpf_get_current_cgroup_id`).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Filesystem magic of cgroup2 (`CGROUP2_SUPER_MAGIC`).
const CGROUP2_MAGIC: i64 = 0x6367_7270;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cgroup path {path} does not exist: check the path (ls /sys/fs/cgroup), or create it first"
    )]
    Missing { path: PathBuf },
    #[error(
        "{path} is not on a cgroup v2 filesystem: the exec sensor matches cgroup v2 ids; use the unified hierarchy ({hint})"
    )]
    NotCgroup2 { path: PathBuf, hint: String },
    #[error("reading cgroup path {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no cgroup v2 hierarchy is mounted (looked in /proc/self/mountinfo): mount one with `mount -t cgroup2 none /sys/fs/cgroup`"
    )]
    NoUnified,
}

/// The cgroup v2 id of a cgroup directory: its inode number on cgroup2 (kernfs node id).
pub fn cgroup_id(path: &Path) -> Result<u64, CgroupError> {
    let meta = std::fs::metadata(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => CgroupError::Missing {
            path: path.to_owned(),
        },
        _ => CgroupError::Io {
            path: path.to_owned(),
            source,
        },
    })?;
    if !is_cgroup2(path)? {
        let hint = unified_mount()
            .map(|m| format!("mounted at {}", m.display()))
            .unwrap_or_else(|_| "none is mounted".to_owned());
        return Err(CgroupError::NotCgroup2 {
            path: path.to_owned(),
            hint,
        });
    }
    Ok(meta.ino())
}

fn is_cgroup2(path: &Path) -> Result<bool, CgroupError> {
    use std::os::unix::ffi::OsStrExt;
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| CgroupError::Missing {
            path: path.to_owned(),
        })?;
    // SAFETY: valid NUL-terminated path and an out-pointer to a zeroed statfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return Err(CgroupError::Io {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(st.f_type as i64 == CGROUP2_MAGIC)
}

/// Mount point of the cgroup v2 hierarchy: `/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones.
pub fn unified_mount() -> Result<PathBuf, CgroupError> {
    let mountinfo =
        std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
            path: "/proc/self/mountinfo".into(),
            source,
        })?;
    unified_mount_in(&mountinfo).ok_or(CgroupError::NoUnified)
}

/// Finds the first cgroup2 mount in mountinfo text (fields: ... mountpoint ... - fstype ...).
fn unified_mount_in(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        if right.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let mount_point = left.split_whitespace().nth(4)?;
        Some(PathBuf::from(unescape_octal(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unified_mount_on_hybrid_and_unified_hosts() {
        let hybrid = "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            unified_mount_in(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let unified = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            unified_mount_in(unified),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            unified_mount_in("1 1 0:1 / /proc rw - proc proc rw\n"),
            None
        );
    }

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_octal(r"/mnt/with\040space"), "/mnt/with space");
        assert_eq!(unescape_octal(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn missing_path_is_named() {
        let err = cgroup_id(Path::new("/sys/fs/cgroup/does-not-exist-yw")).unwrap_err();
        assert!(err.to_string().contains("does-not-exist-yw"), "{err}");
    }
}
