//! In-kernel enforcement on the real kernel: the mechanism probe (BPF LSM, else SIGKILL) and
//! its fallback, forbidden execs stopped before their first instruction in enforced cgroups
//! (shells, symlinks to them, `#!` scripts), everything else untouched, monitor mode, the
//! disarmer, and detaching. Needs root (fails under CI=true without).

mod support;

use std::{
    os::unix::process::ExitStatusExt,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use support::{
    cgroup_tree::CgroupTree,
    exec_events::{drain, has_arg, until},
    marker_elf, require,
};
use tokio::sync::mpsc::Receiver;
use youwatch_agent::{
    enforce::{DisarmConfig, EnforceConfig, EnforceMode, tap},
    event::{EnforceOutcome, ExecEvent, MatchedBy},
    sensor::{
        SensorConfig,
        ebpf::{Enforcement, ExecSensor, ExecTap, KernelMode, Mechanism},
    },
};

/// The sensor with enforcement armed in `mode` (the default names), `rel` of `tree` watched
/// and enforced.
fn armed(
    tree: &CgroupTree,
    rel: &str,
    mode: KernelMode,
    tap: impl FnOnce(&Enforcement) -> Option<Box<dyn ExecTap>>,
) -> (ExecSensor, Enforcement, Receiver<ExecEvent>) {
    let mut sensor = ExecSensor::load(&SensorConfig::default()).expect("loading the sensor");
    let keys: Vec<_> = EnforceConfig::default()
        .forbidden
        .iter()
        .map(|n| n.key())
        .collect();
    let enforcement = sensor.arm_enforcement(&keys, mode).expect("arming");
    let rx = sensor.events_with_tap(1024, tap(&enforcement)).unwrap();
    let watch = sensor.watch_set();
    watch.set_enforced(tree.id(rel), true).unwrap();
    watch.watch(tree.id(rel)).unwrap();
    (sensor, enforcement, rx)
}

/// What became of a program started in a cgroup.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    /// It ran to its end: its exit code and stdout.
    Exited(i32, String),
    /// Killed by SIGKILL, having written nothing.
    Killed,
    /// Its exec failed with EPERM (the BPF LSM).
    Denied,
}

impl Ran {
    /// Stopped, as `mechanism` stops it.
    fn stopped_by(&self, mechanism: Mechanism) -> bool {
        match mechanism {
            Mechanism::SigKill => *self == Ran::Killed,
            Mechanism::Lsm => *self == Ran::Denied,
        }
    }
}

/// Runs `program args` in cgroup `rel`, its stdout captured.
fn run_in(tree: &CgroupTree, rel: &str, program: &str, args: &[&str]) -> Ran {
    let out = tree
        .command_in(rel, program)
        .args(args)
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Ran::Denied,
        Err(e) => panic!("running {program}: {e}"),
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.signal() == Some(libc::SIGKILL) {
                assert!(stdout.is_empty(), "killed {program} wrote {stdout:?}");
                Ran::Killed
            } else {
                Ran::Exited(out.status.code().unwrap_or(-1), stdout)
            }
        }
    }
}

/// The enforcement outcome `mechanism` reports for a stopped exec.
fn outcome_of(mechanism: Mechanism) -> EnforceOutcome {
    match mechanism {
        Mechanism::SigKill => EnforceOutcome::Killed,
        Mechanism::Lsm => EnforceOutcome::Denied,
    }
}

/// The event of the exec whose path is `path`.
async fn event_for(rx: &mut Receiver<ExecEvent>, path: &str) -> ExecEvent {
    until(rx, |e| e.filename == path).await.pop().unwrap()
}

/// A fresh directory for programs and marker files.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_mode_falls_back_to_sigkill_where_the_kernel_refuses_bpf_lsm() {
    if !require::root_and_cgroup2(
        "enforce_mode_falls_back_to_sigkill_where_the_kernel_refuses_bpf_lsm",
    ) {
        return;
    }
    let tree = CgroupTree::new("probe");
    tree.mkdir("pod");
    let (_sensor, enforcement, _rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    eprintln!(
        "mechanism {:?}, LSM: {:?}",
        enforcement.mechanism, enforcement.lsm_unavailable
    );
    match enforcement.mechanism {
        Mechanism::SigKill => {
            let why = enforcement
                .lsm_unavailable
                .expect("the reason LSM is not used");
            assert!(
                why.contains("bprm_check_security") || why.contains("BPF LSM"),
                "{why}"
            );
        }
        Mechanism::Lsm => assert!(enforcement.lsm_unavailable.is_none()),
    }
    assert_eq!(enforcement.switch.get().unwrap(), KernelMode::Enforce);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_in_an_enforced_cgroup_is_stopped_before_it_creates_anything() {
    if !require::root_and_cgroup2(
        "a_shell_in_an_enforced_cgroup_is_stopped_before_it_creates_anything",
    ) {
        return;
    }
    let tree = CgroupTree::new("shell");
    tree.mkdir("pod/ctr");
    let (sensor, enforcement, mut rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    let dir = scratch();
    let created = dir.path().join("created-by-the-shell");
    let touch = format!("touch {}", created.display());
    let ran = run_in(&tree, "pod/ctr", "/bin/sh", &["-c", &touch]);
    assert!(ran.stopped_by(enforcement.mechanism), "{ran:?}");
    assert!(!created.exists(), "the shell ran");

    let ev = event_for(&mut rx, "/bin/sh").await;
    let e = ev.enforcement.expect("the event says what enforcement did");
    assert_eq!(e.outcome, outcome_of(enforcement.mechanism));
    // /bin/sh is a symlink to dash on Debian: the executed file's own name matches first.
    let target = std::fs::canonicalize("/bin/sh").unwrap();
    let target = target.file_name().unwrap().to_str().unwrap();
    assert_eq!((e.matched.as_str(), e.by), (target, MatchedBy::File));
    if enforcement.mechanism == Mechanism::SigKill {
        // Killed after the exec: the event is the new image's, with its arguments.
        assert_eq!(ev.argv, ["/bin/sh", "-c", touch.as_str()]);
    }
    assert_eq!(ev.watched_cgroup_id, tree.id("pod"));
    let counters = enforcement.counters().unwrap();
    assert_eq!(counters.killed + counters.denied, 1, "{counters:?}");

    // Unwatching a cgroup stops enforcing there.
    let watch = sensor.watch_set();
    assert_eq!(watch.enforced_ids(), [tree.id("pod")]);
    watch.unwatch(tree.id("pod")).unwrap();
    assert!(watch.enforced_ids().is_empty());
    assert_eq!(
        run_in(&tree, "pod/ctr", "/bin/sh", &["-c", "echo yw-free"]),
        Ran::Exited(0, "yw-free\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_one_instruction_of_a_stopped_program_runs() {
    if !require::root_and_cgroup2("not_one_instruction_of_a_stopped_program_runs")
        || !require::runnable(
            "not_one_instruction_of_a_stopped_program_runs",
            marker_elf::supported(),
            "the marker program is x86-64 code",
        )
    {
        return;
    }
    let tree = CgroupTree::new("marker");
    tree.mkdir("pod/ctr");
    tree.mkdir("outside");
    let dir = scratch();
    // A static program named like a shell whose first instruction writes the marker.
    let sh = dir.path().join("sh");
    marker_elf::write(&sh);
    let sh = sh.to_str().unwrap();
    assert_eq!(
        run_in(&tree, "outside", sh, &[]),
        Ran::Exited(0, marker_elf::MARKER.into()),
        "the marker program works"
    );
    let (_sensor, enforcement, mut rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    let ran = run_in(&tree, "pod/ctr", sh, &[]);
    assert!(
        ran.stopped_by(enforcement.mechanism),
        "{ran:?}: its first instruction ran"
    );
    let e = event_for(&mut rx, sh).await.enforcement.unwrap();
    assert_eq!((e.matched.as_str(), e.by), ("sh", MatchedBy::File));
    // Outside the enforced cgroup, with enforcement attached, it still runs.
    assert_eq!(
        run_in(&tree, "outside", sh, &[]),
        Ran::Exited(0, "X".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_and_scripts_are_stopped_by_each_of_their_names() {
    if !require::root_and_cgroup2("symlinks_and_scripts_are_stopped_by_each_of_their_names") {
        return;
    }
    let tree = CgroupTree::new("names");
    tree.mkdir("pod/ctr");
    let (_sensor, enforcement, mut rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    let mechanism = enforcement.mechanism;
    let dir = scratch();
    let at = |name: &str| dir.path().join(name);
    let path = |name: &str| at(name).to_str().unwrap().to_owned();
    let shell = std::fs::canonicalize("/bin/sh").unwrap();
    let shell_name = shell.file_name().unwrap().to_str().unwrap().to_owned();

    // /tmp/x -> /bin/sh: named otherwise, stopped by the file it runs.
    symlink("/bin/sh", &at("x"));
    // A busybox-style applet link: `sh` pointing at a program whose own name is allowed.
    symlink("/bin/true", &at("sh"));
    // A #! script: the kernel runs its interpreter, whose file is the shell.
    let created = at("created-by-the-script");
    script(
        &at("job.run"),
        &format!("#!/bin/sh\ntouch {}\n", created.display()),
    );
    // A #! script whose interpreter's file is allowed but whose interpreter path names a shell.
    script(&at("applet.run"), &format!("#!{}\n", path("sh")));

    for (program, matched, by) in [
        (path("x"), shell_name.as_str(), MatchedBy::File),
        (path("sh"), "sh", MatchedBy::Path),
        (path("job.run"), shell_name.as_str(), MatchedBy::File),
        (path("applet.run"), "sh", MatchedBy::Interpreter),
    ] {
        let ran = run_in(&tree, "pod/ctr", &program, &[]);
        assert!(ran.stopped_by(mechanism), "{program}: {ran:?}");
        let e = event_for(&mut rx, &program).await.enforcement.unwrap();
        assert_eq!((e.matched.as_str(), e.by), (matched, by), "{program}");
        assert_eq!(e.outcome, outcome_of(mechanism));
    }
    assert!(!created.exists(), "the script ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_programs_and_other_cgroups_are_untouched() {
    if !require::root_and_cgroup2("allowed_programs_and_other_cgroups_are_untouched") {
        return;
    }
    let tree = CgroupTree::new("allowed");
    tree.mkdir("pod/ctr");
    tree.mkdir("watched/ctr");
    tree.mkdir("outside");
    let (sensor, _enforcement, mut rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    sensor.watch_set().watch(tree.id("watched")).unwrap();

    // Non-shell programs in the enforced cgroup run, and are reported as usual.
    assert_eq!(
        run_in(&tree, "pod/ctr", "/bin/echo", &["yw-allowed"]),
        Ran::Exited(0, "yw-allowed\n".into())
    );
    assert_eq!(
        run_in(
            &tree,
            "pod/ctr",
            "/usr/bin/python3",
            &["-c", "print('yw-python')"]
        ),
        Ran::Exited(0, "yw-python\n".into())
    );
    // A shell where the cgroup is watched but not enforced, or not watched at all, runs.
    for rel in ["watched/ctr", "outside", ""] {
        assert_eq!(
            run_in(&tree, rel, "/bin/sh", &["-c", "echo yw-shell"]),
            Ran::Exited(0, "yw-shell\n".into()),
            "in {rel:?}"
        );
    }
    let mut events = until(&mut rx, |e| has_arg(e, "echo yw-shell")).await;
    events.extend(drain(&mut rx, Duration::from_millis(300)).await);
    assert!(
        events.iter().any(|e| has_arg(e, "yw-allowed")),
        "allowed execs are reported: {events:#?}"
    );
    assert!(
        events.iter().all(|e| e.enforcement.is_none()),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_lets_it_run_and_says_it_would_have_stopped_it() {
    if !require::root_and_cgroup2("monitor_mode_lets_it_run_and_says_it_would_have_stopped_it") {
        return;
    }
    let tree = CgroupTree::new("monitor");
    tree.mkdir("pod/ctr");
    let (_sensor, enforcement, mut rx) = armed(&tree, "pod", KernelMode::Monitor, |_| None);
    assert_eq!(
        enforcement.lsm_unavailable.as_deref(),
        Some("not tried: nothing is stopped in this mode")
    );
    let dir = scratch();
    let created = dir.path().join("created");
    let touch = format!("touch {}", created.display());
    assert_eq!(
        run_in(&tree, "pod/ctr", "/bin/sh", &["-c", &touch]),
        Ran::Exited(0, String::new())
    );
    assert!(created.exists());
    let e = event_for(&mut rx, "/bin/sh").await.enforcement.unwrap();
    assert_eq!(e.outcome, EnforceOutcome::WouldStop);
    let counters = enforcement.counters().unwrap();
    assert_eq!((counters.would_stop, counters.killed), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disarmer_switches_the_kernel_to_monitor_mode_at_once() {
    if !require::root_and_cgroup2("the_disarmer_switches_the_kernel_to_monitor_mode_at_once") {
        return;
    }
    let tree = CgroupTree::new("disarm");
    tree.mkdir("pod/ctr");
    let mut status = None;
    let (_sensor, enforcement, mut rx) = armed(&tree, "pod", KernelMode::Enforce, |armed| {
        let s = tap::EnforceStatus::new(EnforceMode::Enforce, armed);
        status = Some(s.clone());
        let config = DisarmConfig {
            max_distinct: 2,
            window: Duration::from_secs(60),
        };
        tap::EnforceTap::new(&config, armed.switch.clone(), s)
            .map(|t| Box::new(t) as Box<dyn ExecTap>)
    });
    let status = status.unwrap();
    let mechanism = enforcement.mechanism;
    let dir = scratch();
    let zsh = dir.path().join("zsh");
    symlink("/bin/true", &zsh);
    // Three different forbidden names: the third passes max_distinct 2.
    for program in ["/bin/sh", "/bin/bash", zsh.to_str().unwrap()] {
        assert!(
            run_in(&tree, "pod/ctr", program, &[]).stopped_by(mechanism),
            "{program}"
        );
    }
    // The tap runs in the reader as soon as the event is read.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.disarmed() {
        assert!(
            Instant::now() < deadline,
            "not disarmed: {}",
            status.describe()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(enforcement.switch.get().unwrap(), KernelMode::Monitor);
    assert_eq!(status.mode(), EnforceMode::Monitor);
    let text = status.describe();
    assert!(
        text.contains("DISARMED") && text.contains("3 distinct binaries"),
        "{text}"
    );
    assert!(status.take_disarm_alert().is_some() && status.take_disarm_alert().is_none());

    // From now on shells run, flagged.
    assert_eq!(
        run_in(&tree, "pod/ctr", "/bin/sh", &["-c", "echo yw-after"]),
        Ran::Exited(0, "yw-after\n".into())
    );
    let events = until(&mut rx, |e| has_arg(e, "echo yw-after")).await;
    let after = events.last().unwrap().enforcement.as_ref().unwrap();
    assert_eq!(after.outcome, EnforceOutcome::WouldStop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detaching_restores_normal_behaviour() {
    if !require::root_and_cgroup2("detaching_restores_normal_behaviour") {
        return;
    }
    let tree = CgroupTree::new("detach");
    tree.mkdir("pod/ctr");
    let (sensor, enforcement, _rx) = armed(&tree, "pod", KernelMode::Enforce, |_| None);
    assert!(run_in(&tree, "pod/ctr", "/bin/sh", &["-c", "true"]).stopped_by(enforcement.mechanism));
    sensor.detach();
    drop(enforcement);
    assert_eq!(
        run_in(&tree, "pod/ctr", "/bin/sh", &["-c", "echo yw-free"]),
        Ran::Exited(0, "yw-free\n".into())
    );
}
