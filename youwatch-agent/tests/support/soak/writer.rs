//! The audit-log writer: appends numbered entries at a steady rate, one `write(2)` per entry
//! on a descriptor opened with `O_APPEND` (as libmodsecurity's serial log does), and keeps
//! writing the file it has open until told to reopen the path (nginx's reopen on SIGUSR1
//! after logrotate's `postrotate`).

use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::entries::Entries;

#[derive(Default)]
struct Shared {
    /// Entries whose write has returned.
    written: AtomicU64,
    reopen: AtomicBool,
    stop: AtomicBool,
    reopens: AtomicU64,
}

/// A running writer; cheap to clone (the rotator tells it to reopen).
#[derive(Clone)]
pub struct WriterHandle {
    shared: Arc<Shared>,
}

impl WriterHandle {
    /// Entries fully written so far (numbers `0..written`).
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// Reopen the path before the next entry (what the rotator's postrotate does).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Release);
    }

    pub fn reopens(&self) -> u64 {
        self.shared.reopens.load(Ordering::Relaxed)
    }
}

pub struct Writer {
    handle: WriterHandle,
    thread: JoinHandle<()>,
    started: Instant,
    burst: u64,
}

fn open(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("writer: opening {}: {e}", path.display()))
}

impl Writer {
    /// Starts writing: `burst` entries at once, then `rate` entries per second, to `path`.
    pub fn start(path: PathBuf, entries: Entries, rate: u64, burst: u64) -> Writer {
        let handle = WriterHandle {
            shared: Arc::new(Shared::default()),
        };
        let shared = handle.shared.clone();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("soak-writer".into())
            .spawn(move || {
                let mut file = open(&path);
                let mut line = Vec::with_capacity(4096);
                let mut n = 0u64;
                while !shared.stop.load(Ordering::Acquire) {
                    let due = burst + (started.elapsed().as_secs_f64() * rate as f64) as u64;
                    if n >= due {
                        std::thread::sleep(Duration::from_micros(500));
                        continue;
                    }
                    while n < due && !shared.stop.load(Ordering::Relaxed) {
                        if shared.reopen.swap(false, Ordering::AcqRel) {
                            file = open(&path);
                            shared.reopens.fetch_add(1, Ordering::Relaxed);
                        }
                        line.clear();
                        entries.write(n, &mut line);
                        // One write per entry: the file never holds half an entry for long,
                        // but a reader may see one.
                        file.write_all(&line).expect("writer: appending an entry");
                        n += 1;
                        shared.written.store(n, Ordering::Release);
                    }
                }
            })
            .expect("starting the writer thread");
        Writer {
            handle,
            thread,
            started,
            burst,
        }
    }

    pub fn handle(&self) -> WriterHandle {
        self.handle.clone()
    }

    /// Stops writing; returns how many entries were written and the rate achieved after
    /// the burst.
    pub fn stop(self) -> (u64, f64) {
        self.handle.shared.stop.store(true, Ordering::Release);
        self.thread.join().expect("the writer thread panicked");
        let n = self.handle.written();
        let paced = n.saturating_sub(self.burst);
        (n, paced as f64 / self.started.elapsed().as_secs_f64())
    }
}
