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
    /// Unescaped quotes of `b`, one bit per byte (see [`QuoteIndex`]); empty: search bytes.
    quotes: &'a [u64],
}

/// A bitmap of the unescaped `"` of a line, built 64 bytes at a time with SIMD compares and
/// simdjson's carry trick for backslash runs. With it, finding the end of any string is a
/// bit scan, whatever the number of strings (an audit entry has ~140).
#[derive(Default)]
pub struct QuoteIndex {
    bits: Vec<u64>,
}

impl QuoteIndex {
    /// The index of the last line built.
    pub fn bits(&self) -> &[u64] {
        &self.bits
    }

    pub fn build(&mut self, b: &[u8]) -> &[u64] {
        self.bits.clear();
        self.bits.reserve(b.len().div_ceil(64));
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { build_avx2(b, &mut self.bits) };
            return &self.bits;
        }
        build_with(b, &mut self.bits, masks64);
        &self.bits
    }
}

#[inline(always)]
fn build_with(b: &[u8], bits: &mut Vec<u64>, masks: impl Fn(&[u8; 64]) -> (u64, u64)) {
    let mut prev_escaped = 0u64;
    let mut chunks = b.chunks_exact(64);
    for chunk in &mut chunks {
        let (quote, backslash) = masks(chunk.try_into().expect("64 bytes"));
        let escaped = escaped_mask(backslash, &mut prev_escaped);
        bits.push(quote & !escaped);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 64];
        last[..rest.len()].copy_from_slice(rest);
        let (quote, backslash) = masks(&last);
        let escaped = escaped_mask(backslash, &mut prev_escaped);
        bits.push(quote & !escaped);
    }
}

/// [`build_with`] compiled for AVX2: two 32-byte compares per 64 bytes instead of four.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn build_avx2(b: &[u8], bits: &mut Vec<u64>) {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
    };
    build_with(b, bits, |chunk| {
        let (mut quote, mut backslash) = (0u64, 0u64);
        for k in 0..2 {
            // SAFETY: AVX2 is enabled for this function; bytes 32k..32k+32 are in the chunk.
            let (q, bs) = unsafe {
                let v = _mm256_loadu_si256(chunk.as_ptr().add(32 * k).cast::<__m256i>());
                (
                    _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'"' as i8))) as u32,
                    _mm256_movemask_epi8(_mm256_cmpeq_epi8(v, _mm256_set1_epi8(b'\\' as i8)))
                        as u32,
                )
            };
            quote |= u64::from(q) << (32 * k);
            backslash |= u64::from(bs) << (32 * k);
        }
        (quote, backslash)
    });
}

/// Bits of `"` and of `\\` in 64 bytes.
#[inline(always)]
fn masks64(chunk: &[u8; 64]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let (mut quote, mut backslash) = (0u64, 0u64);
        for k in 0..4 {
            // SAFETY: SSE2 is part of x86_64; bytes 16k..16k+16 are inside the chunk.
            let (q, bs) = unsafe {
                let v = _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast::<__m128i>());
                (
                    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8))) as u16,
                    _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8))) as u16,
                )
            };
            quote |= u64::from(q) << (16 * k);
            backslash |= u64::from(bs) << (16 * k);
        }
        (quote, backslash)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut quote, mut backslash) = (0u64, 0u64);
        for (k, &c) in chunk.iter().enumerate() {
            quote |= u64::from(c == b'"') << k;
            backslash |= u64::from(c == b'\\') << k;
        }
        (quote, backslash)
    }
}

/// Bits of the characters escaped by a backslash, given the block's backslashes and whether
/// the block starts escaped (updated for the next block). Runs of backslashes escape
/// alternately; an odd-length run escapes the character after it.
#[inline(always)]
fn escaped_mask(backslash: u64, prev_escaped: &mut u64) -> u64 {
    if backslash == 0 && *prev_escaped == 0 {
        return 0;
    }
    const EVEN: u64 = 0x5555_5555_5555_5555;
    let backslash = backslash & !*prev_escaped;
    let follows_escape = (backslash << 1) | *prev_escaped;
    let odd_starts = backslash & !EVEN & !follows_escape;
    let (even_starts, overflow) = odd_starts.overflowing_add(backslash);
    *prev_escaped = u64::from(overflow);
    (EVEN ^ (even_starts << 1)) & follows_escape
}

impl<'a> Walker<'a> {
    pub fn new(b: &'a [u8]) -> Walker<'a> {
        Walker {
            b,
            i: 0,
            quotes: &[],
        }
    }

    /// A walker using `quotes`, the [`QuoteIndex`] of `b`, starting at byte `at`.
    pub fn with_index(b: &'a [u8], quotes: &'a [u64], at: usize) -> Walker<'a> {
        Walker { b, i: at, quotes }
    }

    #[inline]
    fn ws(&mut self) {
        self.peek();
    }

    /// The next non-space byte, not consumed. Audit logs are compact JSON: the byte at hand
    /// is almost never a space, so that check comes first and the loop stays out of line.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        match self.b.get(self.i) {
            Some(&c) if c > b' ' => Some(c),
            _ => self.peek_past_spaces(),
        }
    }

    #[cold]
    #[inline(never)]
    fn peek_past_spaces(&mut self) -> Option<u8> {
        while let Some(&c) = self.b.get(self.i) {
            if !matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(c);
            }
            self.i += 1;
        }
        None
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
        self.string_rest()
    }

    /// A string whose opening quote was just consumed.
    #[inline(always)]
    fn string_rest(&mut self) -> Result<Span, JsonError> {
        let start = self.i;
        let end = self.string_end(start)?;
        self.i = end + 1;
        Ok(Span {
            start: start as u32,
            end: end as u32,
        })
    }

    /// Index of the closing quote of a string whose contents start at `from`.
    #[inline(always)]
    fn string_end(&self, from: usize) -> Result<usize, JsonError> {
        if self.quotes.is_empty() {
            return self.string_end_scan(from);
        }
        let mut w = from / 64;
        let mut m = *self.quotes.get(w).ok_or(JsonError::Truncated)? & (!0u64 << (from % 64));
        while m == 0 {
            w += 1;
            m = *self.quotes.get(w).ok_or(JsonError::Truncated)?;
        }
        let q = w * 64 + m.trailing_zeros() as usize;
        if q < self.b.len() {
            Ok(q)
        } else {
            Err(JsonError::Truncated)
        }
    }

    /// `string_end` without an index: search quotes, count the backslashes before each.
    #[cold]
    #[inline(never)]
    fn string_end_scan(&self, mut from: usize) -> Result<usize, JsonError> {
        loop {
            let Some(q) = find_quote(&self.b[from..]) else {
                return Err(JsonError::Truncated);
            };
            let q = from + q;
            let mut k = q;
            while k > 0 && self.b[k - 1] == b'\\' {
                k -= 1;
            }
            if (q - k).is_multiple_of(2) {
                return Ok(q);
            }
            from = q + 1;
        }
    }

    /// Skips one value of any kind.
    pub fn skip(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Err(JsonError::Truncated),
            Some(b'"') => {
                self.i += 1;
                self.string_rest().map(drop)
            }
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
                self.i += 1;
                let s = self.string_rest()?;
                Ok(parse_u64(s.get(self.b)))
            }
            Some(b'{' | b'[') => self.skip_container().map(|()| None),
            _ => Ok(parse_u64(self.scalar()?)),
        }
    }

    /// A string value, or `None` (consumed) when the value is not a string.
    pub fn opt_string(&mut self) -> Result<Option<Span>, JsonError> {
        if self.peek() == Some(b'"') {
            self.i += 1;
            self.string_rest().map(Some)
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
        self.sequence(b'{', b'}', |w| {
            let key = w.string()?;
            w.eat(b':')?;
            f(w, key.get(w.b))
        })
    }

    /// Visits each element of an array; `f` must consume it. A non-array value is skipped.
    #[inline]
    pub fn array(
        &mut self,
        f: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<bool, JsonError> {
        self.sequence(b'[', b']', f)
    }

    /// `open` item (`,` item)* `close`, each item consumed by `f`; any other value is skipped.
    #[inline(always)]
    fn sequence(
        &mut self,
        open: u8,
        close: u8,
        mut f: impl FnMut(&mut Self) -> Result<(), JsonError>,
    ) -> Result<bool, JsonError> {
        if self.peek() != Some(open) {
            self.skip()?;
            return Ok(false);
        }
        self.i += 1;
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(true);
        }
        loop {
            f(self)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {
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

/// The first `"` in `hay`. Most JSON strings in an audit log are short, so the first 64
/// bytes are checked inline 16 at a time before handing the rest to `memchr`.
#[inline(always)]
fn find_quote(hay: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        let mut i = 0;
        while i + 16 <= hay.len() && i < 64 {
            // SAFETY: SSE2 is part of x86_64; the 16 bytes at `i` are inside `hay`.
            let mask = unsafe {
                let v = _mm_loadu_si128(hay.as_ptr().add(i).cast::<__m128i>());
                _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8)))
            };
            if mask != 0 {
                return Some(i + mask.trailing_zeros() as usize);
            }
            i += 16;
        }
        memchr::memchr(b'"', &hay[i..]).map(|p| p + i)
    }
    #[cfg(not(target_arch = "x86_64"))]
    memchr::memchr(b'"', hay)
}

/// Digits (optionally surrounded by spaces) as a number; a decimal part is dropped.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = s.trim_ascii();
    // Rule ids and codes are a few digits: one pass, no search for the dot first.
    let mut n = 0u64;
    let mut digits = 0;
    for &c in s {
        match c {
            b'0'..=b'9' if digits < 19 => {
                n = n * 10 + u64::from(c - b'0');
                digits += 1;
            }
            b'.' => break,
            _ => return None,
        }
    }
    (digits > 0).then_some(n)
}

/// Calls `f` with each string of the array the walker is at; other elements are skipped.
pub fn strings_in(mut w: Walker<'_>, mut f: impl FnMut(&[u8])) {
    let input = w.input();
    let _ = w.array(|w| {
        if let Some(s) = w.opt_string()? {
            f(s.get(input));
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
    fn quote_index_matches_a_byte_scan() {
        // Backslash runs of every length, across 64-byte block boundaries.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut idx = QuoteIndex::default();
        for len in [0, 1, 63, 64, 65, 127, 128, 200, 1000] {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        [b'"', b'\\', b'a', b'\\', b'x'][(seed % 5) as usize]
                    })
                    .collect();
                let bits = idx.build(&b).to_vec();
                let mut escaped = false;
                for (i, &c) in b.iter().enumerate() {
                    let want = c == b'"' && !escaped;
                    let got = bits[i / 64] >> (i % 64) & 1 == 1;
                    assert_eq!(got, want, "at {i} of {:?}", String::from_utf8_lossy(&b));
                    escaped = !escaped && c == b'\\';
                }
            }
        }
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
