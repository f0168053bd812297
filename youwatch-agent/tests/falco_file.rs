//! Falco's file_output followed like `tail -F`: every JSON line becomes a detection (the pod
//! from output_fields), bad lines are counted and skipped, rotation loses nothing, and a
//! restart resumes after the last alert handed over (no loss, no repeat).

use std::{io::Write, path::Path, time::Duration};

use tokio::sync::mpsc;
use youwatch_agent::{
    detection::{Detection, Origin, Priority, Subject},
    sensor::falco::{FalcoConfig, FalcoFileHandle, FalcoMetrics, FileConfig},
    tail::StartAt,
    telemetry::alert::{AlertMetrics, DetectionSender},
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

fn start(log: &Path, state: &Path) -> (FalcoFileHandle, mpsc::Receiver<Detection>, FalcoMetrics) {
    let config = FalcoConfig {
        file: FileConfig {
            path: log.to_owned(),
            start_at: StartAt::Beginning,
            poll_interval: Duration::from_millis(50),
            rotate_grace: Duration::from_millis(200),
            ..FileConfig::default()
        },
        min_priority: Priority::Warning,
        ..FalcoConfig::default()
    };
    let metrics = FalcoMetrics::default();
    let input = config
        .file_input(state, metrics.clone())
        .expect("a path is set");
    let (sender, rx) = DetectionSender::channel(64, &AlertMetrics::default());
    (input.spawn(sender).unwrap(), rx, metrics)
}

fn next(rx: &mut mpsc::Receiver<Detection>) -> Detection {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match rx.try_recv() {
            Ok(d) => return d,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("no detection: {e}"),
        }
    }
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
    handle.stop();
    assert!(rx.try_recv().is_err());

    // A restart resumes after the last alert handed over.
    append(&log, &[alert("While stopped", "Critical", "juice-shop-1")]);
    let (handle, mut rx, _) = start(&log, dir.path());
    assert_eq!(next(&mut rx).rule, "While stopped");
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.try_recv().is_err(), "nothing read twice");
    handle.stop();
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
    let (sender, _rx) = DetectionSender::channel(1, &AlertMetrics::default());
    let err = input
        .spawn(sender)
        .err()
        .expect("a directory is not a log file")
        .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
}
