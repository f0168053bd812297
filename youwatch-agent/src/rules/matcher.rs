//! String comparisons, compiled once per rule: substring finders, glob and regex automata,
//! hash sets for `in`. Evaluating one never parses or allocates.

use std::collections::HashSet;

use globset::{GlobBuilder, GlobMatcher};
use memchr::memmem::Finder;

use super::condition::ast::CmpOp;

/// Lists larger than this are hashed; smaller ones are scanned (faster for a handful).
const HASH_THRESHOLD: usize = 4;
/// Compiled-regex memory cap per pattern.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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
    BContains(Finder<'static>),
    /// Any of several substrings (`a contains x or a icontains y or ...`), one pass.
    Substrings(regex::bytes::Regex),
    StartsWith(Box<str>),
    BStartsWith(Box<[u8]>),
    EndsWith(Box<str>),
    Glob(GlobMatcher),
    Regex(regex::Regex),
    In(StrSet),
    Pmatch(Box<[Box<str>]>),
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
            CmpOp::BContains => StrMatch::BContains(Finder::new(&hex_bytes(value)?).into_owned()),
            CmpOp::StartsWith => StrMatch::StartsWith(value.into()),
            CmpOp::BStartsWith => StrMatch::BStartsWith(hex_bytes(value)?.into()),
            CmpOp::EndsWith => StrMatch::EndsWith(value.into()),
            CmpOp::Glob | CmpOp::IGlob => StrMatch::Glob(
                // fnmatch(3) without flags, as Falco: `*` also matches `/`.
                GlobBuilder::new(value)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .case_insensitive(op == CmpOp::IGlob)
                    .build()
                    .map_err(|e| format!("invalid glob {value:?}: {e}"))?
                    .compile_matcher(),
            ),
            CmpOp::Regex => StrMatch::Regex(
                // Falco matches the whole value (RE2 anchored at both ends).
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| format!("invalid regex {value:?}: {e}"))?,
            ),
            CmpOp::In | CmpOp::Intersects => StrMatch::In(StrSet::new([value.to_owned()])),
            CmpOp::Pmatch => StrMatch::Pmatch(Box::new([normalize_prefix(value)])),
            CmpOp::Lt | CmpOp::Le | CmpOp::Gt | CmpOp::Ge => {
                return Err(format!("'{op}' compares numbers, not strings"));
            }
        })
    }

    /// A matcher for a list operator (`in`, `intersects`, `pmatch`).
    pub fn list(op: CmpOp, values: Vec<String>) -> Result<StrMatch, String> {
        match op {
            CmpOp::In | CmpOp::Intersects => Ok(StrMatch::In(StrSet::new(values))),
            CmpOp::Pmatch => Ok(StrMatch::Pmatch(
                values.iter().map(|v| normalize_prefix(v)).collect(),
            )),
            _ => Err(format!("'{op}' does not take a list")),
        }
    }

    #[inline]
    pub fn matches(&self, s: &str) -> bool {
        match self {
            StrMatch::Eq(v) => s == &**v,
            StrMatch::Ne(v) => s != &**v,
            StrMatch::Contains(f) | StrMatch::BContains(f) => f.find(s.as_bytes()).is_some(),
            StrMatch::IContains { re, .. } | StrMatch::Substrings(re) => re.is_match(s.as_bytes()),
            StrMatch::StartsWith(v) => s.starts_with(&**v),
            StrMatch::BStartsWith(v) => s.as_bytes().starts_with(v),
            StrMatch::EndsWith(v) => s.ends_with(&**v),
            StrMatch::Glob(g) => g.is_match(s),
            StrMatch::Regex(r) => r.is_match(s),
            StrMatch::In(set) => set.contains(s),
            StrMatch::Pmatch(prefixes) => prefixes.iter().any(|p| path_under(s, p)),
        }
    }
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

/// Falco writes byte operands in hex (`bcontains 2f6574`).
fn hex_bytes(value: &str) -> Result<Vec<u8>, String> {
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{value:?} is not an even number of hex digits (bcontains/bstartswith take bytes in hex)"
        ));
    }
    digits
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| {
                    format!("{value:?} is not hex (bcontains/bstartswith take bytes in hex)")
                })
        })
        .collect()
}

fn normalize_prefix(p: &str) -> Box<str> {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() && p.starts_with('/') {
        "/".into()
    } else {
        trimmed.into()
    }
}

/// `path` is `prefix` or below it, on component boundaries.
fn path_under(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
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
        assert!(m(CmpOp::BContains, "2f746d70").matches("/tmp/x"));
        assert!(StrMatch::single(CmpOp::BContains, "2f7").is_err());
        assert!(StrMatch::single(CmpOp::Regex, "(").is_err());
        assert!(StrMatch::single(CmpOp::Lt, "1").is_err());
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
        assert!(p.matches("/usr/lib/x") && !p.matches("/usr/lib64"));
        let empty = StrMatch::list(CmpOp::In, vec![]).unwrap();
        assert!(!empty.matches(""));
    }
}
