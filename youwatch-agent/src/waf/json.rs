//! A forgiving JSON walker over bytes, for audit-log lines: it visits the members we ask for
//! and skips everything else without building anything. Strings are returned as raw spans
//! (escapes left in place, decoded only when a value is actually used); string skipping jumps
//! from quote to quote with `memchr`, so the cost is mostly that of finding the quotes.
//!
//! Tolerated on purpose: invalid UTF-8, raw control bytes and NULs inside strings, duplicate
//! keys (the caller decides), trailing bytes after the top-level value. Not tolerated: a line
//! whose structure does not close (`Truncated`) or an unexpected byte where a value must be.

use std::borrow::Cow;

/// What went wrong, as a small closed set so bad lines can be counted per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JsonError {
    /// The line ended inside a value.
    Truncated,
    /// A byte that cannot start or continue a value here.
    Syntax,
    /// Nesting deeper than we accept.
    TooDeep,
}

/// Offsets of a string's raw contents (between the quotes) in the line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn get(self, line: &[u8]) -> &[u8] {
        line.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
    }

    pub fn is_empty(self) -> bool {
        self.start >= self.end
    }
}

const MAX_SKIP_DEPTH: u32 = 512;

pub struct Walker<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Walker<'a> {
    pub fn new(b: &'a [u8]) -> Walker<'a> {
        Walker { b, i: 0 }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                break;
            }
            self.i += 1;
        }
    }

    /// The next non-space byte, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Result<(), JsonError> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(_) => Err(JsonError::Syntax),
            None => Err(JsonError::Truncated),
        }
    }

    /// A string: its raw contents. The opening quote must be next.
    #[inline]
    pub fn string(&mut self) -> Result<Span, JsonError> {
        self.eat(b'"')?;
        let start = self.i;
        let end = self.string_end(start)?;
        self.i = end + 1;
        Ok(Span {
            start: start as u32,
            end: end as u32,
        })
    }

    /// Index of the closing quote of a string whose contents start at `from`.
    #[inline]
    fn string_end(&self, mut from: usize) -> Result<usize, JsonError> {
        loop {
            let Some(q) = memchr::memchr(b'"', &self.b[from..]) else {
                return Err(JsonError::Truncated);
            };
            let q = from + q;
            // Escaped when preceded by an odd number of backslashes.
            let mut k = q;
            while k > 0 && self.b[k - 1] == b'\\' {
                k -= 1;
            }
            if (q - k) % 2 == 0 {
                return Ok(q);
            }
            from = q + 1;
        }
    }

    /// Skips one value of any kind.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Err(JsonError::Truncated),
            Some(b'"') => self.string().map(drop),
            Some(b'{' | b'[') => self.skip_container(),
            Some(_) => self.scalar().map(drop),
        }
    }

    fn skip_container(&mut self) -> Result<(), JsonError> {
        let mut depth = 0u32;
        while self.i < self.b.len() {
            match self.b[self.i] {
                b'"' => {
                    self.i = self.string_end(self.i + 1)? + 1;
                    continue;
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_SKIP_DEPTH {
                        return Err(JsonError::TooDeep);
                    }
                }
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        Err(JsonError::Truncated)
    }

    /// A number, `true`, `false` or `null`: its raw bytes.
    pub fn scalar(&mut self) -> Result<&'a [u8], JsonError> {
        self.ws();
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if matches!(
                c,
                b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'{' | b'['
            ) {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(match self.b.get(self.i) {
                None => JsonError::Truncated,
                Some(_) => JsonError::Syntax,
            });
        }
        Ok(&self.b[start..self.i])
    }

    /// A number given as a number or as a string of digits (`403` or `"403"`): `None` when it
    /// is neither (the value is consumed either way).
    pub fn number(&mut self) -> Result<Option<u64>, JsonError> {
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                Ok(parse_u64(s.get(self.b)))
            }
            Some(b'{' | b'[') => self.skip_container().map(|()| None),
            _ => Ok(parse_u64(self.scalar()?)),
        }
    }

    /// A string value, or `None` (consumed) when the value is not a string.
    pub fn opt_string(&mut self) -> Result<Option<Span>, JsonError> {
        if self.peek() == Some(b'"') {
            self.string().map(Some)
        } else {
            self.skip().map(|()| None)
        }
    }

    /// Visits each member of an object; `f` must consume the value. A non-object value is
    /// skipped (`Ok(false)`).
    #[inline]
    pub fn object(
        &mut self,
        mut f: impl FnMut(&mut Self, &'a [u8]) -> Result<(), JsonError>,
    ) -> Result<bool, JsonError> {
        if self.peek() != Some(b'{') {
            self.skip()?;
            return Ok(false);
        }
        self.i += 1;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(true);
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            f(self, key.get(self.b))?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(true);
                }
                Some(_) => return Err(JsonError::Syntax),
                None => return Err(JsonError::Truncated),
            }
        }
    }

    /// Visits each element of an array; `f` must consume it. A non-array value is skipped.
    #[inline]
    pub fn array(
        &mut self,
        mut f: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<bool, JsonError> {
        if self.peek() != Some(b'[') {
            self.skip()?;
            return Ok(false);
        }
        self.i += 1;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(true);
        }
        loop {
            f(self)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(true);
                }
                Some(_) => return Err(JsonError::Syntax),
                None => return Err(JsonError::Truncated),
            }
        }
    }

    /// The whole input.
    pub fn input(&self) -> &'a [u8] {
        self.b
    }

    /// Position of the next byte (to span a whole value).
    pub fn offset(&self) -> u32 {
        self.i as u32
    }
}

/// Digits (optionally surrounded by spaces) as a number; a decimal part is dropped.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = s.trim_ascii();
    let int = match memchr::memchr(b'.', s) {
        Some(dot) => &s[..dot],
        None => s,
    };
    if int.is_empty() || int.len() > 19 {
        return None;
    }
    let mut n = 0u64;
    for &c in int {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(c - b'0');
    }
    Some(n)
}

/// Iterates the strings of a raw array span (as produced by [`Walker::object`] callers that
/// keep `[start, end)` of an array value); non-string elements are skipped.
pub fn strings_in(array: &[u8], mut f: impl FnMut(&[u8])) {
    let mut w = Walker::new(array);
    let _ = w.array(|w| {
        if let Some(s) = w.opt_string()? {
            f(s.get(array));
        }
        Ok(())
    });
}

/// Decodes JSON escapes in a raw string. Invalid escapes are kept as they are; `\u0000` and
/// lone surrogates become U+FFFD. The result is bytes: the input need not be UTF-8.
pub fn unescape(raw: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', raw).is_none() {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let c = raw[i];
        if c != b'\\' || i + 1 >= raw.len() {
            out.push(c);
            i += 1;
            continue;
        }
        let e = raw[i + 1];
        i += 2;
        match e {
            b'"' | b'\\' | b'/' => out.push(e),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'u' => {
                let hex = |at: usize| {
                    raw.get(at..at + 4)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                };
                let Some(mut cp) = hex(i) else {
                    out.extend_from_slice(b"\\u");
                    continue;
                };
                i += 4;
                if (0xD800..0xDC00).contains(&cp)
                    && raw.get(i..i + 2) == Some(b"\\u")
                    && let Some(lo) = hex(i + 2)
                    && (0xDC00..0xE000).contains(&lo)
                {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    i += 6;
                }
                let ch = char::from_u32(cp)
                    .filter(|&c| c != '\0')
                    .unwrap_or('\u{FFFD}');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Cow::Owned(out)
}

/// A raw JSON string as text for people: unescaped, invalid UTF-8 replaced, control
/// characters (NULs included) dropped, cut to `max` characters.
pub fn display(raw: &[u8], max: usize) -> String {
    let bytes = unescape(raw);
    let text = String::from_utf8_lossy(&bytes);
    let mut out = String::with_capacity(text.len().min(max));
    for (n, c) in text.chars().filter(|c| !c.is_control()).enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_and_skips() {
        let line = br#"{"a": [1, {"x": "y\"}"}], "b" : "q\\", "c": 7, "d": "12"}"#;
        let mut w = Walker::new(line);
        let mut seen = Vec::new();
        w.object(|w, k| {
            match k {
                b"b" => seen.push(w.string()?.get(line).to_vec()),
                b"c" | b"d" => seen.push(w.number()?.unwrap().to_string().into_bytes()),
                _ => w.skip()?,
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [b"q\\\\".to_vec(), b"7".to_vec(), b"12".to_vec()]);
    }

    #[test]
    fn truncated_and_garbage_are_errors_not_panics() {
        for bad in [
            &b"{\"a\": \"x"[..],
            b"{\"a\":",
            b"{\"a\" 1}",
            b"{",
            b"[[[[",
            b"\"\\",
        ] {
            let mut w = Walker::new(bad);
            assert!(w.object(|w, _| w.skip()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unescape_handles_unicode_and_nul() {
        assert_eq!(
            &*unescape(br"a\u00e9\ud83d\ude00\u0000\x"),
            "aé😀\u{FFFD}\\x".as_bytes()
        );
        assert_eq!(display(b"ab\\r\\ncd\xff", 10), "abcd\u{FFFD}");
        assert_eq!(display(b"abcdef", 3), "abc…");
    }

    #[test]
    fn numbers_in_all_spellings() {
        assert_eq!(parse_u64(b"1.1"), Some(1));
        assert_eq!(parse_u64(b" 403 "), Some(403));
        assert_eq!(parse_u64(b"-1"), None);
        assert_eq!(parse_u64(b"99999999999999999999"), None);
    }
}
