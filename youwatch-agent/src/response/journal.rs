//! The journal of decided actions: what the response stage has taken from the bus but not
//! yet finished, in `state_dir/response-journal.jsonl`, so a decision survives `kill -9`.
//!
//! One JSON object per line: `{"add":<Decided>}` when an action is decided (before the bus is
//! told it was taken), `{"done":<id>}` when it ended (applied, refused, given up). Opening
//! replays the file and rewrites it with only the unfinished actions; a torn last line (a kill
//! in the middle of a write) is ignored. The file is rewritten again whenever finished
//! entries outnumber the pending ones, so it stays small.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::action::Decided;

pub const JOURNAL_FILE: &str = "response-journal.jsonl";

/// Finished entries tolerated in the file before it is rewritten (also at least as many as
/// the pending ones).
const COMPACT_AFTER: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("response journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Record {
    Add(Box<Decided>),
    Done(u64),
}

pub struct Journal {
    path: PathBuf,
    file: File,
    sync: bool,
    pending: BTreeMap<u64, Decided>,
    finished_in_file: usize,
    next_id: u64,
}

impl Journal {
    /// Opens (creating) the journal in `state_dir` and returns it with the actions that were
    /// pending when the agent last stopped, oldest first.
    pub fn open(state_dir: &Path, sync: bool) -> Result<(Journal, Vec<Decided>), JournalError> {
        let path = state_dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut pending = BTreeMap::new();
        let mut max_id = 0;
        let mut unreadable = 0usize;
        match File::open(&path) {
            Ok(f) => {
                for line in BufReader::new(f).split(b'\n') {
                    let line = line.map_err(io)?;
                    match serde_json::from_slice::<Record>(&line) {
                        Ok(Record::Add(d)) => {
                            max_id = max_id.max(d.id);
                            pending.insert(d.id, *d);
                        }
                        Ok(Record::Done(id)) => {
                            max_id = max_id.max(id);
                            pending.remove(&id);
                        }
                        Err(_) if line.is_empty() => {}
                        Err(_) => unreadable += 1,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        if unreadable > 0 {
            tracing::warn!(path = %path.display(), lines = unreadable, "skipped unreadable response journal lines (a write cut by a kill)");
        }
        let file = rewrite(&path, pending.values(), sync).map_err(io)?;
        let recovered: Vec<Decided> = pending.values().cloned().collect();
        Ok((
            Journal {
                path,
                file,
                sync,
                pending,
                finished_in_file: 0,
                next_id: max_id + 1,
            },
            recovered,
        ))
    }

    /// A fresh id for a decision.
    pub fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Records a decided action; once this returns, a restart carries it out.
    pub fn add(&mut self, d: &Decided) -> Result<(), JournalError> {
        self.append(&Record::Add(Box::new(d.clone())))?;
        self.pending.insert(d.id, d.clone());
        Ok(())
    }

    /// Records that an action ended.
    pub fn done(&mut self, id: u64) -> Result<(), JournalError> {
        if self.pending.remove(&id).is_none() {
            return Ok(());
        }
        self.append(&Record::Done(id))?;
        self.finished_in_file += 1;
        if self.finished_in_file >= COMPACT_AFTER.max(self.pending.len()) {
            self.file =
                rewrite(&self.path, self.pending.values(), self.sync).map_err(|source| {
                    JournalError::Io {
                        path: self.path.clone(),
                        source,
                    }
                })?;
            self.finished_in_file = 0;
        }
        Ok(())
    }

    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        // One write on an O_APPEND file: a kill leaves the line whole or torn at its end.
        let result = self.file.write_all(&line).and_then(|()| {
            if self.sync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        result.map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `pending` to a temporary file and renames it over `path`; returns the new file
/// opened for appending.
fn rewrite<'a>(
    path: &Path,
    pending: impl Iterator<Item = &'a Decided>,
    sync: bool,
) -> std::io::Result<File> {
    let tmp = path.with_extension("jsonl.tmp");
    {
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        for d in pending {
            serde_json::to_writer(&mut out, &Record::Add(Box::new(d.clone())))?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)?;
    OpenOptions::new().append(true).open(path)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::{
        detection::{Origin, Priority},
        response::action::{Action, DeletePod, Evidence},
    };

    fn decided(id: u64) -> Decided {
        Decided {
            id,
            playbook: "p".into(),
            action: Action::DeletePod(DeletePod {
                namespace: "shop".into(),
                name: format!("pod-{id}"),
                uid: Some(format!("uid-{id}")),
                owner: None,
                labels: Default::default(),
                grace_period_seconds: 0,
            }),
            evidence: Evidence {
                rule: "r".into(),
                priority: Priority::Critical,
                origin: Origin::Rules,
                time: UNIX_EPOCH,
                output: String::new(),
                fields: Default::default(),
            },
            decided_at: UNIX_EPOCH + Duration::from_secs(5),
            give_up_at: UNIX_EPOCH + Duration::from_secs(500),
            dry_run: false,
        }
    }

    #[test]
    fn pending_actions_survive_a_restart_and_finished_ones_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, recovered) = Journal::open(dir.path(), false).unwrap();
        assert!(recovered.is_empty());
        for _ in 0..3 {
            let id = j.next_id();
            j.add(&decided(id)).unwrap();
        }
        j.done(2).unwrap();
        drop(j);
        let (mut j, recovered) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(recovered, vec![decided(1), decided(3)]);
        assert_eq!(j.next_id(), 4, "ids are never reused");
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        j.add(&decided(1)).unwrap();
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(JOURNAL_FILE))
            .unwrap();
        f.write_all(br#"{"add":{"id":2,"play"#).unwrap();
        let (_, recovered) = Journal::open(dir.path(), false).unwrap();
        assert_eq!(recovered, vec![decided(1)]);
    }

    #[test]
    fn the_file_is_compacted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), false).unwrap();
        for _ in 0..(COMPACT_AFTER + 10) {
            let id = j.next_id();
            j.add(&decided(id)).unwrap();
            j.done(id).unwrap();
        }
        let lines = std::fs::read_to_string(dir.path().join(JOURNAL_FILE))
            .unwrap()
            .lines()
            .count();
        assert!(lines < 100, "{lines} lines");
    }

    #[test]
    fn an_unwritable_state_dir_is_named() {
        let err = Journal::open(Path::new("/proc/self/youwatch"), false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/proc/self/youwatch"), "{err}");
    }
}
