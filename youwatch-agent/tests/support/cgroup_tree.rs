//! A temporary cgroup v2 tree for tests, removed on drop even when the test fails: processes
//! still inside are killed first, then directories are removed deepest first.

use std::{
    ffi::CString,
    os::unix::{ffi::OsStrExt, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

pub struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// Creates `<unified mount>/youwatch-test-<pid>-<n>-<label>`.
    pub fn new(label: &str) -> Self {
        let mount = youwatch_agent::cgroupfs::unified_mount().expect("cgroup v2 mounted");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = mount.join(format!("youwatch-test-{}-{n}-{label}", std::process::id()));
        std::fs::create_dir(&root).unwrap_or_else(|e| panic!("creating {}: {e}", root.display()));
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates `rel` (and its parents) below the root; returns its full path.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.root.join(rel);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        path
    }

    /// Creates a Guaranteed juice-shop pod `name` on `node` in namespace `shop` (its app
    /// container has the containerd id `container_id`) and that container's cgroup in the
    /// systemd driver's layout; returns the cgroup's path relative to the root.
    pub fn guaranteed_pod(
        &self,
        server: &super::apiserver::ApiServer,
        name: &str,
        node: &str,
        container_id: &str,
    ) -> String {
        let created = server.create(
            "pods",
            "shop",
            serde_json::json!({
                "metadata": {"name": name, "labels": {"app": "juice-shop"}},
                "spec": {"nodeName": node, "containers": [{"name": "app", "image": "bkimminich/juice-shop:v17.1.1"}]},
                "status": {"qosClass": "Guaranteed", "containerStatuses": [{"name": "app",
                    "image": super::response::JUICE_SHOP_IMAGE, "imageID": "x", "ready": true,
                    "restartCount": 0, "containerID": format!("containerd://{container_id}")}]},
            }),
        );
        let uid = created["metadata"]["uid"]
            .as_str()
            .unwrap()
            .replace('-', "_");
        let ctr =
            format!("kubepods.slice/kubepods-pod{uid}.slice/cri-containerd-{container_id}.scope");
        self.mkdir(&ctr);
        ctr
    }

    /// The cgroup id of `rel` (relative to the root; "" is the root itself).
    pub fn id(&self, rel: &str) -> u64 {
        let path = if rel.is_empty() {
            self.root.clone()
        } else {
            self.root.join(rel)
        };
        youwatch_agent::cgroupfs::cgroup_id(&path).unwrap()
    }

    /// A command that joins cgroup `rel` between fork and exec, so its very first exec is
    /// already inside it.
    pub fn command_in(&self, rel: &str, program: &str) -> Command {
        let procs = self.root.join(rel).join("cgroup.procs");
        let procs = CString::new(procs.as_os_str().as_bytes()).unwrap();
        let mut cmd = Command::new(program);
        // SAFETY: only async-signal-safe calls (open, write, close) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if written != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `sh -c script` inside cgroup `rel` and waits for it; panics on failure.
    pub fn sh(&self, rel: &str, script: &str) {
        let status = self
            .command_in(rel, "/bin/sh")
            .args(["-c", script])
            // Not on the caller's stdout: a bench's output is its report.
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("running sh in {rel}: {e}"));
        assert!(status.success(), "sh -c {script:?} in {rel}: {status}");
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        kill_all(&self.root);
        let mut dirs = Vec::new();
        collect_dirs(&self.root, &mut dirs);
        // Deepest first: a cgroup can only be removed once its children are gone.
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            while let Err(e) = std::fs::remove_dir(&dir) {
                if e.kind() == std::io::ErrorKind::NotFound || Instant::now() > deadline {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        eprintln!(
                            "warning: could not remove test cgroup {}: {e}",
                            dir.display()
                        );
                    }
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `cgroup.kill` the whole subtree (Linux ≥ 5.14), falling back to SIGKILL per pid.
fn kill_all(root: &Path) {
    if std::fs::write(root.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let mut dirs = Vec::new();
    collect_dirs(root, &mut dirs);
    for dir in dirs {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: plain syscall.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    out.push(dir.to_owned());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
}
