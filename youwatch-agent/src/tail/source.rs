//! One file the follower reads or will read: its descriptor, identity (device + inode and
//! the fingerprint of its first bytes) and how far it has been read.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    time::SystemTime,
};

use super::{
    TailError,
    cursor::{FileId, Fingerprint, Position},
};

/// Why a file is read, which decides when it is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// The path named it (now or before a rotation): its writer may still append to it.
    Followed,
    /// The copy copytruncate made of a file we were reading: never written again.
    Copy,
}

/// `(device, inode)` and fingerprint: a file's identity across renames and inode reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub id: FileId,
    pub fp: Fingerprint,
}

pub(super) struct Source {
    pub file: File,
    pub id: FileId,
    /// Of the bytes read so far (up to `Fingerprint::MAX_LEN`), or of the first bytes seen
    /// when it was opened: which generation of the file's contents this is.
    pub fp: Fingerprint,
    /// The next byte to read.
    pub offset: u64,
    /// The largest size seen: the file shrinking below it is a truncation.
    pub size_seen: u64,
    /// The last read found the end.
    pub at_eof: bool,
    pub role: Role,
    /// The name it was opened by (for logs and errors).
    pub name: PathBuf,
}

impl Source {
    /// Opens `path` to be read from its first byte; `None` when it does not exist.
    pub fn open(path: &Path, role: Role) -> Result<Option<Source>, TailError> {
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
        Ok(Some(Source {
            fp: Fingerprint::read(&file).map_err(err)?,
            id: FileId::of(&meta),
            file,
            offset: 0,
            size_seen: meta.len(),
            at_eof: false,
            role,
            name: path.to_owned(),
        }))
    }

    pub fn identity(&self) -> Identity {
        Identity {
            id: self.id,
            fp: self.fp,
        }
    }

    /// Where reading is in this file.
    pub fn position(&self) -> Position {
        Position {
            file: self.id,
            fingerprint: self.fp,
            offset: self.offset,
        }
    }

    pub fn error(&self, source: std::io::Error) -> TailError {
        TailError::Read {
            path: self.name.clone(),
            source,
        }
    }

    /// Reads at the current offset without moving it (the caller accepts the bytes first).
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, TailError> {
        loop {
            match self.file.read_at(buf, self.offset) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// Moves past `chunk`, just read at the current offset.
    pub fn advance(&mut self, chunk: &[u8], full_read: bool) {
        self.fp.extend_from(self.offset, chunk);
        self.offset += chunk.len() as u64;
        self.size_seen = self.size_seen.max(self.offset);
        // A short read from a regular file means its end was reached.
        self.at_eof = !full_read;
    }

    /// Whether the file still holds the contents we are reading: not shorter than what we
    /// read, and starting with the bytes we fingerprinted. `false` after copytruncate (or any
    /// truncation) even when the file has regrown past our offset meanwhile.
    pub fn intact(&self) -> Result<bool, TailError> {
        let size = self.size()?;
        Ok(size >= self.offset && self.fp.matches(&self.file).map_err(|e| self.error(e))?)
    }

    /// Whether `chunk`, just read at the current offset, came from the contents we were
    /// reading. Called when the file turned out replaced (truncated and regrown) after the
    /// read: if the file now holds the same bytes there, they are the new contents.
    pub fn chunk_is_old(&self, chunk: &[u8]) -> Result<bool, TailError> {
        let mut now = vec![0; chunk.len()];
        let n = self.read(&mut now)?;
        Ok(now[..n] != *chunk)
    }

    /// The same file to be read again from its start, as it is now (after a truncation).
    pub fn restarted(self) -> Result<Source, TailError> {
        let size = self.size()?;
        let fp = Fingerprint::read(&self.file).map_err(|e| self.error(e))?;
        Ok(Source {
            fp,
            offset: 0,
            size_seen: size,
            at_eof: false,
            ..self
        })
    }

    pub fn size(&self) -> Result<u64, TailError> {
        Ok(self.file.metadata().map_err(|e| self.error(e))?.len())
    }

    pub fn modified(&self) -> Option<SystemTime> {
        self.file.metadata().and_then(|m| m.modified()).ok()
    }

    /// For a file not read yet: let its fingerprint cover the first bytes it has now, so a
    /// truncation before we reach it is noticed. Only while it still starts with what the
    /// fingerprint covers.
    pub fn refresh_unread(&mut self) -> Result<(), TailError> {
        if self.offset > 0 || self.fp.is_full() {
            return Ok(());
        }
        let size = self.size()?;
        if size <= u64::from(self.fp.len) || size < self.size_seen || !self.intact()? {
            return Ok(());
        }
        self.fp = Fingerprint::read(&self.file).map_err(|e| self.error(e))?;
        self.size_seen = size;
        Ok(())
    }
}
