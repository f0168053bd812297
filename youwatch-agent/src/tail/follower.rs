//! The follower: reads the current file into a buffer and hands out complete lines with their
//! positions; the [`Tracker`] says which file that is.

use std::time::{Duration, Instant};

use super::{
    FollowOptions, TailError, TailMetrics,
    batch::Batch,
    cursor::{CursorStore, FileId, Fingerprint, Position, SavedCursor},
    resume::{resume, saved_cursor},
    rotation::{Accepted, Next, Tracker},
    siblings,
    wake::Waker,
};

/// While behind (reading without reaching the end), the path is still looked at this often,
/// so a new file is held open before it can be deleted or truncated unseen.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// At most this many reads (`read_chunk_bytes` each) are held ahead of what was handed out.
const READ_AHEAD_CHUNKS: usize = 8;

pub struct Follower {
    opts: FollowOptions,
    store: Option<CursorStore>,
    metrics: TailMetrics,
    waker: Waker,
    tracker: Tracker,
    lines: LineBuffer,
    consumer: u64,
    looked: Instant,
}

impl Follower {
    /// Opens the follower and positions it: after the saved cursor (in the rotated-away file
    /// or copytruncate's copy if the path moved on meanwhile), else as `opts.start_at` says.
    /// A missing path is not an error: it is read from its first byte once it appears.
    pub fn open(opts: FollowOptions, metrics: TailMetrics) -> Result<Follower, TailError> {
        let store = opts
            .cursor_file
            .clone()
            .map(|p| CursorStore::new(p, opts.sync_cursor));
        let saved = store.as_ref().and_then(|s| saved_cursor(s, &opts.path));
        let mut tracker = Tracker::new(opts.path.clone(), opts.rotate_grace, metrics.clone());
        let skipping = resume(
            &mut tracker,
            saved.as_ref().map(|s| s.position),
            opts.start_at,
        )?;
        if saved.is_none()
            && !skipping
            && let (Some(store), Some(cur)) = (&store, tracker.current())
        {
            // A first run saves where it starts: a restart before its first commit resumes
            // there, even if the file was rotated meanwhile.
            let start = SavedCursor {
                path: opts.path.clone(),
                position: cur.position(),
                consumer: 0,
            };
            if let Err(e) = store.save(&start) {
                tracing::warn!(error = %e, "cannot save the tail cursor; a restart may read some lines again");
            }
        }
        let chunk = opts.read_chunk_bytes.max(4096);
        let mut follower = Follower {
            waker: Waker::new(opts.inotify, opts.poll_interval),
            lines: LineBuffer {
                buf: vec![0; chunk * 2],
                start: 0,
                lines_end: 0,
                end: 0,
                skipping,
            },
            consumer: saved.map_or(0, |s| s.consumer),
            looked: Instant::now(),
            opts,
            store,
            metrics,
            tracker,
        };
        follower.watch();
        Ok(follower)
    }

    /// Whether changes are noticed through inotify (else by polling alone).
    pub fn uses_inotify(&self) -> bool {
        self.waker.uses_inotify()
    }

    /// The consumer value saved by the last [`commit_with`](Self::commit_with) before this
    /// follower was opened (0 when none).
    pub fn committed_consumer(&self) -> u64 {
        self.consumer
    }

    /// Saves `end` (a [`Line::end`](super::Line::end) or [`Batch::end`]) as the place to
    /// resume from.
    pub fn commit(&mut self, end: Position) -> Result<(), TailError> {
        self.commit_with(end, self.consumer)
    }

    /// Saves `end` together with the consumer's own progress marker.
    pub fn commit_with(&mut self, end: Position, consumer: u64) -> Result<(), TailError> {
        self.consumer = consumer;
        let Some(store) = &self.store else {
            return Ok(());
        };
        store.save(&SavedCursor {
            path: self.opts.path.clone(),
            position: end,
            consumer,
        })
    }

    /// The next complete lines, waiting up to `max_wait` for some. An empty batch means none
    /// arrived in time. Lines of one batch all come from one file; a batch holds at most
    /// `read_chunk_bytes` of lines (or one line, if longer).
    pub fn next_batch(&mut self, max_wait: Duration) -> Result<Batch<'_>, TailError> {
        let deadline = Instant::now() + max_wait;
        if self.looked.elapsed() >= LOOK_EVERY {
            self.looked = Instant::now();
            self.tracker.look_around()?;
        }
        let range = loop {
            if self.tracker.current().is_none() && self.tracker.open_path()? {
                self.watch();
            }
            if let Some(range) = self.fill()? {
                break Some(range);
            }
            match self.tracker.at_end(self.lines.start < self.lines.end)? {
                next @ (Next::Read | Next::Restart) => {
                    self.go_on(next);
                    continue;
                }
                Next::Flush => {
                    self.metrics.unterminated_lines.inc();
                    break Some(self.lines.take_all());
                }
                Next::Idle => {}
            }
            let now = Instant::now();
            if now >= deadline {
                break None;
            }
            self.waker.wait(deadline - now);
        };
        Ok(self.batch(range))
    }

    /// Hands out the unterminated bytes at the end of what was read as a last line: for
    /// reading a file once to its end (a follower would wait for the newline instead).
    pub fn take_unterminated(&mut self) -> Batch<'_> {
        let range = (self.lines.start < self.lines.end).then(|| self.lines.take_all());
        self.batch(range)
    }

    fn batch(&self, range: Option<(usize, usize)>) -> Batch<'_> {
        let (data, data_offset, file, fingerprint) = match (range, self.tracker.current()) {
            (Some((s, e)), Some(cur)) => (
                &self.lines.buf[s..e],
                cur.offset - (self.lines.end - s) as u64,
                cur.id,
                cur.fp,
            ),
            _ => (
                &[][..],
                0,
                FileId { dev: 0, ino: 0 },
                Fingerprint::default(),
            ),
        };
        Batch {
            data,
            data_offset,
            file,
            fingerprint,
            max_line: self.opts.max_line_bytes,
            long_lines: &self.metrics.long_lines_skipped,
        }
    }

    /// Reads ahead while the consumer is busy with the last batch, up to
    /// `READ_AHEAD_CHUNKS` reads held: what is read can no longer be lost to a copytruncate
    /// (its window shrinks to what the writer appends between the copy and the truncation).
    /// The lines are handed out by the next calls to [`next_batch`](Self::next_batch), a batch
    /// at a time. Rotations and truncations are dealt with there too.
    pub fn read_ahead(&mut self) -> Result<(), TailError> {
        let limit = self.chunk() * READ_AHEAD_CHUNKS;
        while self.lines.end - self.lines.start < limit {
            if self.read_chunk()? != Got::Data {
                break;
            }
        }
        Ok(())
    }

    fn chunk(&self) -> usize {
        self.opts.read_chunk_bytes.max(4096)
    }

    /// Hands out the complete lines held (at most one read's worth), else reads what the
    /// current file has until some are complete; `None` at end of file.
    fn fill(&mut self) -> Result<Option<(usize, usize)>, TailError> {
        loop {
            if let Some(range) = self.lines.take_lines(self.chunk()) {
                return Ok(Some(range));
            }
            // At the end last time: the file may have been truncated since.
            if self.tracker.current().is_some_and(|c| c.at_eof)
                && let Some(next) = self.tracker.verify()?
            {
                self.go_on(next);
            }
            match self.read_chunk()? {
                Got::Data => {}
                Got::End => return Ok(None),
                Got::Replaced => {
                    let next = self.tracker.replaced()?;
                    self.go_on(next);
                }
            }
        }
    }

    /// One read from the current file into the buffer.
    fn read_chunk(&mut self) -> Result<Got, TailError> {
        let chunk = self.chunk();
        let Some(cur) = self.tracker.current() else {
            return Ok(Got::End);
        };
        self.lines.make_room(chunk);
        let to = self.lines.end;
        let n = cur.read(&mut self.lines.buf[to..to + chunk])?;
        if n == 0 {
            if let Some(cur) = self.tracker.current_mut() {
                cur.at_eof = true;
            }
            return Ok(Got::End);
        }
        if let Accepted::Replaced = self
            .tracker
            .accept(&self.lines.buf[to..to + n], n == chunk)?
        {
            return Ok(Got::Replaced);
        }
        self.metrics.bytes_read.inc_by(n as u64);
        self.lines.added(n, self.opts.max_line_bytes, &self.metrics);
        Ok(Got::Data)
    }

    fn go_on(&mut self, next: Next) {
        if next == Next::Restart {
            self.lines.clear();
            self.watch();
        }
    }

    fn watch(&mut self) {
        self.waker.watch_dirs(&siblings::dirs(self.tracker.path()));
    }
}

/// What one read brought.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Data,
    /// The end of the file (or no file).
    End,
    /// The file no longer holds what we were reading.
    Replaced,
}

/// Bytes read but not handed out yet: `buf[start..lines_end]` complete lines,
/// `buf[lines_end..end]` the start of a line whose newline has not been read. `buf[end]` is
/// the current file's offset.
struct LineBuffer {
    buf: Vec<u8>,
    start: usize,
    lines_end: usize,
    end: usize,
    /// Dropping the rest of an over-long line (or of a line written before a start at the
    /// end), up to its newline.
    skipping: bool,
}

impl LineBuffer {
    /// Room for `chunk` more bytes after `end`.
    fn make_room(&mut self, chunk: usize) {
        if self.buf.len() - self.end < chunk {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.lines_end -= self.start;
            self.start = 0;
            if self.buf.len() - self.end < chunk {
                self.buf.resize(self.end + chunk, 0);
            }
        }
    }

    /// `n` bytes were read after `end`.
    fn added(&mut self, n: usize, max_line: usize, metrics: &TailMetrics) {
        let new_from = self.end;
        self.end += n;
        if self.skipping {
            let Some(i) = memchr::memchr(b'\n', &self.buf[new_from..self.end]) else {
                self.start = self.end;
                self.lines_end = self.end;
                return;
            };
            self.start = new_from + i + 1;
            self.lines_end = self.start;
            self.skipping = false;
        }
        let from = new_from.max(self.start);
        if let Some(i) = memchr::memrchr(b'\n', &self.buf[from..self.end]) {
            self.lines_end = from + i + 1;
        } else if self.lines_end == self.start && self.end - self.start > max_line {
            // Only a line held, and too long: dropped up to its newline.
            metrics.long_lines_skipped.inc();
            self.skipping = true;
            self.start = self.end;
            self.lines_end = self.end;
        }
    }

    /// Complete lines held, at most `limit` bytes of them (or one line, if longer).
    fn take_lines(&mut self, limit: usize) -> Option<(usize, usize)> {
        if self.lines_end == self.start {
            return None;
        }
        let window = (self.start + limit).min(self.lines_end);
        let cut = match memchr::memrchr(b'\n', &self.buf[self.start..window]) {
            Some(i) => self.start + i + 1,
            // `lines_end` follows a newline.
            None => window + memchr::memchr(b'\n', &self.buf[window..self.lines_end])? + 1,
        };
        let range = (self.start, cut);
        self.start = cut;
        Some(range)
    }

    /// Everything held, as one (unterminated) line.
    fn take_all(&mut self) -> (usize, usize) {
        let range = (self.start, self.end);
        self.start = self.end;
        self.lines_end = self.end;
        range
    }

    /// Reading starts over in another file (or the same one from its start): what is held
    /// has no continuation there.
    fn clear(&mut self) {
        self.start = 0;
        self.lines_end = 0;
        self.end = 0;
        self.skipping = false;
    }
}
