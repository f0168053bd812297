//! Falco's file_output followed like `tail -F`: every JSON line becomes a detection (the pod
//! from output_fields), bad lines are counted and skipped, rotation loses nothing, and a
//! restart resumes after the last alert handed over (no loss, no repeat).

mod support;

use std::{io::Write, path::Path, time::Duration};

use support::bus::{self, TestListener};
use youwatch_agent::{
    detection::{Detection, Origin, Priority, Subject},
    inputs::falco::{FalcoConfig, FalcoMetrics, FileConfig},
    stage::StageHandle,
    tail::{FollowConfig, StartAt},
};

fn alert(rule: &str, priority: &str, pod: &str) -> String {
    format!(
        r#"{{"hostname":"n","output":"12:00:00.000000000: {priority} {rule} happened","output_fields":{{"k8s.ns.name":"shop","k8s.pod.name":"{pod}"}},"priority":"{priority}","rule":"{rule}","source":"syscall","tags":[],"time":"2024-05-01T12:00:00.000000000Z"}}"#
    )
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn start(log: &Path, state: &Path) -> (StageHandle, TestListener, FalcoMetrics) {
    let config = FalcoConfig {
        file: FileConfig {
            path: log.to_owned(),
            follow: FollowConfig {
                start_at: StartAt::Beginning,
                poll_interval: Duration::from_millis(50),
                rotate_grace: Duration::from_millis(200),
                ..FollowConfig::default()
            },
        },
        min_priority: Priority::Warning,
        ..FalcoConfig::default()
    };
    let metrics = FalcoMetrics::default();
    let input = config
        .file_input(state, metrics.clone())
        .expect("a path is set");
    let (bus, rx) = bus::single(64);
    (input.spawn(bus).unwrap(), rx, metrics)
}

fn next(rx: &mut TestListener) -> Detection {
    rx.next(Duration::from_secs(10))
}

/// Stops the input (it finishes its batch and saves the cursor).
fn stop(handle: StageHandle) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(handle.shutdown())
        .unwrap();
}

#[test]
fn follows_falco_file_output() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.json");
    append(
        &log,
        &[
            alert("Terminal shell in container", "Critical", "juice-shop-1"),
            "not json at all".to_owned(),
            alert("Quiet rule", "Notice", "juice-shop-1"),
            r#"{"rule":"r","priority":"Critical","output":"o","time":"2024-05-01T00:00:00Z","output_fields":{"k8s.ns.name":"shop","k8s.pod.name":"Not_A_Pod"}}"#.to_owned(),
            alert("Second", "Warning", "juice-shop-2"),
        ],
    );
    let (handle, mut rx, _metrics) = start(&log, dir.path());
    let d = next(&mut rx);
    assert_eq!(
        (d.rule.as_str(), d.origin),
        ("Terminal shell in container", Origin::Falco)
    );
    assert_eq!(d.output, "Terminal shell in container happened");
    let Subject::Pod(pod) = &d.subject else {
        panic!()
    };
    assert_eq!(pod.name, "juice-shop-1");
    // The bad line, the Notice (below min_priority) and the bad pod name are skipped.
    assert_eq!(next(&mut rx).rule, "Second");

    // Rotation: the file is renamed away and a new one takes its place.
    append(&log, &[alert("Before rotation", "Error", "juice-shop-1")]);
    std::fs::rename(&log, dir.path().join("events.json.1")).unwrap();
    append(&log, &[alert("After rotation", "Error", "juice-shop-1")]);
    assert_eq!(next(&mut rx).rule, "Before rotation");
    assert_eq!(next(&mut rx).rule, "After rotation");
    stop(handle);
    assert!(rx.try_recv().is_none());

    // A restart resumes after the last alert handed over.
    append(&log, &[alert("While stopped", "Critical", "juice-shop-1")]);
    let (handle, mut rx, _) = start(&log, dir.path());
    assert_eq!(next(&mut rx).rule, "While stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.try_recv().is_none(), "nothing read twice");
    stop(handle);
}

#[test]
fn off_without_a_path_and_named_when_unreadable() {
    let config = FalcoConfig::default();
    assert!(
        config
            .file_input(Path::new("/tmp"), FalcoMetrics::default())
            .is_none()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = FalcoConfig {
        file: FileConfig {
            path: dir.path().to_owned(),
            ..FileConfig::default()
        },
        ..FalcoConfig::default()
    };
    let input = config
        .file_input(dir.path(), FalcoMetrics::default())
        .unwrap();
    let (bus, _rx) = bus::single(1);
    let err = input
        .spawn(bus)
        .expect_err("a directory is not a log file")
        .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
