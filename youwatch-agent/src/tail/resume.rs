//! Where the follower starts: after the saved cursor — in the file it names even if that was
//! rotated away or truncated meanwhile (renamed: found by inode; copytruncated: its copy,
//! found by the fingerprint of its first bytes) — else where `start_at` says.

use std::{os::unix::fs::FileExt, path::Path};

use super::{
    StartAt, TailError,
    cursor::{CursorStore, FileId, Position, SavedCursor},
    rotation::Tracker,
    siblings,
    source::{Role, Source},
};

/// The cursor saved for `path`, if any (one that cannot be read, or is for another path,
/// is ignored with a warning: reading starts as on a first run).
pub(super) fn saved_cursor(store: &CursorStore, path: &Path) -> Option<SavedCursor> {
    let saved = match store.load() {
        Ok(saved) => saved?,
        Err(e) => {
            tracing::warn!(error = %e, "ignoring the saved cursor");
            return None;
        }
    };
    if saved.path != path {
        tracing::warn!(saved = %saved.path.display(), path = %path.display(),
            "the saved cursor is for another path; ignoring it");
        return None;
    }
    Some(saved)
}

/// Positions `tracker` at start-up. Returns whether the bytes up to the first newline must be
/// skipped (the tail of a line written before a first start at the end).
pub(super) fn resume(
    tracker: &mut Tracker,
    saved: Option<Position>,
    start_at: StartAt,
) -> Result<bool, TailError> {
    let current = Source::open(tracker.path(), Role::Followed)?;
    let Some(pos) = saved else {
        let mut skip = false;
        if let Some(mut cur) = current {
            if start_at == StartAt::End {
                cur.offset = cur.size_seen;
                // Never hand out the tail of a line written before we started.
                skip = cur.size_seen > 0 && !ends_with_newline(&cur);
            }
            tracker.start_in(cur);
        }
        return Ok(skip);
    };
    if let Some(mut cur) = current {
        if cur.id == pos.file
            && cur.size_seen >= pos.offset
            && pos
                .fingerprint
                .matches(&cur.file)
                .map_err(|e| cur.error(e))?
        {
            cur.offset = pos.offset;
            tracker.start_in(cur);
            return Ok(false);
        }
        if let Some(old) = find_saved(tracker, &pos, Some(cur.id))? {
            resume_rotated(tracker, old, Some(cur.id))?;
            return Ok(false);
        }
        tracing::info!(path = %tracker.path().display(),
            "the file the cursor was in is gone; reading the current file from the start");
        tracker.start_in(cur);
        return Ok(false);
    }
    if let Some(old) = find_saved(tracker, &pos, None)? {
        resume_rotated(tracker, old, None)?;
    }
    Ok(false)
}

/// The cursor's file under another name (renamed while we were down: same inode), else
/// copytruncate's copy of it (same first bytes), positioned at the cursor.
fn find_saved(
    tracker: &Tracker,
    pos: &Position,
    path_id: Option<FileId>,
) -> Result<Option<Source>, TailError> {
    let path = tracker.path();
    let renamed = siblings::all_files(path)
        .into_iter()
        .filter(|s| FileId::of(&s.meta) == pos.file && s.meta.len() >= pos.offset);
    let copies = siblings::rotated(path)
        .into_iter()
        .rev()
        .filter(|s| {
            pos.fingerprint.len > 0
                && Some(FileId::of(&s.meta)) != path_id
                && s.meta.len() >= pos.offset
        })
        .map(|s| (s, Role::Copy));
    for (sibling, role) in renamed.map(|s| (s, Role::Followed)).chain(copies) {
        let Some(mut found) = Source::open(&sibling.path, role)? else {
            continue;
        };
        if pos.fingerprint.matches(&found.file).unwrap_or(false) {
            found.offset = pos.offset;
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Resumes in `old` (rotated away or copied while we were down), then reads the rotated
/// files newer than it, oldest first, then the path's file (`path_id`, opened when reached).
fn resume_rotated(
    tracker: &mut Tracker,
    old: Source,
    path_id: Option<FileId>,
) -> Result<(), TailError> {
    tracing::info!(file = %old.name.display(), offset = old.offset, "resuming in the rotated-away file first");
    let since = old.modified();
    tracker.start_in(old);
    tracker.queue_rotated_since(since, path_id)
}

fn ends_with_newline(cur: &Source) -> bool {
    let mut last = [0u8; 1];
    matches!(cur.file.read_at(&mut last, cur.size_seen - 1), Ok(1) if last[0] == b'\n')
}
