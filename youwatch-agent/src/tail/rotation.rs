//! Which file to read: the rotation detection of the follower.
//!
//! The [`Tracker`] holds the file being read and the files to read after it, and decides at
//! each end of file (and after each read) whether reading goes on, and where:
//! - the file grew: read on;
//! - the path names another file (rename, delete-and-recreate, symlink swap): the new one is
//!   queued at once, after any file rotated away meanwhile that was never read (several
//!   rotations while we were behind); the old one is read until it has been quiet for
//!   `rotate_grace` (writers keep appending to a renamed file until they reopen);
//! - the file no longer holds what we were reading (copytruncate, or any truncation; noticed
//!   by its size and by the fingerprint of its first bytes, so also when it regrew past our
//!   offset): if copytruncate's copy is still visible under a rotated name, its tail is read
//!   from our offset, then the file again from its start; else it is read from its start.
//!   A queued file is checked the same way when its turn comes, so a copytruncate soon after
//!   a rename loses nothing either.
//!
//! What copytruncate still cannot guarantee: bytes written after the copy was taken and
//! before the truncation are in neither file, and are lost unless we had read them already.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use super::{
    TailError, TailMetrics,
    cursor::FileId,
    siblings,
    source::{Identity, Role, Source},
};

/// At most this many files are queued to be read after the current one.
const MAX_QUEUED: usize = 256;
/// Files read to their end, remembered so a rotated file is never read twice.
const FINISHED_KEPT: usize = 64;

/// What the reader does next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Nothing new: wait.
    Idle,
    /// Read again; what the buffer holds continues (more data, or copytruncate's copy read
    /// from the same offset).
    Read,
    /// Read again from the start of a file: a partial line in the buffer has no end.
    Restart,
    /// The current file is finished but ends without a newline: hand its last bytes out.
    Flush,
}

/// What became of a chunk just read.
pub(super) enum Accepted {
    /// It belongs to the contents being read; the offset moved past it.
    Kept,
    /// The file was replaced before the read: the chunk is someone else's. Call
    /// [`Tracker::replaced`] once what was read before is handed out.
    Replaced,
}

pub(super) struct Tracker {
    path: PathBuf,
    grace: Duration,
    metrics: TailMetrics,
    cur: Option<Source>,
    next: VecDeque<Source>,
    finished: VecDeque<Identity>,
}

impl Tracker {
    pub fn new(path: PathBuf, grace: Duration, metrics: TailMetrics) -> Tracker {
        Tracker {
            path,
            grace,
            metrics,
            cur: None,
            next: VecDeque::new(),
            finished: VecDeque::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Option<&Source> {
        self.cur.as_ref()
    }

    pub fn current_mut(&mut self) -> Option<&mut Source> {
        self.cur.as_mut()
    }

    /// Starts reading `source` (at start-up).
    pub fn start_in(&mut self, source: Source) {
        self.cur = Some(source);
    }

    /// Opens the path when no file is being read yet; `true` once it exists.
    pub fn open_path(&mut self) -> Result<bool, TailError> {
        if self.cur.is_some() {
            return Ok(true);
        }
        self.cur = Source::open(&self.path, Role::Followed)?;
        Ok(self.cur.is_some())
    }

    /// Checks `chunk`, just read from the current file at its offset: kept when the file
    /// still holds the contents we are reading.
    pub fn accept(&mut self, chunk: &[u8], full_read: bool) -> Result<Accepted, TailError> {
        let Some(cur) = &mut self.cur else {
            return Ok(Accepted::Replaced);
        };
        let mut probe = cur.fp;
        probe.extend_from(cur.offset, chunk);
        let same = probe.matches(&cur.file).map_err(|e| cur.error(e))?;
        // Replaced after the read (the chunk is what the file held before): keep it; the
        // next read finds the replacement.
        if same || cur.chunk_is_old(chunk)? {
            cur.advance(chunk, full_read);
            return Ok(Accepted::Kept);
        }
        Ok(Accepted::Replaced)
    }

    /// At the end of the current file: did it grow, was it replaced, did the path move on?
    /// `partial`: the buffer holds the start of a line not finished yet.
    pub fn at_end(&mut self, partial: bool) -> Result<Next, TailError> {
        if let Some(next) = self.verify()? {
            return Ok(next);
        }
        let Some(cur) = &mut self.cur else {
            return Ok(Next::Idle);
        };
        let meta = cur.file.metadata().map_err(|e| cur.error(e))?;
        if meta.len() > cur.offset {
            return Ok(Next::Read);
        }
        cur.size_seen = cur.size_seen.max(meta.len());
        let (cur_id, role) = (cur.id, cur.role);
        if self.look_around()? == Some(cur_id) {
            return Ok(Next::Idle);
        }
        // Renamed or deleted with no successor yet: the writer may still append to the file
        // we hold, so keep it.
        if self.next.is_empty() {
            return Ok(Next::Idle);
        }
        // A copy is never written again; a rotated file is done once quiet (its writer has
        // moved to the new file).
        let quiet = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|idle| idle >= self.grace);
        if role == Role::Followed && !quiet {
            return Ok(Next::Idle);
        }
        if partial {
            return Ok(Next::Flush);
        }
        self.switch()
    }

    /// Notices a new file at the path and holds it open at once (a file deleted before we
    /// opened it would be lost), and lets queued files' fingerprints cover their first bytes
    /// (so a truncation before their turn is noticed). Done at each end of file, and by the
    /// follower while it is behind. Returns what the path names.
    pub fn look_around(&mut self) -> Result<Option<FileId>, TailError> {
        let Some(cur_id) = self.cur.as_ref().map(|c| c.id) else {
            return Ok(None);
        };
        for queued in &mut self.next {
            queued.refresh_unread()?;
        }
        let path_id = self.path_id()?;
        if let Some(id) = path_id
            && id != cur_id
            && !self.known(id)
        {
            self.found_successor(id)?;
        }
        Ok(path_id)
    }

    /// Whether the current file still holds what we were reading; when not, where reading
    /// goes on.
    pub fn verify(&mut self) -> Result<Option<Next>, TailError> {
        match &self.cur {
            Some(cur) if !cur.intact()? => self.replaced().map(Some),
            _ => Ok(None),
        }
    }

    /// The current file was truncated (copytruncate): go on in its copy at the same offset
    /// if the copy is visible, then in the file from its start; else in the file from its
    /// start at once.
    pub fn replaced(&mut self) -> Result<Next, TailError> {
        let Some(old) = self.cur.take() else {
            return Ok(Next::Idle);
        };
        if old.role == Role::Copy {
            // Someone truncated the copy itself: nothing more to read in it.
            tracing::warn!(file = %old.name.display(), "copy truncated while being read; moving on");
            self.remember(old.identity());
            self.cur = self.next.pop_front();
            return Ok(Next::Restart);
        }
        self.metrics.truncations.inc();
        // Its old contents are done with here or in the copy: a later look for rotated files
        // must not take the copy for a file never read.
        self.remember(old.identity());
        let copy = self.find_copy(&old)?;
        let live = old.restarted()?;
        match copy {
            Some(copy) => {
                tracing::info!(path = %self.path.display(), copy = %copy.name.display(), offset = copy.offset,
                    "file was truncated (copytruncate); reading the rest from its copy, then the file from its start");
                self.next.push_front(live);
                self.cur = Some(copy);
                Ok(Next::Read)
            }
            None => {
                tracing::info!(path = %self.path.display(), "file was truncated; reading it from the start");
                self.cur = Some(live);
                Ok(Next::Restart)
            }
        }
    }

    /// copytruncate's copy of what `of` held: a rotated file starting with the same bytes,
    /// longer than what we read, not read before. Positioned at our offset.
    fn find_copy(&self, of: &Source) -> Result<Option<Source>, TailError> {
        if of.fp.len == 0 {
            return Ok(None);
        }
        let mut best: Option<Source> = None;
        for sibling in siblings::rotated(&self.path) {
            let id = FileId::of(&sibling.meta);
            if id == of.id || sibling.meta.len() <= of.offset || self.known(id) {
                continue;
            }
            let Some(mut copy) = Source::open(&sibling.path, Role::Copy)? else {
                continue;
            };
            if !of.fp.matches(&copy.file).unwrap_or(false) || self.was_finished(&copy) {
                continue;
            }
            copy.fp = of.fp;
            copy.offset = of.offset;
            if best.as_ref().is_none_or(|b| b.size_seen < copy.size_seen) {
                best = Some(copy);
            }
        }
        Ok(best)
    }

    /// The path names a file we do not know: queue the files rotated away since the current
    /// one that were never read (oldest first), then the path's file. Held open at once, so
    /// another rotation cannot take them from us.
    fn found_successor(&mut self, path_id: FileId) -> Result<(), TailError> {
        let since = self.cur.as_ref().and_then(Source::modified);
        self.queue_rotated_since(since, Some(path_id))?;
        if self.next.len() >= MAX_QUEUED {
            tracing::warn!(path = %self.path.display(), "more than {MAX_QUEUED} rotations behind; files rotated meanwhile are skipped");
            return Ok(());
        }
        if let Some(next) = Source::open(&self.path, Role::Followed)?
            && !self.known(next.id)
        {
            self.next.push_back(next);
        }
        Ok(())
    }

    /// Queues the rotated files modified at or after `since` that are not known yet (not
    /// being read, queued, finished, nor a copy of one of those), oldest first. `except`:
    /// the path's own file, which stays last.
    pub fn queue_rotated_since(
        &mut self,
        since: Option<SystemTime>,
        except: Option<FileId>,
    ) -> Result<(), TailError> {
        let path_born = except
            .and_then(|_| std::fs::metadata(&self.path).ok())
            .and_then(|m| m.created().ok());
        for sibling in siblings::rotated(&self.path) {
            let id = FileId::of(&sibling.meta);
            if Some(id) == except
                || self.known(id)
                || since.is_some_and(|t| sibling.modified().is_none_or(|m| m < t))
                || sibling.is_next_target(path_born)
            {
                continue;
            }
            let Some(source) = Source::open(&sibling.path, Role::Followed)? else {
                continue;
            };
            if self.holds_known_contents(&source) {
                continue;
            }
            if self.next.len() >= MAX_QUEUED {
                tracing::warn!(path = %self.path.display(), "more than {MAX_QUEUED} rotated files to read; reading the oldest {MAX_QUEUED}");
                break;
            }
            tracing::info!(file = %sibling.path.display(), "rotated file not read yet; reading it first");
            // Before the path's file if that is queued already: we stay with the path's file.
            let at = except
                .and_then(|id| self.next.iter().position(|s| s.id == id))
                .unwrap_or(self.next.len());
            self.next.insert(at, source);
        }
        Ok(())
    }

    /// The current file is finished: go on with the next one.
    fn switch(&mut self) -> Result<Next, TailError> {
        // A file queued before its first bytes were seen cannot be told from its copy: a
        // copytruncate of it shows only as a rotated file nobody read. Look once more.
        if let Some(cur) = self.cur.as_ref().filter(|c| c.role == Role::Followed) {
            let since = cur.modified();
            let path_id = self.path_id()?;
            self.queue_rotated_since(since, path_id)?;
        }
        if let Some(old) = self.cur.take() {
            if old.role == Role::Followed {
                tracing::info!(path = %self.path.display(), "path names a new file (rotated); following it");
                self.metrics.rotations.inc();
            } else {
                tracing::debug!(copy = %old.name.display(), "copy read to its end; back to the file");
            }
            self.remember(old.identity());
        }
        self.cur = self.next.pop_front();
        if let Some(cur) = &self.cur {
            tracing::debug!(file = %cur.name.display(), offset = cur.offset, "reading the next file");
        }
        // A queued file may have been truncated while it waited (copytruncate soon after a
        // rename): then its copy is read first. Either way the buffer starts afresh.
        self.verify()?;
        Ok(Next::Restart)
    }

    fn path_id(&self) -> Result<Option<FileId>, TailError> {
        match std::fs::metadata(&self.path) {
            Ok(meta) => Ok(Some(FileId::of(&meta))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TailError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Being read or queued.
    fn known(&self, id: FileId) -> bool {
        self.cur.iter().chain(&self.next).any(|s| s.id == id)
    }

    fn remember(&mut self, identity: Identity) {
        if self.finished.len() >= FINISHED_KEPT {
            self.finished.pop_front();
        }
        self.finished.push_back(identity);
    }

    /// Read to its end before (same inode and first bytes: not a new file on a reused inode).
    fn was_finished(&self, source: &Source) -> bool {
        self.finished.iter().any(|f| {
            f.id == source.id && f.fp.len > 0 && f.fp.matches(&source.file).unwrap_or(false)
        })
    }

    /// Starts with the bytes of a file being read, queued or finished: a copy of it (or it).
    fn holds_known_contents(&self, source: &Source) -> bool {
        let fps = self
            .cur
            .iter()
            .chain(&self.next)
            .map(|s| s.fp)
            .chain(self.finished.iter().map(|f| f.fp));
        fps.filter(|fp| fp.len > 0)
            .any(|fp| fp.matches(&source.file).unwrap_or(false))
    }
}
