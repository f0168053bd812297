//! Where things were written: files, `file:line:column` positions, and the mapping from a
//! condition's text (possibly several YAML scalars joined by `append`) back to the file.

use std::{fmt, sync::Arc};

/// A loaded rules file: its name as shown in messages, and its text.
#[derive(Debug)]
pub struct SourceFile {
    pub name: Arc<str>,
    pub text: String,
    /// Byte offset of each line's start, for positions without rescanning the file.
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<Arc<str>>, text: String) -> Arc<Self> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Arc::new(Self {
            name: name.into(),
            text,
            line_starts,
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_column(&self, byte: usize) -> (u32, u32) {
        let byte = floor_char_boundary(&self.text, byte.min(self.text.len()));
        let line = self.line_starts.partition_point(|&start| start <= byte);
        let line_start = self.line_starts[line.saturating_sub(1)];
        let column = self.text[line_start..byte].chars().count() + 1;
        (
            u32::try_from(line).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    pub fn pos(&self, byte: usize) -> Pos {
        let (line, column) = self.line_column(byte);
        Pos {
            file: self.name.clone(),
            line,
            column,
        }
    }
}

/// `file:line:column`, 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Pos {
    /// A position for text that has no file (built-in defaults assembled in code, tests).
    pub fn unknown(file: &str) -> Pos {
        Pos {
            file: file.into(),
            line: 0,
            column: 0,
        }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A YAML scalar's value with where its text starts in its file.
#[derive(Clone, Debug)]
pub struct Scalar {
    pub value: String,
    pub pos: Pos,
    pub origin: Option<ScalarOrigin>,
}

/// The file and byte offset of a scalar, to map offsets inside its value back to the file.
#[derive(Clone, Debug)]
pub struct ScalarOrigin {
    pub file: Arc<SourceFile>,
    pub byte: usize,
}

/// A condition's text made of one or more scalars (a macro or rule and its appends),
/// joined by a space as Falco joins them.
#[derive(Clone, Debug)]
pub struct SourceText {
    text: String,
    /// (start offset in `text`, the scalar it came from).
    segments: Vec<(usize, Scalar)>,
}

impl SourceText {
    pub fn new(first: Scalar) -> Self {
        Self {
            text: first.value.clone(),
            segments: vec![(0, first)],
        }
    }

    /// Text that comes from no file (settings, tests); positions point at `what`.
    pub fn literal(text: &str) -> Self {
        Self::new(Scalar {
            value: text.to_owned(),
            pos: Pos::unknown(text),
            origin: None,
        })
    }

    pub fn append(&mut self, more: Scalar) {
        self.text.push(' ');
        self.segments.push((self.text.len(), more.clone()));
        self.text.push_str(&more.value);
    }

    /// Appends every scalar of `other`.
    pub fn append_text(&mut self, other: &SourceText) {
        for (_, scalar) in &other.segments {
            self.append(scalar.clone());
        }
    }

    pub fn replace(&mut self, with: Scalar) {
        *self = Self::new(with);
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Where the first scalar starts.
    pub fn start(&self) -> Pos {
        self.segments
            .first()
            .map(|(_, s)| s.pos.clone())
            .unwrap_or_else(|| Pos::unknown("<condition>"))
    }

    /// The file position of byte `offset` of the text.
    pub fn pos(&self, offset: usize) -> Pos {
        let Some((start, scalar)) = self
            .segments
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .or(self.segments.first())
        else {
            return Pos::unknown("<condition>");
        };
        // Past the last token (an error at the end): point just after it, not at the next line.
        let local = offset
            .saturating_sub(*start)
            .min(scalar.value.trim_end().len());
        match &scalar.origin {
            Some(origin) => {
                origin
                    .file
                    .pos(align(&scalar.value, &origin.file.text, origin.byte, local))
            }
            None => scalar.pos.clone(),
        }
    }
}

/// A condition as it is compiled: its text after Falco's rewriting (exceptions appended,
/// list names replaced by their items) with, for every byte, where it came from, so that an
/// error still points into the file.
#[derive(Clone, Debug)]
pub struct CondText {
    text: String,
    /// Per byte of `text`: an offset into `source`, or `EXTRA | i` for `extra[i]`.
    origin: Vec<u32>,
    source: SourceText,
    /// Where text that is not from `source` was written (an exception).
    extra: Vec<Pos>,
}

const EXTRA: u32 = 1 << 31;

/// Conditions longer than this once rewritten are refused: list substitution can grow text
/// (a list whose items name later lists), and memory must stay bounded.
pub const MAX_CONDITION_BYTES: usize = 1 << 20;

impl CondText {
    pub fn new(source: &SourceText) -> Self {
        let len = u32::try_from(source.text.len()).unwrap_or(u32::MAX);
        CondText {
            text: source.text.clone(),
            origin: (0..len).collect(),
            source: source.clone(),
            extra: Vec::new(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Wraps the text in parentheses (attributed to its first and last bytes).
    pub fn parenthesize(&mut self) {
        let last = self.origin.last().copied().unwrap_or(0);
        let first = self.origin.first().copied().unwrap_or(0);
        self.text.insert(0, '(');
        self.origin.insert(0, first);
        self.text.push(')');
        self.origin.push(last);
    }

    /// Appends text written at `pos`.
    pub fn push_extra(&mut self, text: &str, pos: Pos) {
        let i = u32::try_from(self.extra.len()).unwrap_or(0) | EXTRA;
        self.extra.push(pos);
        self.text.push_str(text);
        self.origin.extend(std::iter::repeat_n(i, text.len()));
    }

    /// Replaces bytes `start..end` with `with`, attributed to where byte `at` came from.
    pub fn replace_range(
        &mut self,
        start: usize,
        end: usize,
        with: &str,
        at: usize,
    ) -> Result<(), String> {
        if self.text.len() - (end - start) + with.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "the condition is longer than {MAX_CONDITION_BYTES} bytes once lists are substituted"
            ));
        }
        let o = self.origin.get(at).copied().unwrap_or(0);
        self.text.replace_range(start..end, with);
        self.origin
            .splice(start..end, std::iter::repeat_n(o, with.len()));
        Ok(())
    }

    /// The file position of byte `offset` of the text.
    pub fn pos(&self, offset: usize) -> Pos {
        let o = self
            .origin
            .get(offset)
            .or(self.origin.last())
            .copied()
            .unwrap_or(0);
        if o & EXTRA != 0 {
            let i = usize::try_from(o & !EXTRA).unwrap_or(0);
            return self.extra.get(i).cloned().unwrap_or_else(|| self.start());
        }
        // Past the end: point just after the last byte.
        let past = usize::from(offset >= self.origin.len() && !self.origin.is_empty());
        self.source.pos(usize::try_from(o).unwrap_or(0) + past)
    }

    /// Whether byte `offset` comes from text appended with [`CondText::push_extra`], and
    /// which.
    pub fn extra_index(&self, offset: usize) -> Option<usize> {
        let o = *self.origin.get(offset).or(self.origin.last())?;
        (o & EXTRA != 0).then(|| usize::try_from(o & !EXTRA).unwrap_or(0))
    }

    /// Where the condition starts.
    pub fn start(&self) -> Pos {
        self.source.start()
    }
}

/// Maps byte `target` of a scalar's `value` to a byte of `src`, where the scalar's text
/// starts at `start`. Walks both in step: equal bytes advance together; the source's extra
/// blanks (indentation, line breaks folded into spaces), quotes and block indicators are
/// skipped. Escapes in quoted scalars can make it drift slightly; it never goes past the end.
fn align(value: &str, src: &str, start: usize, target: usize) -> usize {
    let v = value.as_bytes();
    let s = src.as_bytes();
    let mut j = start.min(s.len());
    // Skip a block scalar header (`>`, `|-`...) up to its line end, or an opening quote.
    match s.get(j) {
        Some(b'>' | b'|') => {
            while j < s.len() && s[j] != b'\n' {
                j += 1;
            }
        }
        Some(b'"' | b'\'') if v.first() != s.get(j) => j += 1,
        _ => {}
    }
    let mut i = 0;
    while i < target && j < s.len() {
        let (a, b) = (v[i], s[j]);
        if a == b {
            i += 1;
            j += 1;
        } else if b.is_ascii_whitespace() {
            j += 1;
        } else if a.is_ascii_whitespace() {
            i += 1;
        } else {
            i += 1;
            j += 1;
        }
    }
    // Land on the token itself, not on the blanks before it.
    while j < s.len()
        && s[j].is_ascii_whitespace()
        && v.get(i).is_some_and(|c| !c.is_ascii_whitespace())
    {
        j += 1;
    }
    j
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(file: &Arc<SourceFile>, value: &str, byte: usize) -> Scalar {
        Scalar {
            value: value.into(),
            pos: file.pos(byte),
            origin: Some(ScalarOrigin {
                file: file.clone(),
                byte,
            }),
        }
    }

    #[test]
    fn folded_block_scalar_maps_to_lines() {
        let text = "- rule: x\n  condition: >\n    spawned_process\n    and bad token\n".to_owned();
        let file = SourceFile::new("r.yaml", text);
        let start = file.text.find("spawned").unwrap();
        let value = "spawned_process and bad token\n";
        let st = SourceText::new(scalar(&file, value, start));
        let offset = value.find("bad").unwrap();
        assert_eq!(st.pos(offset).to_string(), "r.yaml:4:9");
        assert_eq!(st.pos(0).to_string(), "r.yaml:3:5");
    }

    #[test]
    fn quoted_scalar_and_appends() {
        let text = "a: \"x = 1\"\nb: y and z\n".to_owned();
        let file = SourceFile::new("f.yaml", text);
        let mut st = SourceText::new(scalar(&file, "x = 1", 3));
        st.append(scalar(&file, "y and z", 14));
        assert_eq!(st.as_str(), "x = 1 y and z");
        assert_eq!(st.pos(4).to_string(), "f.yaml:1:9");
        assert_eq!(
            st.pos(st.as_str().find('z').unwrap()).to_string(),
            "f.yaml:2:10"
        );
    }

    #[test]
    fn line_column_counts_characters() {
        let file = SourceFile::new("u.yaml", "é: x\n".to_owned());
        assert_eq!(file.line_column(4), (1, 4));
    }
}
