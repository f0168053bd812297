//! The rotator: logrotate's moves on the audit log while the writer writes, on a schedule.
//!
//! - rename: `audit.log.N` → `.N+1`, `audit.log` → `audit.log.1`, then the writer reopens;
//! - copytruncate: the same shift, `audit.log` copied to `audit.log.1` to its end, then
//!   truncated in place (the writer keeps its descriptor); entries written between the end of
//!   the copy and the truncation are in neither file: the mechanism's own window, recorded;
//! - delete: `audit.log` removed, then the writer reopens (creating it);
//! - symlink swap: `audit.log` is a symlink; a new target `audit.log-NNNNNN` is created, the
//!   link replaced atomically, then the writer reopens.
//!
//! The writer reopens `reopen_delay` after a move, as nginx does once `postrotate` signals it:
//! until then it writes the moved (or deleted) file.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{entries, writer::WriterHandle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rotation {
    Rename,
    CopyTruncate,
    Delete,
    SymlinkSwap,
}

impl Rotation {
    pub fn name(self) -> &'static str {
        match self {
            Rotation::Rename => "rename",
            Rotation::CopyTruncate => "copytruncate",
            Rotation::Delete => "delete",
            Rotation::SymlinkSwap => "symlink",
        }
    }
}

/// One move of a schedule, `after` the previous one.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    pub after: Duration,
    pub rotation: Rotation,
}

pub fn step(after_ms: u64, rotation: Rotation) -> Step {
    Step {
        after: Duration::from_millis(after_ms),
        rotation,
    }
}

/// Entries `lo..=hi` were written while a copytruncate could lose them: after the end of
/// the copy, up to the truncation (`hi` is read just after it, so it may include a few
/// entries written after: an upper bound).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub lo: u64,
    pub hi: u64,
}

impl Window {
    pub fn contains(&self, n: u64) -> bool {
        (self.lo..=self.hi).contains(&n)
    }
}

#[derive(Clone, Debug, Default)]
pub struct RotatorStats {
    /// Each move, with the number of entries written when it was made.
    pub done: Vec<(Rotation, u64)>,
    pub windows: Vec<Window>,
}

/// The files of one run: the followed path and its rotations.
#[derive(Clone, Debug)]
pub struct LogFiles {
    pub path: PathBuf,
    pub symlinked: bool,
    /// Rotated files kept (older ones are deleted, as logrotate's `rotate N`).
    pub keep: usize,
}

impl LogFiles {
    /// Creates the audit log in `dir` (as a symlink to its first target if `symlinked`).
    pub fn create(dir: &Path, symlinked: bool, keep: usize) -> LogFiles {
        let files = LogFiles {
            path: dir.join("audit.log"),
            symlinked,
            keep,
        };
        if symlinked {
            File::create(files.target(0)).unwrap();
            std::os::unix::fs::symlink(files.target_name(0), &files.path).unwrap();
        } else {
            File::create(&files.path).unwrap();
        }
        files
    }

    fn numbered(&self, i: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{i}"));
        p.into()
    }

    fn target_name(&self, k: usize) -> String {
        format!("audit.log-{k:06}")
    }

    fn target(&self, k: usize) -> PathBuf {
        self.path.with_file_name(self.target_name(k))
    }

    /// `audit.log.N` → `.N+1` (the oldest kept is replaced).
    fn shift(&self) {
        for i in (1..self.keep).rev() {
            let from = self.numbered(i);
            if from.exists() {
                std::fs::rename(&from, self.numbered(i + 1)).unwrap();
            }
        }
    }
}

pub struct Rotator {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    stats: Arc<Mutex<RotatorStats>>,
}

impl Rotator {
    /// Runs `schedule` over and over until stopped.
    pub fn start(
        files: LogFiles,
        writer: WriterHandle,
        schedule: Vec<Step>,
        reopen_delay: Duration,
    ) -> Rotator {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(RotatorStats::default()));
        let thread = std::thread::Builder::new()
            .name("soak-rotator".into())
            .spawn({
                let (stop, stats) = (stop.clone(), stats.clone());
                move || {
                    let mut mover = Mover {
                        files,
                        writer,
                        reopen_delay,
                        target: 0,
                    };
                    if schedule.is_empty() {
                        return;
                    }
                    for step in schedule.iter().cycle() {
                        if !sleep_unless(&stop, step.after) {
                            return;
                        }
                        let at = mover.writer.written();
                        let window = mover.rotate(step.rotation);
                        let mut s = stats.lock().unwrap();
                        s.done.push((step.rotation, at));
                        s.windows.extend(window);
                    }
                }
            })
            .expect("starting the rotator");
        Rotator {
            stop,
            thread,
            stats,
        }
    }

    pub fn stop(self) -> RotatorStats {
        self.stop.store(true, Ordering::Release);
        self.thread.join().expect("the rotator panicked");
        self.stats.lock().unwrap().clone()
    }
}

/// Sleeps `d` in small steps; false once `stop` is set.
fn sleep_unless(stop: &AtomicBool, d: Duration) -> bool {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if stop.load(Ordering::Acquire) {
            return false;
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    !stop.load(Ordering::Acquire)
}

struct Mover {
    files: LogFiles,
    writer: WriterHandle,
    reopen_delay: Duration,
    target: usize,
}

impl Mover {
    fn rotate(&mut self, rotation: Rotation) -> Option<Window> {
        let path = self.files.path.clone();
        match rotation {
            Rotation::Rename => {
                self.files.shift();
                std::fs::rename(&path, self.files.numbered(1)).unwrap();
                self.reopen_later();
                None
            }
            Rotation::CopyTruncate => {
                self.files.shift();
                let copy = self.files.numbered(1);
                let before = self.writer.written();
                // Truncate right after the copy, as logrotate does: the window between the
                // two is the mechanism's own.
                std::fs::copy(&path, &copy).unwrap();
                File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_len(0)
                    .unwrap();
                let hi = self.writer.written();
                let last = last_entry(&copy);
                Some(Window {
                    lo: last.map_or(before, |n| n + 1),
                    hi,
                })
            }
            Rotation::Delete => {
                std::fs::remove_file(&path).unwrap();
                self.reopen_later();
                None
            }
            Rotation::SymlinkSwap => {
                assert!(self.files.symlinked, "symlink swap needs a symlinked log");
                self.target += 1;
                File::create(self.files.target(self.target)).unwrap();
                let tmp = path.with_file_name("audit.log.swap");
                std::os::unix::fs::symlink(self.files.target_name(self.target), &tmp).unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                if self.target > self.files.keep {
                    let _ =
                        std::fs::remove_file(self.files.target(self.target - self.files.keep - 1));
                }
                self.reopen_later();
                None
            }
        }
    }

    fn reopen_later(&self) {
        std::thread::sleep(self.reopen_delay);
        self.writer.reopen();
    }
}

/// The number of the last complete entry in `path`.
fn last_entry(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let from = len.saturating_sub(16 << 10);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail).ok()?;
    tail.split(|&b| b == b'\n')
        .rev()
        .find_map(entries::number_of_line)
}
