//! The file follower under every kind of rotation, and resuming after `kill -9`.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use youwatch_agent::tail::{FollowOptions, Follower, StartAt, TailMetrics};

fn options(path: &Path, cursor: Option<PathBuf>) -> FollowOptions {
    let mut opts = FollowOptions::new(path);
    opts.cursor_file = cursor;
    opts.start_at = StartAt::Beginning;
    opts.poll_interval = Duration::from_millis(50);
    opts.rotate_grace = Duration::from_millis(150);
    opts.read_chunk_bytes = 4096;
    opts
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

/// The next batch's lines (committed), if one arrives within `wait`.
fn next_lines(f: &mut Follower, wait: Duration) -> Option<Vec<String>> {
    let batch = f.next_batch(wait).unwrap();
    let end = batch.end()?;
    let lines = batch
        .into_iter()
        .map(|l| String::from_utf8(l.bytes.to_vec()).unwrap())
        .collect();
    f.commit(end).unwrap();
    Some(lines)
}

/// Reads until `want` lines arrived (or 10 s passed), committing after each batch.
fn collect(f: &mut Follower, want: usize) -> Vec<String> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while out.len() < want && Instant::now() < deadline {
        out.extend(next_lines(f, Duration::from_millis(100)).unwrap_or_default());
    }
    out
}

/// Reads until nothing more arrives for half a second.
fn drain(f: &mut Follower) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(lines) = next_lines(f, Duration::from_millis(500)) {
        out.extend(lines);
    }
    out
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

/// Nothing more arrives within `wait`.
fn assert_quiet(f: &mut Follower, wait: Duration) {
    let batch = f.next_batch(wait).unwrap();
    assert!(batch.is_empty(), "unexpected {} bytes", batch.len_bytes());
}

#[test]
fn partial_line_waits_for_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, "first\nsec");
    let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 1), ["first"]);
    assert_quiet(&mut f, Duration::from_millis(200));
    append(&log, "ond\n");
    assert_eq!(collect(&mut f, 1), ["second"]);
}

#[test]
fn start_at_end_skips_history_and_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, "old\nhalf of a li");
    let mut opts = options(&log, None);
    opts.start_at = StartAt::End;
    let mut f = Follower::open(opts, TailMetrics::default()).unwrap();
    append(&log, "ne\nnew\n");
    assert_eq!(collect(&mut f, 1), ["new"]);
}

#[test]
fn rename_rotation_reads_the_old_file_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &lines(0..10));
    let metrics = TailMetrics::default();
    let mut f = Follower::open(options(&log, None), metrics.clone()).unwrap();
    assert_eq!(collect(&mut f, 10), expected(0..10));
    // logrotate renames; the writer keeps its descriptor and writes a little more to the old
    // file before it reopens.
    let rotated = dir.path().join("audit.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let mut old = OpenOptions::new().append(true).open(&rotated).unwrap();
    append(&log, &lines(12..15));
    old.write_all(lines(10..12).as_bytes()).unwrap();
    assert_eq!(collect(&mut f, 5), expected(0..15)[10..]);
    assert_eq!(metrics.rotations.get(), 1);
}

#[test]
fn copytruncate_starts_over_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &lines(0..5));
    let metrics = TailMetrics::default();
    let mut f = Follower::open(options(&log, None), metrics.clone()).unwrap();
    assert_eq!(collect(&mut f, 5), expected(0..5));
    std::fs::copy(&log, dir.path().join("audit.log.1")).unwrap();
    File::options()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    // Regrow past the old length before the follower looks: only the fingerprint tells.
    append(&log, &lines(100..110));
    assert_eq!(collect(&mut f, 10), expected(100..110));
    assert_eq!(metrics.truncations.get(), 1);
}

#[test]
fn delete_and_recreate_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &lines(0..3));
    let metrics = TailMetrics::default();
    let mut f = Follower::open(options(&log, None), metrics.clone()).unwrap();
    assert_eq!(collect(&mut f, 3), expected(0..3));
    std::fs::remove_file(&log).unwrap();
    assert_quiet(&mut f, Duration::from_millis(200));
    append(&log, &lines(3..6));
    assert_eq!(collect(&mut f, 3), expected(3..6));
    assert_eq!(metrics.rotations.get(), 1);
}

/// Points the symlink `link` at `target` in one step (a new link renamed over it).
fn repoint(link: &Path, target: &Path) {
    let mut tmp = link.as_os_str().to_owned();
    tmp.push(".swap");
    std::os::unix::fs::symlink(target, &tmp).unwrap();
    std::fs::rename(&tmp, link).unwrap();
}

#[test]
fn symlink_swap_follows_the_new_target() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let link = dir.path().join("current.log");
    append(&a, &lines(0..4));
    std::os::unix::fs::symlink(&a, &link).unwrap();
    let mut f = Follower::open(options(&link, None), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 4), expected(0..4));
    append(&b, &lines(4..8));
    repoint(&link, &b);
    assert_eq!(collect(&mut f, 4), expected(4..8));
    append(&b, &lines(8..9));
    assert_eq!(collect(&mut f, 1), expected(8..9));
}

#[test]
fn a_symlink_target_created_before_the_swap_waits_its_turn() {
    // Targets named like rotations (`audit.log-000001`), swapped about one grace period
    // apart: the follower leaves the first target when the third has just been created,
    // empty and not linked yet. It must go on in the second (not take the third for a
    // rotated file never read, follow it, and once the path names it leave the second
    // unread), then in the third.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let target = |i: usize| dir.path().join(format!("audit.log-{i:06}"));
    let grace = Duration::from_secs(1);
    append(&target(0), &lines(0..4));
    let last_write = Instant::now();
    std::os::unix::fs::symlink(target(0), &log).unwrap();
    let mut opts = options(&log, None);
    opts.rotate_grace = grace;
    let mut f = Follower::open(opts, TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 4), expected(0..4));
    repoint(&log, &target(1));
    append(&target(1), &lines(4..8));
    assert_quiet(&mut f, Duration::from_millis(50)); // the second target is queued
    // The next swap begins shortly before the first target has been quiet for the grace
    // period, and ends after the follower has moved on.
    std::thread::sleep((last_write + grace * 8 / 10).saturating_duration_since(Instant::now()));
    File::create(target(2)).unwrap();
    let mut got = Vec::new();
    while last_write.elapsed() < grace * 13 / 10 {
        got.extend(next_lines(&mut f, Duration::from_millis(50)).unwrap_or_default());
    }
    repoint(&log, &target(2));
    append(&target(2), &lines(8..10));
    got.extend(collect(&mut f, 6 - got.len()));
    assert_eq!(got, expected(4..10));
}

#[test]
fn polling_alone_follows_too() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let mut opts = options(&log, None);
    opts.inotify = false;
    let mut f = Follower::open(opts, TailMetrics::default()).unwrap();
    assert!(!f.uses_inotify());
    append(&log, &lines(0..3));
    assert_eq!(collect(&mut f, 3), expected(0..3));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&log, &lines(3..5));
    assert_eq!(collect(&mut f, 2), expected(3..5));
}

#[test]
fn over_long_lines_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let long = "x".repeat(10_000);
    // One long line inside a read, one spanning several reads, one unterminated yet.
    append(
        &log,
        &format!("a\n{}\nb\n{}\nc\n", &long[..5000], long.repeat(3)),
    );
    let mut opts = options(&log, None);
    opts.max_line_bytes = 4000;
    let metrics = TailMetrics::default();
    let mut f = Follower::open(opts, metrics.clone()).unwrap();
    assert_eq!(collect(&mut f, 3), ["a", "b", "c"]);
    assert_eq!(metrics.long_lines_skipped.get(), 2);
    append(&log, &long);
    append(&log, "\nd\n");
    assert_eq!(collect(&mut f, 1), ["d"]);
    assert_eq!(metrics.long_lines_skipped.get(), 3);
}

#[test]
fn cursor_resumes_exactly_even_in_a_rotated_away_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let cursor = dir.path().join("state/audit.cursor");
    append(&log, &lines(0..5));
    {
        let mut f =
            Follower::open(options(&log, Some(cursor.clone())), TailMetrics::default()).unwrap();
        assert_eq!(collect(&mut f, 5), expected(0..5));
    }
    // While we are down: more lines, a rename rotation, lines in the new file.
    append(&log, &lines(5..8));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&log, &lines(8..11));
    let mut f =
        Follower::open(options(&log, Some(cursor.clone())), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 6), expected(5..11));
    drop(f);
    // Restart with nothing new: nothing is handed out again.
    let mut f = Follower::open(options(&log, Some(cursor)), TailMetrics::default()).unwrap();
    assert_quiet(&mut f, Duration::from_millis(300));
}

/// logrotate's copytruncate: copy `log` to `rotated` (after shifting `rotated` to `.2`), then
/// truncate it in place.
fn copytruncate(log: &Path, rotated: &Path) {
    if rotated.exists() {
        let mut older = rotated.as_os_str().to_owned();
        older.push(".older");
        std::fs::rename(rotated, older).unwrap();
    }
    std::fs::copy(log, rotated).unwrap();
    File::options()
        .write(true)
        .open(log)
        .unwrap()
        .set_len(0)
        .unwrap();
}

/// Every line of `got` once, in any order, and nothing else.
fn assert_same_set(mut got: Vec<String>, want: Vec<String>) {
    got.sort();
    let mut want = want;
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn copytruncate_while_behind_reads_the_rest_from_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &lines(0..10));
    let metrics = TailMetrics::default();
    let mut f = Follower::open(options(&log, None), metrics.clone()).unwrap();
    assert_eq!(collect(&mut f, 10), expected(0..10));
    append(&log, &lines(10..20));
    copytruncate(&log, &dir.path().join("audit.log.1"));
    append(&log, &lines(100..105));
    let mut want = expected(10..20);
    want.extend(expected(100..105));
    assert_eq!(collect(&mut f, 15), want);
    assert_eq!(metrics.truncations.get(), 1);
    assert_quiet(&mut f, Duration::from_millis(300));
}

#[test]
fn truncated_and_regrown_mid_file_repeats_nothing() {
    // Truncated while we are in the middle of the file, and regrown past our offset before we
    // read on: its first bytes tell, so nothing of the new contents is cut or read twice.
    for copy_visible in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        append(&log, &lines(0..2000));
        let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
        let mut got = collect(&mut f, 1); // one read's worth
        let read = got.len();
        assert!(read < 2000, "still in the middle of the file");
        let copy = match copy_visible {
            true => dir.path().join("audit.log.1"),
            false => dir.path().join("moved-elsewhere"),
        };
        copytruncate(&log, &copy);
        append(
            &log,
            &(0..3000).map(|i| format!("new {i}\n")).collect::<String>(),
        );
        got.extend(drain(&mut f));
        let mut want: Vec<String> = (0..3000).map(|i| format!("new {i}")).collect();
        // Without the copy, what we had not read yet is gone with the truncation.
        want.extend(expected(0..if copy_visible { 2000 } else { read }));
        assert_same_set(got, want);
    }
}

#[test]
fn what_was_read_ahead_survives_a_truncation() {
    // The consumer is busy with a batch; meanwhile the follower reads ahead. A truncation
    // (no copy visible) then takes nothing it had read.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    append(&log, &lines(0..2000));
    let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
    let mut got = collect(&mut f, 1);
    f.read_ahead().unwrap();
    copytruncate(&log, &dir.path().join("moved-elsewhere"));
    append(&log, &lines(5000..5010));
    got.extend(drain(&mut f));
    let mut want = expected(0..2000);
    want.extend(expected(5000..5010));
    assert_eq!(got, want);
}

#[test]
fn rename_then_copytruncate_within_the_grace_period_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (one, two) = (
        dir.path().join("audit.log.1"),
        dir.path().join("audit.log.2"),
    );
    append(&log, &lines(0..5));
    let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 5), expected(0..5));
    std::fs::rename(&log, &one).unwrap();
    append(&one, &lines(5..7)); // the writer, before it reopens
    append(&log, &lines(7..20)); // ... and after
    let mut got = collect(&mut f, 2); // the old file's last lines; the new one is queued
    // Rotated again while the old file is in its grace period: this time by copytruncate.
    std::fs::rename(&one, &two).unwrap();
    copytruncate(&log, &one);
    append(&log, &lines(20..25));
    got.extend(collect(&mut f, 18));
    assert_eq!(got, expected(5..25));
}

#[test]
fn rotations_while_behind_lose_no_file() {
    // The path moves on twice (rename, then copytruncate and delete of the new file) before
    // the follower looks again: every file is still read, once.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let n = |i: usize| dir.path().join(format!("audit.log.{i}"));
    append(&log, &lines(0..10));
    let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 10), expected(0..10));
    std::fs::rename(&log, n(1)).unwrap();
    append(&n(1), &lines(10..12));
    File::create(&log).unwrap();
    let mut got = collect(&mut f, 2);
    assert_quiet(&mut f, Duration::from_millis(50)); // notices the new file, empty yet
    append(&log, &lines(12..20));
    std::fs::rename(n(1), n(2)).unwrap();
    copytruncate(&log, &n(1));
    append(&log, &lines(20..25));
    std::fs::remove_file(&log).unwrap();
    append(&log, &lines(25..28));
    std::fs::rename(&log, n(3)).unwrap();
    append(&log, &lines(28..30));
    got.extend(collect(&mut f, 18));
    assert_same_set(got, expected(10..30));
    assert_quiet(&mut f, Duration::from_millis(300));
}

#[test]
fn copytruncate_of_a_file_queued_before_its_first_line() {
    // The new file is queued empty while the renamed one is in its grace period, then
    // written and copytruncated before the follower looks again: its first bytes were never
    // seen, so only the copy showing up among the rotated files tells. Both are read, once.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let n = |i: usize| dir.path().join(format!("audit.log.{i}"));
    append(&log, &lines(0..10));
    let mut f = Follower::open(options(&log, None), TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 10), expected(0..10));
    std::fs::rename(&log, n(1)).unwrap();
    File::create(&log).unwrap();
    append(&n(1), &lines(10..12)); // the writer, before it reopens
    let mut got = collect(&mut f, 2);
    assert_quiet(&mut f, Duration::from_millis(50)); // the new file is queued, empty
    append(&log, &lines(12..20));
    std::fs::rename(n(1), n(2)).unwrap();
    copytruncate(&log, &n(1));
    append(&log, &lines(20..25));
    got.extend(collect(&mut f, 13));
    assert_same_set(got, expected(10..25));
    assert_quiet(&mut f, Duration::from_millis(300));
}

#[test]
fn cursor_resumes_in_the_copy_after_copytruncate_while_down() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let cursor = dir.path().join("audit.cursor");
    append(&log, &lines(0..5));
    {
        let mut f =
            Follower::open(options(&log, Some(cursor.clone())), TailMetrics::default()).unwrap();
        assert_eq!(collect(&mut f, 5), expected(0..5));
    }
    append(&log, &lines(5..10));
    copytruncate(&log, &dir.path().join("audit.log.1"));
    append(&log, &lines(100..103));
    let mut f = Follower::open(options(&log, Some(cursor)), TailMetrics::default()).unwrap();
    let mut want = expected(5..10);
    want.extend(expected(100..103));
    assert_eq!(collect(&mut f, 8), want);
    assert_quiet(&mut f, Duration::from_millis(300));
}

#[test]
fn a_first_run_stopped_before_its_first_commit_resumes_where_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let cursor = dir.path().join("audit.cursor");
    append(&log, &lines(0..5));
    let mut opts = options(&log, Some(cursor.clone()));
    opts.start_at = StartAt::End;
    drop(Follower::open(opts.clone(), TailMetrics::default()).unwrap());
    // While it is down: more lines, a rename rotation, lines in the new file.
    append(&log, &lines(5..8));
    std::fs::rename(&log, dir.path().join("audit.log.1")).unwrap();
    append(&log, &lines(8..10));
    let mut f = Follower::open(opts, TailMetrics::default()).unwrap();
    assert_eq!(collect(&mut f, 5), expected(5..10));
}

// ---- kill -9 ------------------------------------------------------------------------------

const CHILD_ENV: &str = "YOUWATCH_TAIL_CHILD_DIR";

/// The consumer run as a child process by `kill_9_loses_nothing_and_repeats_nothing`:
/// appends every line to `out`, and saves the length of `out` with the cursor so a restart
/// rolls `out` back to exactly what the cursor covers. Does nothing in a normal test run.
#[test]
fn tail_child_consumer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    if std::env::var_os("YOUWATCH_TAIL_CHILD_LOG").is_some() {
        let _ = youwatch_agent::logging::init(&youwatch_agent::logging::LogArgs {
            log_format: youwatch_agent::logging::LogFormat::Text,
            log_level: "debug".into(),
        });
    }
    let mut f = Follower::open(
        options(&dir.join("audit.log"), Some(dir.join("cursor"))),
        TailMetrics::default(),
    )
    .unwrap();
    let mut out = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(dir.join("out"))
        .unwrap();
    let committed = f.committed_consumer();
    out.set_len(committed).unwrap();
    let mut written = committed;
    use std::io::Seek;
    out.seek(std::io::SeekFrom::Start(written)).unwrap();
    loop {
        let batch = f.next_batch(Duration::from_millis(100)).unwrap();
        let Some(end) = batch.end() else { continue };
        let mut done = false;
        for line in batch {
            // One write per line, so a kill can land between any two.
            out.write_all(line.bytes).unwrap();
            out.write_all(b"\n").unwrap();
            written += line.bytes.len() as u64 + 1;
            done |= line.bytes == b"END";
        }
        f.commit_with(end, written).unwrap();
        if done {
            return;
        }
    }
}

fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tail_child_consumer", "--nocapture", "--quiet"])
        .env(CHILD_ENV, dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let total = 6000;
    let mut child = spawn_child(dir.path());
    let mut kills = 0;
    let mut next = 0;
    let mut rotations = 0;
    while next < total {
        // Bursts of lines, a rotation now and then, and a SIGKILL at varying points.
        let burst = 150 + (next * 7919) % 250;
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        for i in next..(next + burst).min(total) {
            f.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        next = (next + burst).min(total);
        std::thread::sleep(Duration::from_millis(5 + (next as u64 % 20)));
        if next % 3 == 0 {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            kills += 1;
            if kills % 2 == 0 {
                // Rotate while the consumer is down.
                std::fs::rename(&log, dir.path().join(format!("audit.log.{rotations}"))).unwrap();
                rotations += 1;
            }
            child = spawn_child(dir.path());
        } else if next % 5 == 0 {
            std::fs::rename(&log, dir.path().join(format!("audit.log.{rotations}"))).unwrap();
            rotations += 1;
        }
    }
    append(&log, "END\n");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "consumer failed: {status}");
            break;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("consumer did not reach END");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(kills >= 3, "only {kills} kills");
    let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
    let mut want: Vec<String> = expected(0..total);
    want.push("END".into());
    let got: Vec<&str> = out.lines().collect();
    let nums: Vec<usize> = got
        .iter()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    let gaps: Vec<(usize, usize)> = nums
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    eprintln!("gaps {gaps:?}");
    assert_eq!(
        got.len(),
        want.len(),
        "lines lost or repeated: {:?} .. {:?}",
        &got[..3.min(got.len())],
        &got[got.len().saturating_sub(3)..]
    );
    assert!(got.iter().zip(&want).all(|(g, w)| g == w), "order differs");
    eprintln!(
        "{kills} kills, {rotations} rotations, {} lines exactly once",
        got.len()
    );
}
