//! The path pattern of `container.mount.dest[/var/run/docker.sock]` and its siblings.
//!
//! Falco's container plugin (which provides `container.*` since Falco 0.41) compiles the
//! argument as a regular expression in multi-line mode and *searches* each mount's path for
//! it (`mount_by_source`/`mount_by_dest`, tested in its `test/mounts.cpp`): `/tmp*` matches
//! `/tmp/foo`, `foo$` and `tmp/fo` do too, `^tmp` does not. So does this: the upstream rules'
//! patterns (`/proc*`, `/`, `/var/lib/kubelet`) read as globs but are not.

use std::hash::{Hash, Hasher};

use regex::{Regex, RegexBuilder};

/// A compiled mount-path pattern; equal when written the same.
#[derive(Clone, Debug)]
pub struct PathPattern {
    text: Box<str>,
    re: Regex,
}

/// Compiled-size bound for one pattern: rule files are user input.
const SIZE_LIMIT: usize = 1 << 20;

impl PathPattern {
    pub fn new(text: &str) -> Result<Self, String> {
        let re = RegexBuilder::new(text)
            .multi_line(true)
            .size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| format!("not a valid pattern: {e}"))?;
        Ok(Self {
            text: text.into(),
            re,
        })
    }

    /// Whether the pattern occurs anywhere in `path`.
    pub fn is_found_in(&self, path: &str) -> bool {
        self.re.is_match(path)
    }
}

impl PartialEq for PathPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for PathPattern {}

impl Hash for PathPattern {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expectations of the container plugin's `TEST(container_info, mounts)`, for a
    /// mount whose source is `/tmp/foo`.
    #[test]
    fn searches_like_falcos_container_plugin() {
        let found = |p: &str| PathPattern::new(p).unwrap().is_found_in("/tmp/foo");
        for p in [
            "foo",
            "/tmp",
            "/tmp/*",
            "/tmp*",
            "/",
            "foo$",
            "^/tmp",
            "tmp/fo",
            "tmp/[fo,ba]",
        ] {
            assert!(found(p), "{p}");
        }
        assert!(!found("^tmp"));
        assert!(!found("/var/lib/kubelet"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(PathPattern::new("/proc[").is_err());
    }
}
