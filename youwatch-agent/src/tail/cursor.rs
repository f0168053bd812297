//! Where a follower is in a file, and how that is saved in the state directory.
//!
//! A position names the file by device + inode *and* a fingerprint of its first bytes: inode
//! numbers are reused after delete-and-recreate, and copytruncate keeps the inode, so the
//! fingerprint is what tells "the same file" from "a new file in the same place".

use std::{
    fs::File,
    io::Write,
    os::unix::fs::{FileExt, MetadataExt},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::TailError;

/// Device and inode of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// FNV-1a hash of a file's first `len` bytes (`len` ≤ [`Fingerprint::MAX_LEN`]). A young
/// file's fingerprint covers what it had so far and grows with it up to the maximum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

impl Fingerprint {
    pub const MAX_LEN: usize = 256;

    pub fn of(prefix: &[u8]) -> Fingerprint {
        let mut fp = Fingerprint {
            len: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        };
        fp.extend(prefix);
        fp
    }

    /// Grows the fingerprint with the bytes that follow what it covers (FNV-1a is a running
    /// hash), up to [`MAX_LEN`](Self::MAX_LEN) in all.
    pub fn extend(&mut self, more: &[u8]) {
        if self.len == 0 {
            self.hash = 0xcbf2_9ce4_8422_2325;
        }
        let take = (Self::MAX_LEN - (self.len as usize).min(Self::MAX_LEN)).min(more.len());
        for &b in &more[..take] {
            self.hash ^= u64::from(b);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.len += take as u32;
    }

    /// Grows the fingerprint with `chunk`, read at file offset `at`, where it covers the
    /// bytes just after the fingerprint's end.
    pub fn extend_from(&mut self, at: u64, chunk: &[u8]) {
        let len = u64::from(self.len);
        if self.is_full() || at > len || at + chunk.len() as u64 <= len {
            return;
        }
        self.extend(&chunk[(len - at) as usize..]);
    }

    /// The fingerprint of `file` as it is now (its first `MAX_LEN` bytes, or fewer).
    pub fn read(file: &File) -> std::io::Result<Fingerprint> {
        let mut buf = [0u8; Self::MAX_LEN];
        let n = read_prefix(file, &mut buf)?;
        Ok(Fingerprint::of(&buf[..n]))
    }

    /// Whether `file` still starts with the bytes this fingerprint was taken from.
    pub fn matches(&self, file: &File) -> std::io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let mut buf = [0u8; Self::MAX_LEN];
        let want = (self.len as usize).min(Self::MAX_LEN);
        let n = read_prefix(file, &mut buf[..want])?;
        Ok(n == want && Fingerprint::of(&buf[..n]) == *self)
    }

    pub fn is_full(&self) -> bool {
        self.len as usize >= Self::MAX_LEN
    }
}

fn read_prefix(file: &File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A place in a followed file: just after a line the consumer has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub file: FileId,
    pub fingerprint: Fingerprint,
    pub offset: u64,
}

/// What the cursor file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCursor {
    /// The followed path, so a cursor is never applied to another file after a config change.
    pub path: PathBuf,
    pub position: Position,
    /// Opaque to the follower: a consumer that needs exactly-once output saves its own
    /// progress (e.g. the length of its output file) together with the position.
    pub consumer: u64,
}

/// The cursor file: replaced atomically (write a temporary file, rename it over), so a
/// `kill -9` at any instant leaves either the old or the new cursor, never a torn one.
#[derive(Clone, Debug)]
pub struct CursorStore {
    path: PathBuf,
    sync: bool,
}

impl CursorStore {
    /// `sync`: also fsync on each save (survives a machine crash, not only a process kill).
    pub fn new(path: PathBuf, sync: bool) -> CursorStore {
        CursorStore { path, sync }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor; `None` when there is none yet. A file that cannot be read as a cursor
    /// is an error naming it (the caller decides whether to start afresh).
    pub fn load(&self) -> Result<Option<SavedCursor>, TailError> {
        let text = match std::fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TailError::Cursor {
                    path: self.path.clone(),
                    message: source.to_string(),
                });
            }
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| TailError::Cursor {
                path: self.path.clone(),
                message: format!("not a cursor file ({e}); delete it to start afresh"),
            })
    }

    pub fn save(&self, cursor: &SavedCursor) -> Result<(), TailError> {
        let err = |e: std::io::Error| TailError::Cursor {
            path: self.path.clone(),
            message: format!("saving: {e}"),
        };
        if let Some(dir) = self.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = File::create(&tmp).map_err(err)?;
        let bytes = serde_json::to_vec(cursor).expect("a cursor always serialises");
        file.write_all(&bytes).map_err(err)?;
        if self.sync {
            file.sync_data().map_err(err)?;
        }
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_tracks_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"hello").unwrap();
        let f = File::open(&path).unwrap();
        let fp = Fingerprint::read(&f).unwrap();
        assert_eq!(fp.len, 5);
        assert!(fp.matches(&f).unwrap());
        std::fs::write(&path, b"hellO world").unwrap();
        assert!(!fp.matches(&f).unwrap());
        std::fs::write(&path, b"hel").unwrap();
        assert!(!fp.matches(&f).unwrap(), "shorter than the fingerprint");
    }

    #[test]
    fn fingerprint_grows_like_a_fresh_one() {
        let data: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
        let mut fp = Fingerprint::default();
        fp.extend_from(0, &data[..10]);
        fp.extend_from(5, &data[5..100]);
        fp.extend_from(200, &data[200..300]); // a gap: not after the end, ignored
        assert_eq!(fp, Fingerprint::of(&data[..100]));
        fp.extend_from(100, &data[100..]);
        assert_eq!(fp, Fingerprint::of(&data[..Fingerprint::MAX_LEN]));
        assert!(fp.is_full());
    }

    #[test]
    fn cursor_round_trip_and_bad_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = CursorStore::new(dir.path().join("sub/c.json"), false);
        assert_eq!(store.load().unwrap(), None);
        let saved = SavedCursor {
            path: "/x".into(),
            position: Position {
                file: FileId { dev: 1, ino: 2 },
                fingerprint: Fingerprint::of(b"ab"),
                offset: 9,
            },
            consumer: 7,
        };
        store.save(&saved).unwrap();
        assert_eq!(store.load().unwrap(), Some(saved));
        std::fs::write(store.path(), b"{garbage").unwrap();
        let msg = store.load().unwrap_err().to_string();
        assert!(msg.contains("c.json"), "{msg}");
    }
}
