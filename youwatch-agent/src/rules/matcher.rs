//! String comparisons, compiled once per rule: substring finders, regex automata, hash sets
//! for `in`, path prefixes for `pmatch`. Evaluating one never parses or allocates.

use std::collections::HashSet;

use memchr::memmem::Finder;

use super::{condition::ast::CmpOp, glob::fnmatch};

/// Lists larger than this are hashed; smaller ones are scanned (faster for a handful).
const HASH_THRESHOLD: usize = 4;
/// Compiled-regex memory cap per pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

// The substring finder is large; it stays inline (no pointer to chase per event) since a
// `StrMatch` lives in a boxed test, one allocation per test.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum StrMatch {
    Eq(Box<str>),
    Ne(Box<str>),
    Contains(Finder<'static>),
    /// The needle is kept to merge several into one `Substrings`.
    IContains {
        needle: Box<str>,
        re: regex::bytes::Regex,
    },
    /// Any of several substrings (`a contains x or a icontains y or ...`), one pass.
    Substrings(regex::bytes::Regex),
    StartsWith(Box<str>),
    EndsWith(Box<str>),
    /// fnmatch(3), case-insensitive for `iglob`.
    Glob {
        pattern: Box<str>,
        fold: bool,
    },
    Regex(regex::Regex),
    In(StrSet),
    Pmatch(PathPrefixes),
    /// `<`, `<=`, `>`, `>=`: byte order, as `strcmp`.
    Order(CmpOp, Box<str>),
}

impl StrMatch {
    /// A matcher for `op value`. The error names what is wrong with the value.
    pub fn single(op: CmpOp, value: &str) -> Result<StrMatch, String> {
        Ok(match op {
            CmpOp::Eq => StrMatch::Eq(value.into()),
            CmpOp::Ne => StrMatch::Ne(value.into()),
            CmpOp::Contains => StrMatch::Contains(Finder::new(value.as_bytes()).into_owned()),
            CmpOp::IContains => StrMatch::IContains {
                needle: value.into(),
                re: substrings(&[(value, true)])
                    .map_err(|e| format!("icontains {value:?}: {e}"))?,
            },
            CmpOp::StartsWith => StrMatch::StartsWith(value.into()),
            CmpOp::EndsWith => StrMatch::EndsWith(value.into()),
            CmpOp::Glob | CmpOp::IGlob => StrMatch::Glob {
                pattern: value.into(),
                fold: op == CmpOp::IGlob,
            },
            CmpOp::Regex => StrMatch::Regex(
                // Falco matches the whole value (RE2 anchored at both ends).
                regex::RegexBuilder::new(&format!("^(?:{})$", re2_braces(value)))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            CmpOp::In | CmpOp::Intersects => StrMatch::In(StrSet::new([value.to_owned()])),
            CmpOp::Pmatch => StrMatch::Pmatch(PathPrefixes::new([value])),
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => StrMatch::Order(op, value.into()),
            CmpOp::BContains | CmpOp::BStartsWith => {
                return Err(format!(
                    "'{op}' compares bytes (a buffer field), not strings; use {} instead",
                    if op == CmpOp::BContains {
                        "contains"
                    } else {
                        "startswith"
                    }
                ));
            }
        })
    }

    /// A matcher for a list operator (`in`, `intersects`, `pmatch`).
    pub fn list(op: CmpOp, values: Vec<String>) -> Result<StrMatch, String> {
        match op {
            CmpOp::In | CmpOp::Intersects => Ok(StrMatch::In(StrSet::new(values))),
            CmpOp::Pmatch => Ok(StrMatch::Pmatch(PathPrefixes::new(
                values.iter().map(String::as_str),
            ))),
            _ => Err(format!("'{op}' does not take a list")),
        }
    }

    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Eq(v) => s == &**v,
            StrMatch::Ne(v) => s != &**v,
            StrMatch::Contains(f) => f.find(s.as_bytes()).is_some(),
            StrMatch::IContains { re, .. } | StrMatch::Substrings(re) => re.is_match(s.as_bytes()),
            StrMatch::StartsWith(v) => s.starts_with(&**v),
            StrMatch::EndsWith(v) => s.ends_with(&**v),
            StrMatch::Glob { pattern, fold } => fnmatch(pattern.as_bytes(), s.as_bytes(), *fold),
            StrMatch::Regex(r) => r.is_match(s),
            StrMatch::In(set) => set.contains(s),
            StrMatch::Pmatch(prefixes) => prefixes.matches(s),
            StrMatch::Order(op, v) => match op {
                CmpOp::Lt => s < &**v,
                CmpOp::Le => s <= &**v,
                CmpOp::Gt => s > &**v,
                _ => s >= &**v,
            },
        }
    }
}

/// RE2 (Falco's regex engine) reads a `{` that does not open a repetition (`{2`, `{x}`) as a
/// literal brace; Rust's regex refuses it. Escapes such braces so a pattern Falco accepts
/// means the same here.
fn re2_braces(pattern: &str) -> std::borrow::Cow<'_, str> {
    let b = pattern.as_bytes();
    let repetition = |i: usize| {
        // `{n}`, `{n,}` or `{n,m}` starting at i.
        let digits = |j: usize| b[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        let n = digits(i + 1);
        if n == 0 {
            return false;
        }
        let mut j = i + 1 + n;
        if b.get(j) == Some(&b',') {
            j += 1;
            j += digits(j);
        }
        b.get(j) == Some(&b'}')
    };
    let mut out = String::new();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'{' if !repetition(i) => {
                out.push_str(&pattern[last..i]);
                out.push_str("\\{");
                i += 1;
                last = i;
            }
            _ => i += 1,
        }
    }
    if last == 0 {
        return std::borrow::Cow::Borrowed(pattern);
    }
    out.push_str(&pattern[last.min(pattern.len())..]);
    std::borrow::Cow::Owned(out)
}

/// The (needle, case-insensitive) of a substring test, for merging.
pub fn substring_needle(m: &StrMatch) -> Option<(&str, bool)> {
    match m {
        StrMatch::Contains(f) => std::str::from_utf8(f.needle()).ok().map(|n| (n, false)),
        StrMatch::IContains { needle, .. } => Some((needle, true)),
        _ => None,
    }
}

/// One automaton for "contains any of these" (ASCII case-insensitive where asked, as
/// Falco's icontains).
pub fn substrings(needles: &[(&str, bool)]) -> Result<regex::bytes::Regex, regex::Error> {
    let alternatives: Vec<String> = needles
        .iter()
        .map(|(n, insensitive)| {
            let lit = regex::escape(n);
            if *insensitive {
                format!("(?i:{lit})")
            } else {
                lit
            }
        })
        .collect();
    regex::bytes::RegexBuilder::new(&format!("(?-u:{})", alternatives.join("|")))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// A set of strings for `in`: scanned when small, hashed when large; lengths outside the
/// members' range are rejected first.
#[derive(Clone, Debug)]
pub struct StrSet {
    min_len: usize,
    max_len: usize,
    small: Box<[Box<str>]>,
    large: Option<HashSet<Box<str>, foldhash::fast::RandomState>>,
}

impl StrSet {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut unique: Vec<Box<str>> = Vec::new();
        let mut seen = HashSet::new();
        for v in values {
            if seen.insert(v.clone()) {
                unique.push(v.into());
            }
        }
        let min_len = unique.iter().map(|v| v.len()).min().unwrap_or(usize::MAX);
        let max_len = unique.iter().map(|v| v.len()).max().unwrap_or(0);
        if unique.len() > HASH_THRESHOLD {
            Self {
                min_len,
                max_len,
                small: Box::new([]),
                large: Some(unique.into_iter().collect()),
            }
        } else {
            Self {
                min_len,
                max_len,
                small: unique.into(),
                large: None,
            }
        }
    }

    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        if s.len() < self.min_len || s.len() > self.max_len {
            return false;
        }
        match &self.large {
            Some(set) => set.contains(s),
            None => self.small.iter().any(|v| &**v == s),
        }
    }
}

/// `pmatch`: paths under any of the prefixes, component by component (`/usr/lib` is under
/// `/usr`, `/usr2` is not), where a prefix component with `*`, `?` or `[` is a glob for one
/// component (libsinsp `path_prefix_search`). Empty components are ignored on both sides, so
/// `/` and the empty prefix match every path.
#[derive(Clone, Debug)]
pub struct PathPrefixes {
    prefixes: Box<[Box<[Component]>]>,
}

#[derive(Clone, Debug)]
enum Component {
    Literal(Box<str>),
    Glob(Box<str>),
}

impl PathPrefixes {
    pub fn new<'s>(prefixes: impl IntoIterator<Item = &'s str>) -> Self {
        let prefixes = prefixes
            .into_iter()
            .map(|p| {
                components(p)
                    .map(|c| {
                        if c.contains(['*', '?', '[']) {
                            Component::Glob(c.into())
                        } else {
                            Component::Literal(c.into())
                        }
                    })
                    .collect()
            })
            .collect();
        PathPrefixes { prefixes }
    }

    pub fn matches(&self, path: &str) -> bool {
        self.prefixes.iter().any(|prefix| {
            let mut parts = components(path);
            prefix.iter().all(|c| match (c, parts.next()) {
                (Component::Literal(l), Some(p)) => **l == *p,
                (Component::Glob(g), Some(p)) => fnmatch(g.as_bytes(), p.as_bytes(), false),
                (_, None) => false,
            })
        })
    }
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: CmpOp, v: &str) -> StrMatch {
        StrMatch::single(op, v).unwrap()
    }

    #[test]
    fn string_operators() {
        assert!(m(CmpOp::Contains, " -e").matches("nc -e /bin/sh"));
        assert!(m(CmpOp::IContains, "begin rsa").matches("grep BEGIN RSA PRIVATE"));
        assert!(!m(CmpOp::IContains, "begin rsa").matches("grep BEGIN"));
        assert!(m(CmpOp::StartsWith, "-c /dev/shm").matches("-c /dev/shm/x"));
        assert!(m(CmpOp::EndsWith, ".aws/credentials").matches("/root/.aws/credentials"));
        assert!(m(CmpOp::Glob, "/home/*/.ssh/*").matches("/home/a/b/.ssh/id_rsa"));
        assert!(m(CmpOp::IGlob, "*.SH").matches("x.sh"));
        assert!(m(CmpOp::Regex, "ba?sh").matches("bash"));
        assert!(
            !m(CmpOp::Regex, "ba?sh").matches("xbash"),
            "regex is anchored"
        );
        assert!(
            StrMatch::single(CmpOp::BContains, "2f74").is_err(),
            "strings are not buffers"
        );
        assert!(StrMatch::single(CmpOp::Regex, "(").is_err());
        assert!(
            m(CmpOp::Regex, "a{2").matches("a{2"),
            "a brace that is no repetition is literal"
        );
        assert!(m(CmpOp::Regex, "a{2}").matches("aa") && m(CmpOp::Regex, "x{1,2}").matches("xx"));
        assert!(m(CmpOp::Lt, "b").matches("a") && !m(CmpOp::Ge, "b").matches("a"));
    }

    #[test]
    fn merged_substrings() {
        let re = substrings(&[("BEGIN RSA", true), ("id_rsa", false), ("a.b", false)]).unwrap();
        let any = StrMatch::Substrings(re);
        assert!(any.matches("grep begin rsa"));
        assert!(any.matches("find / -name id_rsa"));
        assert!(!any.matches("find / -name ID_RSA"));
        assert!(!any.matches("axb"), "literals are escaped");
        assert_eq!(
            substring_needle(&m(CmpOp::Contains, "x")),
            Some(("x", false))
        );
    }

    #[test]
    fn sets_and_paths() {
        let small = StrMatch::list(CmpOp::In, vec!["sh".into(), "bash".into()]).unwrap();
        assert!(small.matches("bash") && !small.matches("zsh"));
        let many: Vec<String> = (0..100).map(|i| format!("bin{i}")).collect();
        let large = StrMatch::list(CmpOp::In, many).unwrap();
        assert!(large.matches("bin42") && !large.matches("bin420"));
        let p = StrMatch::list(CmpOp::Pmatch, vec!["/etc/".into(), "/usr/lib".into()]).unwrap();
        assert!(p.matches("/etc/shadow") && p.matches("/etc") && !p.matches("/etcx"));
        assert!(p.matches("/usr/lib/x") && !p.matches("/usr/lib64") && !p.matches("/usr"));
        let g = |prefix: &str| StrMatch::list(CmpOp::Pmatch, vec![prefix.into()]).unwrap();
        let path = "/opt/dir/subdir/file.txt";
        assert!(g("/opt/*").matches(path) && g("/opt/*/subdir").matches(path));
        assert!(g("/opt/di?/subdir").matches(path) && !g("/opt/dii?/subdir").matches(path));
        assert!(g("/opt/di[r]/subdir").matches(path) && !g("/opt/di[!r]/subdir").matches(path));
        assert!(!g("/opt/*/*/subsubdir").matches(path) && g("/").matches(path));
        let empty = StrMatch::list(CmpOp::In, vec![]).unwrap();
        assert!(!empty.matches(""));
    }
}
