//! The follower: reads the current file, notices when the path names another file or the
//! file was truncated, and hands out complete lines with their positions.

use std::{
    collections::VecDeque,
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use prometheus_client::metrics::counter::Counter;

use super::{
    FollowOptions, StartAt, TailError, TailMetrics,
    cursor::{CursorStore, FileId, Fingerprint, Position, SavedCursor},
    wake::Waker,
};

/// At most this many rotated files are queued to be read after the current one.
const MAX_QUEUED: usize = 256;

/// The file being read.
struct Current {
    file: File,
    id: FileId,
    fp: Fingerprint,
    /// File offset of `buf[end]`: everything before it has been read.
    read_offset: u64,
    size_seen: u64,
    /// The last read found the end: verify the file was not truncated before reading on.
    at_eof: bool,
}

/// What a check at end of file found.
enum Check {
    /// Nothing new: wait.
    Idle,
    /// Something changed (more data, truncation, switched file): read again.
    Again,
    /// The old file is done and ended with an unterminated line: hand it out as it is.
    Flush,
}

pub struct Follower {
    opts: FollowOptions,
    store: Option<CursorStore>,
    metrics: TailMetrics,
    waker: Waker,
    cur: Option<Current>,
    buf: Vec<u8>,
    /// `buf[start..end]` is read but not yet handed out (a partial line).
    start: usize,
    end: usize,
    /// Files to read after the current one, oldest first: successors seen while the current
    /// one was in its grace period, or rotated files found at start-up.
    next: VecDeque<Current>,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
    consumer: u64,
}

impl Follower {
    /// Opens the follower and positions it: after the saved cursor (in the rotated-away file
    /// if the path moved on meanwhile), else as `opts.start_at` says. A missing path is not an
    /// error: it is read from its first byte once it appears.
    pub fn open(opts: FollowOptions, metrics: TailMetrics) -> Result<Follower, TailError> {
        let store = opts
            .cursor_file
            .clone()
            .map(|p| CursorStore::new(p, opts.sync_cursor));
        let waker = Waker::new(opts.inotify, opts.poll_interval);
        let chunk = opts.read_chunk_bytes.max(4096);
        let mut follower = Follower {
            buf: vec![0; chunk * 2],
            opts,
            store,
            metrics,
            waker,
            cur: None,
            next: VecDeque::new(),
            start: 0,
            end: 0,
            skipping: false,
            consumer: 0,
        };
        follower.resume()?;
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

    /// Saves `end` (a [`Line::end`] or [`Batch::end`]) as the place to resume from.
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
    /// arrived in time. Lines of one batch all come from one file.
    pub fn next_batch(&mut self, max_wait: Duration) -> Result<Batch<'_>, TailError> {
        let deadline = Instant::now() + max_wait;
        let range = loop {
            if self.cur.is_none() && self.open_path()? {
                self.watch();
            }
            if let Some(range) = self.fill()? {
                break Some(range);
            }
            match self.check()? {
                Check::Again => continue,
                Check::Flush => {
                    let range = (self.start, self.end);
                    self.start = self.end;
                    self.metrics.unterminated_lines.inc();
                    break Some(range);
                }
                Check::Idle => {}
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
        let range = (self.start < self.end).then_some((self.start, self.end));
        self.start = self.end;
        self.batch(range)
    }

    fn batch(&self, range: Option<(usize, usize)>) -> Batch<'_> {
        let (data, data_offset, file, fingerprint) = match (range, &self.cur) {
            (Some((s, e)), Some(cur)) => (
                &self.buf[s..e],
                cur.read_offset - (self.end - s) as u64,
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

    /// Reads what the current file has; returns the range of complete lines as soon as there
    /// are some, `None` at end of file.
    fn fill(&mut self) -> Result<Option<(usize, usize)>, TailError> {
        let chunk = self.opts.read_chunk_bytes.max(4096);
        if self.cur.as_ref().is_some_and(|c| c.at_eof) {
            self.truncated()?;
        }
        loop {
            let Some(cur) = &mut self.cur else {
                return Ok(None);
            };
            if self.buf.len() - self.end < chunk {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() - self.end < chunk {
                    self.buf.resize(self.end + chunk, 0);
                }
            }
            let n = match cur
                .file
                .read_at(&mut self.buf[self.end..self.end + chunk], cur.read_offset)
            {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(TailError::Read {
                        path: self.opts.path.clone(),
                        source,
                    });
                }
            };
            if n == 0 {
                cur.at_eof = true;
                return Ok(None);
            }
            // A short read from a regular file means its end was reached.
            cur.at_eof = n < chunk;
            let new_from = self.end;
            self.end += n;
            cur.read_offset += n as u64;
            self.metrics.bytes_read.inc_by(n as u64);
            if self.skipping {
                match memchr::memchr(b'\n', &self.buf[new_from..self.end]) {
                    Some(i) => {
                        self.start = new_from + i + 1;
                        self.skipping = false;
                    }
                    None => {
                        self.start = self.end;
                        continue;
                    }
                }
            }
            let search_from = new_from.max(self.start);
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[search_from..self.end]) {
                let range = (self.start, search_from + i + 1);
                self.start = range.1;
                return Ok(Some(range));
            }
            if self.end - self.start > self.opts.max_line_bytes {
                self.metrics.long_lines_skipped.inc();
                self.skipping = true;
                self.start = self.end;
            }
        }
    }

    /// Whether the file was truncated in place (copytruncate, or truncate and regrow): then
    /// it is read again from its start. A partial line we held belonged to the old contents,
    /// which now live in the copy.
    fn truncated(&mut self) -> Result<bool, TailError> {
        let Some(cur) = &mut self.cur else {
            return Ok(false);
        };
        let read_err = |source| TailError::Read {
            path: self.opts.path.clone(),
            source,
        };
        let size = cur.file.metadata().map_err(read_err)?.len();
        let prefix_same = cur.fp.len == 0 || cur.fp.matches(&cur.file).map_err(read_err)?;
        if size >= cur.read_offset && prefix_same {
            return Ok(false);
        }
        tracing::info!(path = %self.opts.path.display(), "file was truncated; reading it from the start");
        self.metrics.truncations.inc();
        cur.read_offset = 0;
        cur.fp = Fingerprint::read(&cur.file).map_err(read_err)?;
        cur.size_seen = size;
        cur.at_eof = false;
        self.start = 0;
        self.end = 0;
        self.skipping = false;
        Ok(true)
    }

    /// At end of the current file: did it grow, shrink, or did the path move on?
    fn check(&mut self) -> Result<Check, TailError> {
        if self.truncated()? {
            return Ok(Check::Again);
        }
        let Some(cur) = &mut self.cur else {
            return Ok(Check::Idle);
        };
        let read_err = |source| TailError::Read {
            path: self.opts.path.clone(),
            source,
        };
        let meta = cur.file.metadata().map_err(read_err)?;
        let size = meta.len();
        // Quiet: not written for the grace period (the writer has moved to the new file).
        let quiet = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|idle| idle >= self.opts.rotate_grace);
        if !cur.fp.is_full() && size > u64::from(cur.fp.len) {
            cur.fp = Fingerprint::read(&cur.file).map_err(read_err)?;
        }
        cur.size_seen = size;
        if size > cur.read_offset {
            return Ok(Check::Again);
        }
        let path_id = match std::fs::metadata(&self.opts.path) {
            Ok(meta) => Some(FileId::of(&meta)),
            // Renamed or deleted with no successor yet: the writer may still append to the
            // file we hold, so keep it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(TailError::Read {
                    path: self.opts.path.clone(),
                    source,
                });
            }
        };
        if path_id == Some(cur.id) {
            return Ok(Check::Idle);
        }
        if self.next.is_empty() && path_id.is_none() {
            return Ok(Check::Idle);
        }
        let cur_id = cur.id;
        // Hold the successor as soon as it shows, so a second rotation during the grace
        // period cannot make us skip it.
        if let Some(id) = path_id
            && !self.next.iter().any(|c| c.id == id)
            && let Some(next) = self.open_file(&self.opts.path.clone())?
            && next.id != cur_id
            && self.next.len() < MAX_QUEUED
        {
            self.next.push_back(next);
        } else if self.next.len() >= MAX_QUEUED {
            tracing::warn!(path = %self.opts.path.display(), "more than {MAX_QUEUED} rotations behind; files rotated meanwhile are skipped");
        }
        if !quiet {
            return Ok(Check::Idle);
        }
        if self.start < self.end {
            return Ok(Check::Flush);
        }
        let Some(next) = self.next.pop_front() else {
            return Ok(Check::Idle);
        };
        tracing::info!(path = %self.opts.path.display(), "path names a new file (rotated); following it");
        self.metrics.rotations.inc();
        self.cur = Some(next);
        self.start = 0;
        self.end = 0;
        self.skipping = false;
        self.watch();
        Ok(Check::Again)
    }

    /// Opens the path as a new file, read from its first byte. `false` when it does not exist.
    fn open_path(&mut self) -> Result<bool, TailError> {
        match self.open_file(&self.opts.path.clone())? {
            Some(cur) => {
                self.cur = Some(cur);
                self.start = 0;
                self.end = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn open_file(&self, path: &Path) -> Result<Option<Current>, TailError> {
        let err = |source| TailError::Read {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e)),
        };
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() {
            return Err(TailError::NotAFile {
                path: path.to_owned(),
            });
        }
        Ok(Some(Current {
            fp: Fingerprint::read(&file).map_err(err)?,
            id: FileId::of(&meta),
            file,
            read_offset: 0,
            size_seen: meta.len(),
            at_eof: false,
        }))
    }

    /// Positions the follower at start-up from the saved cursor, if any.
    fn resume(&mut self) -> Result<(), TailError> {
        let saved = match self.store.as_ref().map(CursorStore::load).transpose() {
            Ok(saved) => saved.flatten(),
            Err(e) => {
                tracing::warn!(error = %e, "ignoring the saved cursor");
                None
            }
        };
        let saved = saved.filter(|s| {
            let same = s.path == self.opts.path;
            if !same {
                tracing::warn!(saved = %s.path.display(), path = %self.opts.path.display(),
                    "the saved cursor is for another path; ignoring it");
            }
            same
        });
        let current = self.open_file(&self.opts.path.clone())?;
        let Some(saved) = saved else {
            if let Some(mut cur) = current {
                if self.opts.start_at == StartAt::End {
                    cur.read_offset = cur.size_seen;
                    // Never hand out the tail of a line written before we started.
                    self.skipping = cur.size_seen > 0 && !ends_with_newline(&cur)?;
                }
                self.cur = Some(cur);
            }
            return Ok(());
        };
        self.consumer = saved.consumer;
        let pos = saved.position;
        if let Some(mut cur) = current {
            let err = |source| TailError::Read {
                path: self.opts.path.clone(),
                source,
            };
            if cur.id == pos.file
                && cur.size_seen >= pos.offset
                && pos.fingerprint.matches(&cur.file).map_err(err)?
            {
                cur.read_offset = pos.offset;
                self.cur = Some(cur);
                return Ok(());
            }
            if let Some(old) = self.find_rotated(&pos)? {
                self.resume_rotated(old, Some(cur.id))?;
                return Ok(());
            }
            tracing::info!(path = %self.opts.path.display(),
                "the file the cursor was in is gone; reading the current file from the start");
            self.cur = Some(cur);
            return Ok(());
        }
        if let Some(old) = self.find_rotated(&pos)? {
            self.resume_rotated(old, None)?;
        }
        Ok(())
    }

    /// The cursor's file under another name in the directories involved (rename rotation while
    /// we were down), positioned at the cursor.
    fn find_rotated(&self, pos: &Position) -> Result<Option<(Current, PathBuf)>, TailError> {
        for dir in self.dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() || FileId::of(&meta) != pos.file || meta.len() < pos.offset {
                    continue;
                }
                let path = entry.path();
                let Some(mut cur) = self.open_file(&path)? else {
                    continue;
                };
                if pos.fingerprint.matches(&cur.file).unwrap_or(false) {
                    cur.read_offset = pos.offset;
                    return Ok(Some((cur, path)));
                }
            }
        }
        Ok(None)
    }

    /// Resumes in `old` (rotated away while we were down), then reads the rotated files that
    /// are newer than it, oldest first, then the path's file (`path_id`, opened when reached).
    fn resume_rotated(
        &mut self,
        (old, name): (Current, PathBuf),
        path_id: Option<FileId>,
    ) -> Result<(), TailError> {
        tracing::info!(file = %name.display(), "resuming in the rotated-away file first");
        let old_mtime = old.file.metadata().and_then(|m| m.modified()).ok();
        let mut newer = Vec::new();
        for (path, meta) in self.rotated_siblings() {
            let id = FileId::of(&meta);
            if id == old.id || Some(id) == path_id {
                continue;
            }
            let Ok(mtime) = meta.modified() else { continue };
            if old_mtime.is_some_and(|t| mtime >= t)
                && let Some(cur) = self.open_file(&path)?
            {
                newer.push((mtime, path, cur));
            }
        }
        newer.sort_by_key(|(mtime, _, _)| *mtime);
        if newer.len() > MAX_QUEUED {
            tracing::warn!(
                "more than {MAX_QUEUED} files rotated while we were down; reading the oldest {MAX_QUEUED}"
            );
            newer.truncate(MAX_QUEUED);
        }
        for (_, path, cur) in newer {
            tracing::info!(file = %path.display(), "then this rotated file");
            self.next.push_back(cur);
        }
        self.cur = Some(old);
        Ok(())
    }

    /// Regular files next to the path named like its rotations (`audit.log.1`,
    /// `audit.log-20250101`), compressed ones excepted.
    fn rotated_siblings(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let Some(base) = self
            .opts
            .path
            .file_name()
            .map(|n| n.as_encoded_bytes().to_vec())
        else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for dir in self.dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.as_encoded_bytes();
                let rotated = name.len() > base.len() + 1
                    && name.starts_with(&base)
                    && matches!(name[base.len()], b'.' | b'-' | b'_')
                    && ![&b".gz"[..], b".zst", b".xz", b".bz2", b".lz4", b".zip"]
                        .iter()
                        .any(|ext| name.ends_with(ext));
                if let (true, Ok(meta)) = (rotated, entry.metadata())
                    && meta.is_file()
                {
                    found.push((entry.path(), meta));
                }
            }
        }
        found
    }

    /// The directories where the path's changes show: its own, and its target's if a symlink.
    fn dirs(&self) -> Vec<PathBuf> {
        let parent = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let mut dirs = vec![parent(&self.opts.path)];
        if let Ok(target) = std::fs::canonicalize(&self.opts.path) {
            let d = parent(&target);
            if !dirs.contains(&d) {
                dirs.push(d);
            }
        }
        dirs
    }

    fn watch(&mut self) {
        let dirs = self.dirs();
        self.waker.watch_dirs(&dirs);
    }
}

fn ends_with_newline(cur: &Current) -> Result<bool, TailError> {
    let mut last = [0u8; 1];
    match cur.file.read_at(&mut last, cur.size_seen - 1) {
        Ok(1) => Ok(last[0] == b'\n'),
        _ => Ok(false),
    }
}

/// Complete lines from one file. Iterate it once (over-long lines are counted as they are
/// skipped); commit [`Batch::end`] once all are processed.
pub struct Batch<'a> {
    data: &'a [u8],
    data_offset: u64,
    file: FileId,
    fingerprint: Fingerprint,
    max_line: usize,
    long_lines: &'a Counter,
}

impl<'a> Batch<'a> {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes in this batch, newlines included.
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }

    /// The position after the batch's last line; `None` for an empty batch.
    pub fn end(&self) -> Option<Position> {
        (!self.data.is_empty()).then(|| self.position(self.data.len()))
    }

    fn position(&self, at: usize) -> Position {
        Position {
            file: self.file,
            fingerprint: self.fingerprint,
            offset: self.data_offset + at as u64,
        }
    }
}

impl<'a> IntoIterator for Batch<'a> {
    type Item = Line<'a>;
    type IntoIter = Lines<'a>;

    fn into_iter(self) -> Lines<'a> {
        Lines { batch: self, at: 0 }
    }
}

/// One line, without its newline, and the position just after it.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub bytes: &'a [u8],
    pub end: Position,
}

pub struct Lines<'a> {
    batch: Batch<'a>,
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        let data = self.batch.data;
        while self.at < data.len() {
            let rest = &data[self.at..];
            let (len, next) = match memchr::memchr(b'\n', rest) {
                Some(i) => (i, self.at + i + 1),
                None => (rest.len(), data.len()),
            };
            self.at = next;
            if len == 0 {
                continue;
            }
            if len > self.batch.max_line {
                self.batch.long_lines.inc();
                continue;
            }
            return Some(Line {
                bytes: &rest[..len],
                end: self.batch.position(next),
            });
        }
        None
    }
}
