//! What the exec sensor reads of the new image on the real kernel: pid-namespace ids, audit
//! login uid, capabilities, the executable's overlayfs layer or memfd, the environment and the
//! working directory. Needs root (fails under CI=true without).

mod support;

use std::{ffi::CString, os::unix::process::CommandExt, path::Path, process::Command};

use support::{
    cgroup_tree::CgroupTree,
    exec_events::{has_arg, sensor, until},
    require,
};
use youwatch_agent::event::ExecEvent;
use youwatch_common::limits;

/// Runs `cmd` (built with `tree.command_in`) in the watched cgroup `pod`, waits for the exec
/// whose first argument is `marker` (not a launcher such as setpriv that passes it on), and
/// returns it.
async fn exec_of(tree: &CgroupTree, mut cmd: Command, marker: &str) -> ExecEvent {
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();
    let status = cmd.status().unwrap();
    assert!(status.success(), "{cmd:?}: {status}");
    until(&mut rx, |e| e.argv.get(1).is_some_and(|a| a == marker))
        .await
        .pop()
        .unwrap()
}

fn status_field(pid: &str, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pid_namespace_ids_and_process_groups() {
    if !require::root_and_cgroup2("pid_namespace_ids_and_process_groups") {
        return;
    }
    let tree = CgroupTree::new("pidns");
    tree.mkdir("pod");
    // In a new pid namespace: sh is its init (vpid 1); its process group was made outside
    // the namespace, so it has no number there (vpgid 0), as in a container whose runtime
    // did not make one.
    let mut cmd = tree.command_in("pod", "unshare");
    cmd.args([
        "--pid",
        "--fork",
        "/bin/sh",
        "-c",
        "/bin/true yw-pidns; true",
    ]);
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();
    assert!(cmd.status().unwrap().success());
    let events = until(&mut rx, |e| has_arg(e, "yw-pidns")).await;
    let sh = events.iter().find(|e| e.comm == "sh").expect("sh exec");
    let child = events.last().unwrap();
    assert_eq!(sh.vpid, Some(1), "{sh:#?}");
    assert_ne!(sh.pid, 1);
    assert_eq!(sh.vpgid, Some(0));
    assert!(
        child.vpid.is_some_and(|v| v > 1 && v != child.pid),
        "{child:#?}"
    );
    assert_eq!(child.vpgid, Some(0));

    // setsid in the namespace: sh leads its own group there (proc.is_vpgid_leader).
    let mut cmd = tree.command_in("pod", "unshare");
    cmd.args([
        "--pid",
        "--fork",
        "setsid",
        "/bin/sh",
        "-c",
        "/bin/true yw-leader; true",
    ]);
    assert!(cmd.status().unwrap().success());
    let events = until(&mut rx, |e| has_arg(e, "yw-leader")).await;
    let sh = events.iter().find(|e| e.comm == "sh").expect("sh exec");
    assert_eq!((sh.vpid, sh.vpgid), (Some(1), Some(1)), "{sh:#?}");
    let child = events.last().unwrap();
    assert_eq!(child.vpgid, Some(1), "the child stays in sh's group");
    assert_ne!(child.vpid, Some(1));

    // On the host, the ids are the global ones.
    tree.sh("pod", "/bin/true yw-host");
    let ev = until(&mut rx, |e| has_arg(e, "yw-host"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.vpid, Some(ev.pid));
    let pgid = unsafe { libc::getpgid(0) } as u32;
    assert_eq!(ev.vpgid, Some(pgid), "sh -c keeps the test's process group");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_login_uid() {
    if !require::root_and_cgroup2("audit_login_uid") {
        return;
    }
    let audit = Path::new("/proc/self/loginuid").exists();
    if !require::runnable("audit_login_uid", audit, "needs a kernel with CONFIG_AUDIT") {
        return;
    }
    let tree = CgroupTree::new("loginuid");
    tree.mkdir("pod");
    // As login(1) does: the shell sets its own login uid, then execs.
    let mut cmd = tree.command_in("pod", "/bin/sh");
    cmd.args([
        "-c",
        "echo 4321 > /proc/self/loginuid && exec /bin/true yw-loginuid",
    ]);
    let ev = exec_of(&tree, cmd, "yw-loginuid").await;
    assert_eq!(ev.loginuid, 4321);
    // Unset (this test's own, normally): u32::MAX, Falco's -1.
    let own: u32 = std::fs::read_to_string("/proc/self/loginuid")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-own-loginuid");
    let ev = exec_of(&tree, cmd, "yw-own-loginuid").await;
    assert_eq!(ev.loginuid, own);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_sets() {
    if !require::root_and_cgroup2("capability_sets") {
        return;
    }
    let tree = CgroupTree::new("caps");
    tree.mkdir("pod");
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    // Root's exec gets the bounding set: this test's own.
    let bounding = u64::from_str_radix(&status_field("self", "CapBnd:"), 16).unwrap();
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-caps-full");
    let full = exec_of(&tree, cmd, "yw-caps-full").await.caps.unwrap();
    assert_eq!((full.permitted, full.effective), (bounding, bounding));

    // Without CAP_SYS_ADMIN in the bounding set.
    let mut cmd = tree.command_in("pod", "setpriv");
    cmd.args([
        "--bounding-set=-sys_admin",
        "--inh-caps=+chown",
        "/bin/true",
        "yw-caps-less",
    ]);
    let less = exec_of(&tree, cmd, "yw-caps-less").await.caps.unwrap();
    assert_eq!(less.permitted, bounding & !CAP_SYS_ADMIN);
    assert_eq!(less.effective, less.permitted);
    assert_eq!(less.inheritable, CAP_CHOWN);

    // An unprivileged user has none.
    let mut cmd = tree.command_in("pod", "setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/bin/true",
        "yw-caps-none",
    ]);
    let none = exec_of(&tree, cmd, "yw-caps-none").await.caps.unwrap();
    assert_eq!((none.permitted, none.effective), (0, 0));
}

/// A real overlay mount in a temporary directory: an executable from the lower layer, one
/// written into the merged view (upper), and one copied up by a metadata change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_on_overlayfs_upper_and_lower_layers() {
    if !require::root_and_cgroup2("executable_on_overlayfs_upper_and_lower_layers") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let [lower, upper, work, merged] = ["lower", "upper", "work", "merged"].map(|d| {
        let p = dir.path().join(d);
        std::fs::create_dir(&p).unwrap();
        p
    });
    std::fs::copy("/bin/true", lower.join("from-image")).unwrap();
    std::fs::copy("/bin/true", lower.join("copied-up")).unwrap();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&merged)
        .status()
        .is_ok_and(|s| s.success());
    if !require::runnable(
        "executable_on_overlayfs_upper_and_lower_layers",
        mounted,
        "needs overlayfs (mount -t overlay)",
    ) {
        return;
    }
    let _unmount = Unmount(&merged);
    std::fs::copy("/bin/true", merged.join("dropped")).unwrap();
    // chmod copies the file up to the upper layer.
    Command::new("chmod")
        .arg("755")
        .arg(merged.join("copied-up"))
        .status()
        .unwrap();

    let tree = CgroupTree::new("overlay");
    tree.mkdir("pod");
    let origin = |name: &str| {
        let mut cmd = tree.command_in("pod", merged.join(name).to_str().unwrap());
        cmd.arg(format!("yw-ovl-{name}"));
        cmd
    };
    let lower_ev = exec_of(&tree, origin("from-image"), "yw-ovl-from-image").await;
    let o = lower_ev.exe_origin.unwrap();
    assert!(o.lower_layer && !o.upper_layer && !o.memfd, "{o:?}");
    for name in ["dropped", "copied-up"] {
        let ev = exec_of(&tree, origin(name), &format!("yw-ovl-{name}")).await;
        let o = ev.exe_origin.unwrap();
        assert!(o.upper_layer && !o.lower_layer, "{name}: {o:?}");
    }
    // Not on overlayfs at all.
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-ovl-none");
    let o = exec_of(&tree, cmd, "yw-ovl-none").await.exe_origin.unwrap();
    assert!(!o.upper_layer && !o.lower_layer && !o.memfd, "{o:?}");
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

/// `memfd_create`, copy an executable in, `fexecve` it: fileless execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_from_a_memfd() {
    if !require::root_and_cgroup2("executable_from_a_memfd") {
        return;
    }
    let tree = CgroupTree::new("memfd");
    tree.mkdir("pod");
    let name = CString::new("payload").unwrap();
    // SAFETY: plain syscall; the fd is owned right away.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a fresh fd we own.
    let mut memfd = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    std::io::copy(&mut std::fs::File::open("/bin/true").unwrap(), &mut memfd).unwrap();
    // The child replaces itself with the memfd between fork and Command's own exec; argv and
    // envp are built before the fork.
    let argv: Vec<CString> = ["payload", "yw-memfd"]
        .map(|a| CString::new(a).unwrap())
        .to_vec();
    let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let argv_addr = argv_ptrs.as_ptr() as usize;
    let envp_addr = envp.as_ptr() as usize;
    let mut cmd = tree.command_in("pod", "/bin/false");
    // SAFETY: fexecve only (async-signal-safe); the pointers outlive the spawn below.
    unsafe {
        cmd.pre_exec(move || {
            libc::fexecve(
                fd,
                argv_addr as *const *const libc::c_char,
                envp_addr as *const *const libc::c_char,
            );
            Err(std::io::Error::last_os_error())
        });
    }
    let ev = exec_of(&tree, cmd, "yw-memfd").await;
    drop((argv, memfd));
    let o = ev.exe_origin.unwrap();
    assert!(o.memfd && !o.upper_layer && !o.lower_layer, "{o:?}");

    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-not-memfd");
    assert!(
        !exec_of(&tree, cmd, "yw-not-memfd")
            .await
            .exe_origin
            .unwrap()
            .memfd
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_is_captured_and_bounded() {
    if !require::root_and_cgroup2("environment_is_captured_and_bounded") {
        return;
    }
    let tree = CgroupTree::new("env");
    tree.mkdir("pod");
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-env")
        .env_clear()
        .env("HTTP_PROXY", "http://proxy.example:3128")
        .env("EMPTY", "")
        .env("SPACED", "a b");
    let ev = exec_of(&tree, cmd, "yw-env").await;
    let mut env: Vec<&str> = ev.env.iter().collect();
    env.sort();
    assert_eq!(
        env,
        [
            "EMPTY=",
            "HTTP_PROXY=http://proxy.example:3128",
            "SPACED=a b"
        ]
    );
    assert!(!ev.env_truncated);

    // Longer than the area: cut at ENV_LEN bytes and flagged; what is kept is the start.
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-env-long")
        .env_clear()
        .env("FIRST", "1")
        .env("LONG", "x".repeat(3 * limits::ENV_LEN));
    let ev = exec_of(&tree, cmd, "yw-env-long").await;
    assert!(ev.env_truncated, "{:?}", ev.env);
    // std passes the variables sorted by name.
    let env: Vec<&str> = ev.env.iter().collect();
    let long = format!("LONG={}", "x".repeat(limits::ENV_LEN - 8 - 5));
    assert_eq!(env, ["FIRST=1", long.as_str()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_directory() {
    if !require::root_and_cgroup2("working_directory") {
        return;
    }
    let tree = CgroupTree::new("cwd");
    tree.mkdir("pod");
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a b").join("shm");
    std::fs::create_dir_all(&nested).unwrap();
    let nested = nested.canonicalize().unwrap();
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-cwd").current_dir(&nested);
    let ev = exec_of(&tree, cmd, "yw-cwd").await;
    assert_eq!(ev.cwd, Some(format!("{}/", nested.display())));

    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-cwd-root").current_dir("/");
    assert_eq!(
        exec_of(&tree, cmd, "yw-cwd-root").await.cwd.as_deref(),
        Some("/")
    );

    // Across a mount (a tmpfs on /dev/shm, normally), as Falco's "Execution from /dev/shm"
    // needs.
    if Path::new("/dev/shm").is_dir() {
        let mut cmd = tree.command_in("pod", "/bin/true");
        cmd.arg("yw-cwd-shm").current_dir("/dev/shm");
        let ev = exec_of(&tree, cmd, "yw-cwd-shm").await;
        assert_eq!(ev.cwd.as_deref(), Some("/dev/shm/"));
    }

    // From the process's own root: in a chroot the path starts there, as in a container.
    // The bind mount lives in a private mount namespace.
    let jail = dir.path().join("jail");
    std::fs::create_dir(&jail).unwrap();
    let mut cmd = tree.command_in("pod", "unshare");
    cmd.args([
        "--mount",
        "/bin/sh",
        "-c",
        "mount --rbind / \"$0\" && exec chroot \"$0\" /bin/sh -c 'cd /usr/bin && exec /bin/true yw-cwd-chroot'",
    ])
    .arg(&jail);
    let ev = exec_of(&tree, cmd, "yw-cwd-chroot").await;
    assert_eq!(ev.cwd.as_deref(), Some("/usr/bin/"));

    // Deeper than the area holds: unknown rather than wrong, and flagged.
    let mut deep = nested.clone();
    while deep.as_os_str().len() <= limits::CWD_LEN {
        deep.push("d".repeat(40));
    }
    std::fs::create_dir_all(&deep).unwrap();
    let mut cmd = tree.command_in("pod", "/bin/true");
    cmd.arg("yw-cwd-deep").current_dir(&deep);
    let ev = exec_of(&tree, cmd, "yw-cwd-deep").await;
    assert!(ev.cwd.is_none() && ev.cwd_truncated, "{:?}", ev.cwd);
}
