//! The exec sensor on the real kernel: cgroup subtree matching, event fields, late containers,
//! unwatch, and exact loss accounting under a burst. Needs root (fails under CI=true without).

mod support;

use std::time::Duration;

use support::{
    cgroup_tree::CgroupTree,
    exec_events::{drain, has_arg, sensor, until},
    require,
};
use youwatch_agent::sensor::ebpf::{ExecSensor, SensorCounters};

const POD_UID: &str = "0f8e1c4a-7b1d-4d8e-9a51-3c2b1e0d9f77";
const CONTAINER_ID: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904d1c6b3a0a4f1c6e2b7f8e9d0";

/// The layout of a BestEffort pod under the systemd cgroup driver with containerd.
fn k8s_layout() -> (String, String) {
    let pod = format!(
        "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice",
        POD_UID.replace('-', "_")
    );
    let container = format!("{pod}/cri-containerd-{CONTAINER_ID}.scope");
    (pod, container)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_in_pod_container_carries_identity_and_lineage() {
    if !require::root_and_cgroup2("exec_in_pod_container_carries_identity_and_lineage") {
        return;
    }
    let tree = CgroupTree::new("fields");
    let (pod, container) = k8s_layout();
    tree.mkdir(&container);
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id(&pod)).unwrap();

    // `; true` keeps sh from exec'ing echo in place, so echo is sh's child.
    let script = "/bin/echo yw-fields \"two words\"; true";
    let mut child = tree
        .command_in(&container, "/bin/sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let sh_pid = child.id();
    assert!(child.wait().unwrap().success());

    let events = until(&mut rx, |e| has_arg(e, "yw-fields")).await;
    let sh = events
        .iter()
        .find(|e| e.pid == sh_pid)
        .expect("the sh exec itself is reported");
    assert_eq!(sh.filename, "/bin/sh");
    assert_eq!(sh.argv, ["/bin/sh", "-c", script]);
    assert_eq!(sh.tgid, sh_pid);
    assert_eq!(
        sh.ppid,
        std::process::id(),
        "sh's parent is this test process"
    );
    assert_eq!(sh.comm, "sh");

    let echo = events.last().unwrap();
    assert_eq!(echo.filename, "/bin/echo");
    assert_eq!(echo.argv, ["/bin/echo", "yw-fields", "two words"]);
    assert_eq!(echo.comm, "echo");
    assert_eq!(echo.ppid, sh_pid);
    assert_eq!(echo.parent_comm, "sh");
    assert_eq!(echo.pid, echo.tgid);
    for ev in [sh, echo] {
        assert_eq!((ev.uid, ev.gid), (0, 0));
        assert_eq!(ev.tty, 0, "no controlling terminal under the test harness");
        assert_eq!(ev.cgroup_id, tree.id(&container));
        assert_eq!(ev.watched_cgroup_id, tree.id(&pod));
        assert!(!ev.args_truncated && !ev.filename_truncated);
    }
    // Kernel time is boot time; wall time is derived and must be close to now.
    let age = std::time::SystemTime::now()
        .duration_since(echo.time)
        .unwrap();
    assert!(age < Duration::from_secs(30), "event time {age:?} old");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uid_gid_of_an_unprivileged_exec() {
    if !require::root_and_cgroup2("uid_gid_of_an_unprivileged_exec") {
        return;
    }
    let tree = CgroupTree::new("uid");
    tree.mkdir("pod/ctr");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();
    // setpriv (util-linux) drops to nobody after joining the cgroup as root.
    let status = tree
        .command_in("pod/ctr", "setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/bin/sh",
            "-c",
            "/bin/true yw-uid",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let events = until(&mut rx, |e| has_arg(e, "yw-uid")).await;
    let ev = events.last().unwrap();
    assert_eq!((ev.uid, ev.gid), (65534, 65534));
    assert!(
        events.iter().any(|e| e.comm == "setpriv" && e.uid == 0),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_outside_the_watched_subtree_is_not_delivered() {
    if !require::root_and_cgroup2("exec_outside_the_watched_subtree_is_not_delivered") {
        return;
    }
    let tree = CgroupTree::new("outside");
    tree.mkdir("pod/ctr");
    tree.mkdir("other/ctr");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();

    tree.sh("other/ctr", "/bin/true yw-outside");
    tree.sh("", "/bin/true yw-outside-root"); // the parent of the watched cgroup
    tree.sh("pod/ctr", "/bin/true yw-inside");
    let mut events = until(&mut rx, |e| has_arg(e, "yw-inside")).await;
    events.extend(drain(&mut rx, Duration::from_millis(300)).await);
    assert!(
        events.iter().all(|e| e.watched_cgroup_id == tree.id("pod")
            && !e.argv.iter().any(|a| a.starts_with("yw-outside"))),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_created_after_the_watch_is_seen_from_its_first_exec() {
    if !require::root_and_cgroup2("container_created_after_the_watch_is_seen_from_its_first_exec") {
        return;
    }
    let tree = CgroupTree::new("late");
    let (pod, _) = k8s_layout();
    tree.mkdir(&pod);
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id(&pod)).unwrap();

    // An ephemeral debug container: a new container cgroup under the watched pod.
    let debug = format!("{pod}/cri-containerd-{}.scope", "e".repeat(64));
    tree.mkdir(&debug);
    let mut child = tree
        .command_in(&debug, "/bin/sh")
        .args(["-c", "/bin/true yw-late; true"])
        .spawn()
        .unwrap();
    let sh_pid = child.id();
    assert!(child.wait().unwrap().success());
    let events = until(&mut rx, |e| has_arg(e, "yw-late")).await;
    let first = &events[0];
    assert_eq!(
        (first.pid, first.filename.as_str()),
        (sh_pid, "/bin/sh"),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e.cgroup_id == tree.id(&debug) && e.watched_cgroup_id == tree.id(&pod))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwatch_stops_delivery() {
    if !require::root_and_cgroup2("unwatch_stops_delivery") {
        return;
    }
    let tree = CgroupTree::new("unwatch");
    tree.mkdir("a");
    tree.mkdir("b");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    let watch = sensor.watch_set();
    watch.watch(tree.id("a")).unwrap();
    watch.watch(tree.id("b")).unwrap();
    tree.sh("a", "/bin/true yw-before");
    until(&mut rx, |e| has_arg(e, "yw-before")).await;

    watch.unwatch(tree.id("a")).unwrap();
    watch.unwatch(tree.id("a")).unwrap(); // idempotent
    assert_eq!(watch.ids(), vec![tree.id("b")]);
    tree.sh("a", "/bin/true yw-after");
    tree.sh("b", "/bin/true yw-sync"); // still watched: marks the point after "a"'s exec
    let mut events = until(&mut rx, |e| has_arg(e, "yw-sync")).await;
    events.extend(drain(&mut rx, Duration::from_millis(300)).await);
    assert!(
        events.iter().all(|e| !has_arg(e, "yw-after")),
        "{events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_and_many_arguments_are_cut_and_flagged() {
    if !require::root_and_cgroup2("long_and_many_arguments_are_cut_and_flagged") {
        return;
    }
    let tree = CgroupTree::new("args");
    tree.mkdir("pod");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();

    let long = "x".repeat(600);
    let status = tree
        .command_in("pod", "/bin/true")
        .args(["yw-long", &long])
        .status()
        .unwrap();
    assert!(status.success());
    let ev = until(&mut rx, |e| has_arg(e, "yw-long"))
        .await
        .pop()
        .unwrap();
    assert!(ev.args_truncated);
    assert_eq!(ev.argv[0], "/bin/true");
    // 512 bytes in all: "/bin/true\0yw-long\0" is 18, the rest is the cut argument.
    assert_eq!(ev.argv[2], "x".repeat(512 - 18));

    let many: Vec<String> = (0..20).map(|i| format!("yw-many-{i}")).collect();
    let status = tree
        .command_in("pod", "/bin/true")
        .args(&many)
        .status()
        .unwrap();
    assert!(status.success());
    let ev = until(&mut rx, |e| has_arg(e, "yw-many-0"))
        .await
        .pop()
        .unwrap();
    assert_eq!(ev.argv.len(), youwatch_common::limits::MAX_ARGS);
    assert!(ev.args_truncated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlling_tty_is_reported() {
    if !require::root_and_cgroup2("controlling_tty_is_reported") {
        return;
    }
    let script_ok = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok();
    if !require::runnable(
        "controlling_tty_is_reported",
        script_ok,
        "needs `script` (util-linux)",
    ) {
        return;
    }
    let tree = CgroupTree::new("tty");
    tree.mkdir("pod");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("pod")).unwrap();
    // script(1) runs the command on a new pseudo-terminal, as `kubectl exec -t` does.
    let status = tree
        .command_in("pod", "script")
        .args(["-qec", "/bin/true yw-tty", "/dev/null"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let ev = until(&mut rx, |e| has_arg(e, "yw-tty"))
        .await
        .pop()
        .unwrap();
    // Unix98 pseudo-terminals have major 136..=143.
    let major = (ev.tty >> 8) & 0xfff;
    assert!(
        (136..=143).contains(&major),
        "tty {:#x} (major {major}) is not a pts",
        ev.tty
    );
}

/// Runs 10,000 execs in a watched cgroup and checks delivered + lost == executed, exactly.
async fn burst(ring_buffer_bytes: u32, read_late: bool) -> (usize, SensorCounters) {
    const EXECS: u64 = 10_000;
    let tree = CgroupTree::new("burst");
    tree.mkdir("pod/ctr");
    let (sensor, mut rx) = sensor(ring_buffer_bytes, 64);
    sensor.watch_set().watch(tree.id("pod")).unwrap();

    let script = format!("i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done");
    let run = {
        let mut cmd = tree.command_in("pod/ctr", "/bin/sh");
        cmd.args(["-c", &script]);
        tokio::task::spawn_blocking(move || cmd.status())
    };
    let mut delivered = Vec::new();
    if !read_late {
        let reader = async {
            while let Some(ev) = rx.recv().await {
                delivered.push(ev);
            }
        };
        // Read while the burst runs; stop reading once it is over and the stream is quiet.
        tokio::select! { _ = reader => {}, _ = async { run_done(run).await } => {} }
    } else {
        run_done(run).await;
    }
    // Detaching lets the reader drain the ring and then close the channel: read to the end.
    let counters = sensor.counters().unwrap();
    let metrics = scrape(&sensor);
    assert!(
        metrics.contains(&format!(
            "youwatch_exec_events_lost_total {}",
            counters.ringbuf_full
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "youwatch_exec_events_matched_total {}",
            counters.matched
        )),
        "{metrics}"
    );
    assert!(metrics.contains("youwatch_watched_cgroups 1"), "{metrics}");
    sensor.detach();
    let rest = async {
        while let Some(ev) = rx.recv().await {
            delivered.push(ev);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), rest)
        .await
        .expect("channel closes after detach");
    let executed = EXECS + 1; // the sh itself, then every /bin/true (the loop uses builtins)
    assert!(
        delivered
            .iter()
            .all(|e| e.watched_cgroup_id == tree.id("pod"))
    );
    assert_eq!(
        counters.matched, executed,
        "every exec in the subtree is counted: {counters:?}"
    );
    assert_eq!(
        delivered.len() as u64 + counters.ringbuf_full,
        executed,
        "delivered {} + lost {} must equal executed {executed}",
        delivered.len(),
        counters.ringbuf_full
    );
    (delivered.len(), counters)
}

/// The sensor's metrics in Prometheus text format, as a scrape would see them.
fn scrape(sensor: &ExecSensor) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    sensor.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

async fn run_done(run: tokio::task::JoinHandle<std::io::Result<std::process::ExitStatus>>) {
    let status = run.await.unwrap().unwrap();
    assert!(status.success(), "burst script: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_of_10000_execs_is_accounted_exactly() {
    if !require::root_and_cgroup2("burst_of_10000_execs_is_accounted_exactly") {
        return;
    }
    let (delivered, counters) = burst(youwatch_common::limits::DEFAULT_RING_BYTES, false).await;
    eprintln!(
        "default ring: delivered {delivered}, lost {}",
        counters.ringbuf_full
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_into_a_full_ring_counts_every_loss() {
    if !require::root_and_cgroup2("burst_into_a_full_ring_counts_every_loss") {
        return;
    }
    // 64 KiB holds ~20 events and nobody reads during the burst: most are lost, all counted.
    let (delivered, counters) = burst(64 << 10, true).await;
    assert!(
        counters.ringbuf_full > 0,
        "the small ring must overflow: {counters:?}"
    );
    eprintln!(
        "small ring: delivered {delivered}, lost {}",
        counters.ringbuf_full
    );
}

/// The reader drains on a timer while events flow and sleeps in poll once they stop; the
/// kernel must then wake it (no lost wake-up), and the program's run statistics are exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_reader_is_woken_and_program_statistics_are_exported() {
    if !require::root_and_cgroup2("idle_reader_is_woken_and_program_statistics_are_exported") {
        return;
    }
    // Kernel-wide while the fd is open: the program's run count and time are kept.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let tree = CgroupTree::new("idle");
    tree.mkdir("ctr");
    let (sensor, mut rx) = sensor(1 << 20, 1024);
    sensor.watch_set().watch(tree.id("ctr")).unwrap();
    for round in 0..5 {
        // A short busy spell, then quiet well past the reader's busy rounds (~1 ms).
        let arg = format!("yw-idle-{round}");
        tree.sh("ctr", &format!("/bin/true {arg}-a; /bin/true {arg}"));
        until(&mut rx, |e| has_arg(e, &arg)).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = sensor.program_stats().expect("attached");
    assert!(stats.runs >= 10 && !stats.run_time.is_zero(), "{stats:?}");
    let metrics = scrape(&sensor);
    for name in [
        "youwatch_exec_program_runs_total ",
        "youwatch_exec_program_run_seconds_total ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
}
