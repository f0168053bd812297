//! Scanning primitives for the condition language, with the token shapes of Falco's filter
//! grammar (libsinsp `filter/parser.cpp`): field names, bare strings, quoted strings with
//! Falco's escapes, numbers. Where Falco's lexer is peculiar (a quoted string ends at the
//! first quote not preceded by a backslash; `exists` needs no blank after it), this one is
//! too, so rules parse exactly as in Falco.

/// A cursor over a condition's text. Every scanner either consumes a token and returns it,
/// or leaves the position unchanged.
pub struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(src: &'a str) -> Self {
        Self { src, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }

    pub fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    pub fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn bytes(&self) -> &'a [u8] {
        &self.src.as_bytes()[self.pos..]
    }

    pub fn peek(&self) -> Option<u8> {
        self.bytes().first().copied()
    }

    /// Skips blanks (Falco's: space, tab, backspace, CR, LF); true when there were any.
    pub fn blank(&mut self) -> bool {
        let n = self.bytes().iter().take_while(|&&b| is_blank(b)).count();
        self.pos += n;
        n > 0
    }

    /// Consumes `s` when the text continues with it.
    pub fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    /// Consumes `word` and the blanks after it, when at least one blank follows (the shape of
    /// Falco's word operators, `contains `, and modifiers, `oneof `).
    pub fn eat_word_blank(&mut self, word: &str) -> bool {
        let start = self.pos;
        if self.eat(word) && self.blank() {
            return true;
        }
        self.pos = start;
        false
    }

    /// `not` followed by POSIX space (Falco's `not[[:space:]]+`), consumed with the spaces.
    pub fn not_space(&mut self) -> bool {
        let rest = self.bytes();
        if rest.starts_with(b"not") && rest.get(3).is_some_and(|&b| is_space(b)) {
            self.pos += 3;
            self.pos += self.bytes().iter().take_while(|&&b| is_space(b)).count();
            true
        } else {
            false
        }
    }

    /// Whether `and`, `or` or `not` follows as a word (Falco's `bool_keyword_follows`).
    pub fn bool_keyword_follows(&self) -> bool {
        let rest = self.bytes();
        [&b"and"[..], b"or", b"not"].iter().any(|kw| {
            rest.starts_with(kw) && !rest.get(kw.len()).is_some_and(u8::is_ascii_alphanumeric)
        })
    }

    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.src.len());
    }

    /// `[a-zA-Z][a-zA-Z0-9_]*`: macro names and list names.
    pub fn identifier(&mut self) -> Option<&'a str> {
        let n = ident_len(self.bytes());
        (n > 0).then(|| self.take(n))
    }

    /// Whether an identifier starts here (not consumed).
    pub fn at_identifier(&self) -> bool {
        ident_len(self.bytes()) > 0
    }

    /// A field name: two or more identifiers joined by dots (`proc.name`, `k8s.pod.label`).
    pub fn field_name(&mut self) -> Option<&'a str> {
        let bytes = self.bytes();
        let mut n = ident_len(bytes);
        if n == 0 {
            return None;
        }
        let mut segments = 1;
        while bytes.get(n) == Some(&b'.') {
            let more = ident_len(&bytes[n + 1..]);
            if more == 0 {
                break;
            }
            n += 1 + more;
            segments += 1;
        }
        (segments >= 2).then(|| self.take(n))
    }

    /// The bare argument of `field[arg]`: anything but brackets, quotes and spaces.
    pub fn field_arg_bare(&mut self) -> Option<&'a str> {
        self.take_while(|b| !matches!(b, b'[' | b']' | b'"' | b'\'') && !is_space(b))
    }

    /// A bare string value: anything but parentheses, quotes, spaces, `=` and `,`.
    pub fn bare_str(&mut self) -> Option<&'a str> {
        self.take_while(|b| !matches!(b, b'(' | b')' | b'"' | b'\'' | b'=' | b',') && !is_space(b))
    }

    /// A hexadecimal (`0x1F`) or decimal (`-12`, `1.5e+3`) number, as Falco scans them.
    pub fn number(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        if b.len() > 2 && b[0] == b'0' && matches!(b[1], b'x' | b'X') {
            let digits = b[2..].iter().take_while(|c| c.is_ascii_hexdigit()).count();
            if digits > 0 {
                return Some(self.take(2 + digits));
            }
        }
        let mut n = usize::from(matches!(b.first(), Some(b'+' | b'-')));
        let digits = b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        n += digits;
        if b.get(n) == Some(&b'.') {
            n += 1;
        }
        n += b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        if matches!(b.get(n), Some(b'e' | b'E'))
            && matches!(b.get(n + 1), Some(b'+' | b'-'))
            && b.get(n + 2).is_some_and(u8::is_ascii_digit)
        {
            n += 2;
            n += b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        Some(self.take(n))
    }

    /// A `'...'` or `"..."` string. As in Falco, the string ends at the first delimiter not
    /// preceded by a backslash, then its escapes are decoded (`\b \f \n \r \t \\ \/ \xHH`,
    /// the delimiter, and `\ ` kept as a backslash). `Ok(None)` when the cursor is not on a
    /// quote; `Err((offset, message))` for an unterminated string or a bad escape.
    pub fn quoted(&mut self) -> Result<Option<String>, (usize, String)> {
        let Some(delim @ (b'"' | b'\'')) = self.peek() else {
            return Ok(None);
        };
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut end = start + 1;
        while end < bytes.len() && !(bytes[end] == delim && bytes[end - 1] != b'\\') {
            end += 1;
        }
        if end >= bytes.len() {
            return Err((
                start,
                format!("unterminated {}-quoted string", delim as char),
            ));
        }
        let value =
            unescape(&self.src[start + 1..end], delim).map_err(|(i, m)| (start + 1 + i, m))?;
        self.pos = end + 1;
        Ok(Some(value))
    }

    fn take(&mut self, n: usize) -> &'a str {
        let s = &self.rest()[..n];
        self.pos += n;
        s
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> Option<&'a str> {
        // Stops only at ASCII bytes, so the slice ends on a character boundary.
        let n = self.bytes().iter().take_while(|&&b| keep(b)).count();
        (n > 0).then(|| self.take(n))
    }
}

/// Falco's `unescape_str` on the body of a string quoted with `delim`. `Err((offset in
/// body, message))` for an escape Falco refuses.
fn unescape(body: &str, delim: u8) -> Result<String, (usize, String)> {
    let bytes = body.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = bytes.get(i + 1) else {
            // A trailing lone backslash: Falco's loop ends before decoding it.
            break;
        };
        match e {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            // Falco keeps a backslash for `\ ` (tolerated for old, wrongly escaped rules).
            b'\\' | b' ' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b'"' | b'\'' if e == delim => out.push(e),
            b'"' | b'\'' => {
                return Err((
                    i,
                    format!(
                        "invalid escape \\{} inside a {}-quoted string",
                        e as char, delim as char
                    ),
                ));
            }
            b'x' => {
                let hex = bytes
                    .get(i + 2..i + 4)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())
                    .ok_or_else(|| (i, "\\x must be followed by two hex digits".to_owned()))?;
                out.push(hex);
                i += 2;
            }
            _ => {
                let shown = body[i + 1..].chars().next().unwrap_or('?');
                return Err((
                    i,
                    format!(
                        "unsupported escape \\{shown} (Falco knows \\b \\f \\n \\r \\t \\\\ \\/ \\xHH and the quote)"
                    ),
                ));
            }
        }
        i += 2;
    }
    String::from_utf8(out).map_err(|e| {
        (
            e.utf8_error().valid_up_to(),
            "the string's \\x escapes do not form UTF-8 text, which is all exec events carry"
                .to_owned(),
        )
    })
}

/// Falco's blanks between tokens.
pub fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x08 | b'\r' | b'\n')
}

/// POSIX `[:space:]`, which ends bare strings.
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn ident_len(b: &[u8]) -> usize {
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    b.iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == b'_')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_need_a_dot() {
        assert_eq!(
            Cursor::new("proc.aname[2]").field_name(),
            Some("proc.aname")
        );
        assert_eq!(
            Cursor::new("k8s.pod.name=x").field_name(),
            Some("k8s.pod.name")
        );
        assert_eq!(Cursor::new("shell_procs").field_name(), None);
        assert_eq!(Cursor::new("proc.").field_name(), None);
    }

    #[test]
    fn bare_strings_keep_brackets() {
        assert_eq!(
            Cursor::new("runc:[0:PARENT], x").bare_str(),
            Some("runc:[0:PARENT]")
        );
        assert_eq!(Cursor::new("/dev/shm/)").bare_str(), Some("/dev/shm/"));
    }

    #[test]
    fn quoted_strings_unescape_like_falco() {
        let q = |s: &str| Cursor::new(s).quoted();
        assert_eq!(q(r#""a \"b\" c""#).unwrap().unwrap(), r#"a "b" c"#);
        assert_eq!(q(r"'it\'s'").unwrap().unwrap(), "it's");
        assert_eq!(q(r#""tab\there""#).unwrap().unwrap(), "tab\there");
        assert_eq!(q(r#""\x41\x42""#).unwrap().unwrap(), "AB");
        // The string ends at the first quote not preceded by a backslash: `\\'` does not end
        // it, and the decoded `\\` is one backslash.
        assert_eq!(q(r"'a \' \\''").unwrap().unwrap(), r"a ' \'");
        assert!(q(r#""x\q""#).is_err());
        assert!(q(r#"'no \" here'"#).is_err());
        assert!(q(r#""open"#).is_err());
        assert!(q(r#""\xff""#).is_err(), "not UTF-8");
        assert_eq!(q("plain").unwrap(), None);
    }

    #[test]
    fn numbers() {
        let n = |s: &str| Cursor::new(s).number().map(str::to_owned);
        assert_eq!(n("0x1f)"), Some("0x1f".into()));
        assert_eq!(n("0xZ"), Some("0".into()));
        assert_eq!(n("-12 "), Some("-12".into()));
        assert_eq!(n("1.5e+3"), Some("1.5e+3".into()));
        assert_eq!(n("abc"), None);
    }
}
