//! What the follower hands out: complete lines of one file, each with the position just
//! after it.

use prometheus_client::metrics::counter::Counter;

use super::cursor::{FileId, Fingerprint, Position};

/// Complete lines from one file. Iterate it once (over-long lines are counted as they are
/// skipped); commit [`Batch::end`] once all are processed.
pub struct Batch<'a> {
    pub(super) data: &'a [u8],
    /// File offset of `data[0]`.
    pub(super) data_offset: u64,
    pub(super) file: FileId,
    pub(super) fingerprint: Fingerprint,
    pub(super) max_line: usize,
    pub(super) long_lines: &'a Counter,
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
