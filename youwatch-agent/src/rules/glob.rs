//! `fnmatch(3)` without flags (or with `FNM_CASEFOLD`), which Falco's `glob`, `iglob` and the
//! wildcard components of `pmatch` use: `*` matches any bytes (`/` included), `?` one byte,
//! `[...]` a set (`!` or `^` negates, ranges, `[:class:]`), `\` escapes. Bytes, not
//! characters, as in the C locale. Linear in practice: only the last `*` is backtracked to.

/// Whether `pattern` matches all of `s`; `fold` ignores ASCII case.
pub fn fnmatch(pattern: &[u8], s: &[u8], fold: bool) -> bool {
    let (mut p, mut i) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, text index it matched to).
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, i));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match bracket(pattern, p, s[i], fold) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                // No closing `]`: a literal `[`.
                None => (s[i] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => eq(pattern[p + 1], s[i], fold).then_some(p + 2),
            Some(&c) => eq(c, s[i], fold).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                i += 1;
            }
            (None, Some((after, matched))) => {
                p = after;
                i = matched + 1;
                star = Some((after, matched + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

fn eq(a: u8, b: u8, fold: bool) -> bool {
    a == b || (fold && a.eq_ignore_ascii_case(&b))
}

/// Matches `c` against the set starting at `pattern[p] == '['`: `Some((matched, index after
/// the set))`, or `None` when the set is not closed.
fn bracket(pattern: &[u8], p: usize, c: u8, fold: bool) -> Option<(bool, usize)> {
    let mut j = p + 1;
    let negate = matches!(pattern.get(j), Some(b'!' | b'^'));
    if negate {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let &b = pattern.get(j)?;
        if b == b']' && !first {
            return Some((matched != negate, j + 1));
        }
        first = false;
        if b == b'[' && pattern.get(j + 1) == Some(&b':') {
            let end = pattern[j + 2..].windows(2).position(|w| w == b":]")?;
            let class = &pattern[j + 2..j + 2 + end];
            matched |= in_class(class, c, fold);
            j += end + 4;
            continue;
        }
        let lo = if b == b'\\' {
            j += 1;
            *pattern.get(j)?
        } else {
            b
        };
        j += 1;
        if pattern.get(j) == Some(&b'-') && pattern.get(j + 1).is_some_and(|&h| h != b']') {
            let mut hi = pattern[j + 1];
            j += 2;
            if hi == b'\\' {
                hi = *pattern.get(j)?;
                j += 1;
            }
            let in_range = |x: u8| lo <= x && x <= hi;
            matched |= in_range(c)
                || (fold && (in_range(c.to_ascii_lowercase()) || in_range(c.to_ascii_uppercase())));
        } else {
            matched |= eq(lo, c, fold);
        }
    }
}

fn in_class(class: &[u8], c: u8, fold: bool) -> bool {
    match class {
        b"alpha" => c.is_ascii_alphabetic(),
        b"digit" => c.is_ascii_digit(),
        b"alnum" => c.is_ascii_alphanumeric(),
        b"upper" => c.is_ascii_uppercase() || (fold && c.is_ascii_lowercase()),
        b"lower" => c.is_ascii_lowercase() || (fold && c.is_ascii_uppercase()),
        b"space" => matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"blank" => matches!(c, b' ' | b'\t'),
        b"punct" => c.is_ascii_punctuation(),
        b"xdigit" => c.is_ascii_hexdigit(),
        b"cntrl" => c.is_ascii_control(),
        b"print" => (0x20..0x7f).contains(&c),
        b"graph" => c.is_ascii_graphic(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        fnmatch(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn like_fnmatch() {
        assert!(m("/home/*/.ssh/*", "/home/a/b/.ssh/id_rsa"), "* crosses /");
        assert!(m("*", ""));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("di?", "dir") && !m("dii?", "dir"));
        assert!(m("di[r]", "dir") && !m("di[!r]", "dir") && !m("di[t]", "dir"));
        assert!(m("[a-c]x", "bx") && !m("[a-c]x", "dx"));
        assert!(m("[]]", "]") && m("[!]]", "a"));
        assert!(m("[[:digit:]]*", "7up"));
        assert!(m("a\\*", "a*") && !m("a\\*", "ab"));
        assert!(m("x[", "x["), "an unclosed set is literal");
        assert!(m("{a,b}", "{a,b}"), "no brace alternation in fnmatch");
        assert!(fnmatch(b"*.SH", b"x.sh", true) && !m("*.SH", "x.sh"));
        assert!(fnmatch(b"[A-C]", b"b", true));
    }

    #[test]
    fn stars_do_not_explode() {
        let s = "a".repeat(10_000);
        assert!(!m(&format!("{}b", "*a".repeat(50)), &s));
    }
}
