//! Exactly once, black box: the agent binary follows an audit log written at a steady rate
//! while it is rotated every way logrotate does (quickly in a row too) and the agent is
//! restarted with SIGTERM and `kill -9`; every entry must yield exactly one alert line — none
//! lost, none repeated — except that a `kill -9` may repeat the batch in flight (at most one
//! read of `read_chunk_bytes` of lines), and copytruncate loses what is written between its
//! copy and its truncation when we had not read it yet (counted apart, never asserted away:
//! every other loss fails the test).
//!
//! Needs root (the agent loads its eBPF sensor); fails under CI=true without it.
//! `cargo xtask bench soak` runs the same harness longer, on the release build, with figures.

mod support;

use std::{path::Path, sync::Mutex, time::Duration};

use support::{
    require,
    soak::{self, Figures, Scenario, agent::Stop, entries::Entries, scenarios},
};

/// Entries per second. The suite runs the debug build on a shared machine: a rate it keeps up
/// with, so the runs stay short (the bench runs the release build at 20,000/s).
const RATE: u64 = 5_000;
/// The follower's read size (`FollowOptions::read_chunk_bytes`'s default).
const READ_CHUNK: u64 = 128 << 10;

/// One agent at a time: they share two cores with everything else.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(scenario: &Scenario) -> Option<(Figures, tempfile::TempDir)> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    if !require::root_and_cgroup2(&scenario.name) {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = soak::run(
        Path::new(env!("CARGO_BIN_EXE_youwatch-agent")),
        dir.path(),
        scenario,
    );
    eprintln!("{}\n{f}", Figures::header());
    Some((f, dir))
}

/// Nothing lost outside copytruncate's own window, nothing repeated but what `kill -9`s may.
fn assert_exactly_once(f: &Figures, dir: &Path) {
    let why = || soak::describe_failure(dir, f);
    assert!(f.written > 0, "nothing written");
    assert!(f.lost.is_empty(), "entries lost:\n{}", why());
    assert_eq!(
        f.foreign_alerts,
        0,
        "alerts for entries never written:\n{}",
        why()
    );
    assert_eq!(
        f.failed_terms(),
        0,
        "a SIGTERM did not end in a clean exit:\n{}",
        why()
    );
    // A batch holds at most one read of lines, plus the line carried into it.
    let bound = READ_CHUNK / Entries::default_seed().len(0) as u64 + 1;
    let kills = f.count(Stop::Kill) + f.terms_during_startup();
    assert!(
        f.extra_alerts <= bound * kills as u64,
        "more repeated than {bound} per kill -9:\n{}",
        why()
    );
    assert!(
        f.max_repeats_after(Stop::Kill) <= bound,
        "one kill -9 repeated more than a batch ({bound}):\n{}",
        why()
    );
    // A SIGTERM drains: what it had read is alerted, the cursor saved after it.
    for (stop, repeats) in f.stops.iter().zip(&f.repeats_after) {
        if stop.how == Stop::Term && stop.status.success() {
            assert_eq!(*repeats, 0, "entries repeated after a SIGTERM:\n{}", why());
        }
    }
}

#[test]
fn every_rotation_and_quick_sequences_of_them() {
    for name in [
        "rename/cpt/delete/rename 0.67s",
        "rename, copytruncate 0.5s later",
        "symlink swap",
    ] {
        let mut scenario = scenarios::named(name, RATE, 8);
        scenario
            .schedule
            .iter_mut()
            .for_each(|s| s.after = s.after.min(Duration::from_secs(2)));
        let Some((f, dir)) = run(&scenario) else {
            return;
        };
        assert_exactly_once(&f, dir.path());
        assert_eq!(
            f.extra_alerts,
            0,
            "repeated without a restart:\n{}",
            soak::describe_failure(dir.path(), &f)
        );
    }
}

#[test]
fn kill_9_and_sigterm_restarts_during_rotations() {
    for name in [
        "rename+cpt, kill -9 & SIGTERM",
        "symlink, kill -9 & SIGTERM",
    ] {
        let scenario = scenarios::named(name, RATE, 12);
        let Some((f, dir)) = run(&scenario) else {
            return;
        };
        assert_exactly_once(&f, dir.path());
        assert!(
            f.count(Stop::Kill) >= 2 && f.count(Stop::Term) >= 2,
            "too few restarts: {f}"
        );
    }
}

#[test]
fn sigterm_during_a_backlog_saves_only_what_was_alerted() {
    let mut scenario = scenarios::named("backlog + SIGTERM", RATE, 6);
    scenario.backlog = 60_000;
    let Some((f, dir)) = run(&scenario) else {
        return;
    };
    assert_exactly_once(&f, dir.path());
    assert!(f.count(Stop::Term) >= 3, "too few restarts: {f}");
}
