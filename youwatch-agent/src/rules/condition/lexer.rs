//! Scanning primitives for the condition language, following the token shapes of Falco's
//! filter grammar (libsinsp `filter/parser`): field names, bare strings, quoted strings with
//! Falco's escapes, numbers.

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

    /// Skips blanks; true when there were any.
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

    /// Consumes keyword `word` when it is followed by a blank, the end, or one of `then`
    /// (e.g. `and (`).
    pub fn keyword(&mut self, word: &str, then: &[u8]) -> bool {
        let rest = self.bytes();
        if rest.starts_with(word.as_bytes()) {
            match rest.get(word.len()) {
                Some(&b) if is_blank(b) || then.contains(&b) => {
                    self.pos += word.len();
                    true
                }
                None => {
                    self.pos += word.len();
                    true
                }
                _ => false,
            }
        } else {
            false
        }
    }

    /// The word (`[a-z]+`) at the cursor, not consumed.
    pub fn peek_word(&self) -> &'a str {
        let n = self
            .bytes()
            .iter()
            .take_while(|b| b.is_ascii_lowercase())
            .count();
        &self.rest()[..n]
    }

    pub fn advance(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.src.len());
    }

    /// `[a-zA-Z][a-zA-Z0-9_]*`: macro names and list names.
    pub fn identifier(&mut self) -> Option<&'a str> {
        let n = ident_len(self.bytes());
        if n == 0 {
            return None;
        }
        let s = &self.rest()[..n];
        self.pos += n;
        Some(s)
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
        if segments < 2 {
            return None;
        }
        let s = &self.rest()[..n];
        self.pos += n;
        Some(s)
    }

    /// The bare argument of `field[arg]`: anything but brackets, quotes and blanks.
    pub fn field_arg_bare(&mut self) -> Option<&'a str> {
        self.take_while(|b| !matches!(b, b'[' | b']' | b'"' | b'\'') && !is_blank(b))
    }

    /// A bare string value: anything but parentheses, quotes, blanks, `=` and `,`.
    pub fn bare_str(&mut self) -> Option<&'a str> {
        self.take_while(|b| !matches!(b, b'(' | b')' | b'"' | b'\'' | b'=' | b',') && !is_blank(b))
    }

    /// A decimal (`-12`, `1.5e+3`) or hexadecimal (`0x1F`) number.
    pub fn number(&mut self) -> Option<&'a str> {
        let b = self.bytes();
        let mut n = 0;
        if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
            n = 2 + b[2..]
                .iter()
                .take_while(|c| c.is_ascii_alphanumeric())
                .count();
            if n > 2 {
                return Some(self.take(n));
            }
            n = 0;
        }
        if matches!(b.first(), Some(b'+' | b'-')) {
            n += 1;
        }
        let digits = b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        n += digits;
        if b.get(n) == Some(&b'.') {
            n += 1;
            n += b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        if matches!(b.get(n), Some(b'e' | b'E'))
            && matches!(b.get(n + 1), Some(b'+' | b'-'))
            && b.get(n + 2).is_some_and(u8::is_ascii_digit)
        {
            n += 2;
            n += b[n..].iter().take_while(|c| c.is_ascii_digit()).count();
        }
        Some(self.take(n))
    }

    /// A `'...'` or `"..."` string with Falco's escapes (`\b \f \n \r \t \\ \/`, and the
    /// delimiter itself). `Ok(None)` when the cursor is not on a quote.
    pub fn quoted(&mut self) -> Result<Option<String>, (usize, String)> {
        let Some(delim @ (b'"' | b'\'')) = self.peek() else {
            return Ok(None);
        };
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut out = Vec::new();
        let mut i = start + 1;
        while i < bytes.len() {
            let c = bytes[i];
            if c == delim {
                self.pos = i + 1;
                // Only ASCII escapes are rewritten, so `out` stays valid UTF-8.
                return Ok(Some(String::from_utf8(out).unwrap_or_default()));
            }
            if c != b'\\' {
                out.push(c);
                i += 1;
                continue;
            }
            let Some(&e) = bytes.get(i + 1) else { break };
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
                _ => {
                    let shown = self.src[i + 1..].chars().next().unwrap_or('?');
                    return Err((
                        i,
                        format!(
                            "unsupported escape \\{shown} (Falco knows \\b \\f \\n \\r \\t \\\\ \\/ and the quote)"
                        ),
                    ));
                }
            }
            i += 2;
        }
        Err((
            start,
            format!("unterminated {}-quoted string", delim as char),
        ))
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

pub fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x08 | 0x0b | 0x0c)
}

pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn ident_len(b: &[u8]) -> usize {
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    b.iter().take_while(|&&c| is_ident_byte(c)).count()
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
        assert!(q(r#""x\q""#).is_err());
        assert!(q(r#"'no \" here'"#).is_err());
        assert!(q(r#""open"#).is_err());
        assert_eq!(q("plain").unwrap(), None);
    }

    #[test]
    fn numbers() {
        let n = |s: &str| Cursor::new(s).number().map(str::to_owned);
        assert_eq!(n("0x1f)"), Some("0x1f".into()));
        assert_eq!(n("-12 "), Some("-12".into()));
        assert_eq!(n("1.5e+3"), Some("1.5e+3".into()));
        assert_eq!(n("abc"), None);
    }
}
