//! `user.name`: a uid means different users in different containers, so it is resolved from
//! the `/etc/passwd` the process itself sees (`/proc/<pid>/root/etc/passwd`), cached per
//! container for a short while, and left `None` when it cannot be read.
//!
//! The container's filesystem is attacker-controlled: the file is opened with
//! `RESOLVE_IN_ROOT` (a symlink cannot lead out of the container), non-blocking (a FIFO cannot
//! stall the agent), must be a regular file, and only its first bytes are parsed.

use std::{
    collections::HashMap,
    ffi::CString,
    io::Read,
    os::{fd::FromRawFd, unix::ffi::OsStrExt},
    time::{Duration, Instant},
};

use super::{fifo::FifoMap, procfs::ProcFs};

/// Bytes of a passwd file parsed.
const PASSWD_MAX: u64 = 256 * 1024;
/// Users kept per passwd file.
const USERS_MAX: usize = 4096;
/// Longest user name kept (longer names are cut).
const NAME_MAX: usize = 64;
/// A passwd file is read again after this long (users get added, also by attackers).
const TTL: Duration = Duration::from_secs(30);

struct Passwd {
    read_at: Instant,
    names: HashMap<u32, String>,
}

pub struct UserNames {
    procfs: ProcFs,
    /// Keyed by whatever identifies a filesystem view: the container id, or the watched
    /// cgroup for processes outside containers.
    cache: FifoMap<String, Passwd>,
}

impl UserNames {
    pub fn new(procfs: ProcFs, capacity: usize) -> Self {
        Self {
            procfs,
            cache: FifoMap::new(capacity),
        }
    }

    /// The name of `uid` in the passwd file process `pid` sees; `key` names its filesystem
    /// view for caching (the process may be gone by the next exec).
    pub fn name(&mut self, key: &str, pid: u32, uid: u32) -> Option<String> {
        self.name_or_via(key, pid, uid, Vec::new)
    }

    /// Like [`name`](Self::name); when `pid` has already exited (a short command), the
    /// passwd file is read through another process of the same view, from `others`.
    pub fn name_or_via(
        &mut self,
        key: &str,
        pid: u32,
        uid: u32,
        others: impl FnOnce() -> Vec<u32>,
    ) -> Option<String> {
        let fresh = self
            .cache
            .get(&key.to_owned())
            .is_some_and(|p| p.read_at.elapsed() < TTL);
        let read = || {
            self.read(pid)
                .or_else(|| others().into_iter().find_map(|other| self.read(other)))
        };
        if !fresh && let Some(names) = read() {
            self.cache.insert(
                key.to_owned(),
                Passwd {
                    read_at: Instant::now(),
                    names,
                },
            );
        }
        self.cache.get(&key.to_owned())?.names.get(&uid).cloned()
    }

    fn read(&self, pid: u32) -> Option<HashMap<u32, String>> {
        let root = self.procfs.pid_dir(pid).join("root");
        let bytes = read_in_root(&root, "etc/passwd")?;
        Some(parse_passwd(&bytes))
    }
}

/// Reads `relative` resolved inside `root` as if `root` were `/`, at most [`PASSWD_MAX`]
/// bytes, regular files only.
fn read_in_root(root: &std::path::Path, relative: &str) -> Option<Vec<u8>> {
    let root_c = CString::new(root.as_os_str().as_bytes()).ok()?;
    // SAFETY: valid NUL-terminated path; the returned fd is checked and owned below.
    let dirfd = unsafe {
        libc::open(
            root_c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if dirfd < 0 {
        return None;
    }
    // SAFETY: dirfd is a fresh fd we own.
    let dir = unsafe { std::fs::File::from_raw_fd(dirfd) };
    let rel_c = CString::new(relative).ok()?;
    // SAFETY: open_how is plain integers; all-zero is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    use std::os::fd::AsRawFd;
    // SAFETY: openat2 with a valid dirfd, path and open_how of the size we pass.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            rel_c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: fd is a fresh fd we own.
    let file = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    let mut out = Vec::new();
    file.take(PASSWD_MAX).read_to_end(&mut out).ok()?;
    Some(out)
}

/// `name:x:uid:gid:...` lines; malformed lines are skipped.
pub fn parse_passwd(bytes: &[u8]) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    for line in bytes.split(|&b| b == b'\n') {
        if names.len() >= USERS_MAX {
            break;
        }
        let mut fields = line.split(|&b| b == b':');
        let (Some(name), _, Some(uid)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Some(uid) = std::str::from_utf8(uid).ok().and_then(|u| u.parse().ok()) else {
            continue;
        };
        if name.is_empty() || name.starts_with(b"#") {
            continue;
        }
        let name: String = String::from_utf8_lossy(name)
            .chars()
            .filter(|c| !c.is_control())
            .take(NAME_MAX)
            .collect();
        // The first entry for a uid wins, as getpwuid does.
        names.entry(uid).or_insert(name);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd_lines() {
        let names = parse_passwd(
            b"root:x:0:0:root:/root:/bin/sh\nbad line\nnode:x:1000:1000::/home/node:/bin/sh\n\
              toor:x:0:0::/:/bin/sh\n#c:x:5:5\n",
        );
        assert_eq!(names.get(&0).map(String::as_str), Some("root"));
        assert_eq!(names.get(&1000).map(String::as_str), Some("node"));
        assert_eq!(names.len(), 2);
    }

    /// A fake `/proc/<pid>/root` with an /etc/passwd.
    fn fake_root(proc: &std::path::Path, pid: u32, passwd: &str) -> std::path::PathBuf {
        let root = proc.join(pid.to_string()).join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), passwd).unwrap();
        root
    }

    #[test]
    fn each_container_has_its_own_users_and_cache() {
        let proc = tempfile::tempdir().unwrap();
        fake_root(
            proc.path(),
            1,
            "root:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh\n",
        );
        fake_root(
            proc.path(),
            2,
            "root:x:0:0::/:/bin/sh\nnode:x:1000:1000::/:/bin/sh\n",
        );
        let mut users = UserNames::new(ProcFs::new(proc.path()), 8);
        assert_eq!(users.name("c1", 1, 1000).as_deref(), Some("app"));
        assert_eq!(users.name("c2", 2, 1000).as_deref(), Some("node"));
        assert_eq!(users.name("c2", 2, 4242), None);
        // The process is gone: the container's cached file still answers.
        std::fs::remove_dir_all(proc.path().join("1")).unwrap();
        assert_eq!(users.name("c1", 1, 1000).as_deref(), Some("app"));
        assert_eq!(users.name("c3", 1, 0), None);
    }

    #[test]
    fn symlinks_stay_inside_the_container_and_fifos_are_refused() {
        let proc = tempfile::tempdir().unwrap();
        let outside = proc.path().join("outside-passwd");
        std::fs::write(&outside, "leak:x:0:0::/:/bin/sh\n").unwrap();
        let root = fake_root(proc.path(), 1, "");
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        // An absolute symlink is resolved inside the container's root, where it leads nowhere.
        std::os::unix::fs::symlink(&outside, root.join("etc/passwd")).unwrap();
        let mut users = UserNames::new(ProcFs::new(proc.path()), 8);
        assert_eq!(users.name("c1", 1, 0), None);

        let root = fake_root(proc.path(), 2, "");
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        let fifo = CString::new(root.join("etc/passwd").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert_eq!(users.name("c2", 2, 0), None);
    }
}
