//! Forbidden names: what the kernel compares with an exec's names (see
//! `youwatch_common::enforce`), checked when the configuration is read.

use serde::Deserialize;
use youwatch_common::enforce::{NAME_LEN, NameKey};

/// The shells stopped by default: Falco's `shell_binaries` list. `busybox` is left out on
/// purpose (every command of a busybox image is busybox); its shell is still stopped by the
/// name it is run as (`sh`, `ash`), and `#!/bin/sh` scripts by their interpreter's.
pub const DEFAULT_FORBIDDEN: [&str; 8] = ["ash", "bash", "csh", "ksh", "sh", "tcsh", "zsh", "dash"];

/// A file name the kernel stops in enforced workloads.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ForbiddenName(String);

impl ForbiddenName {
    pub fn new(name: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("an empty name: give a file name such as sh".into());
        }
        if name.contains('/') {
            let base = name.rsplit('/').next().unwrap_or_default();
            return Err(format!(
                "{name:?} is a path: give the file name ({base:?}); it is compared with the \
                 last component of the exec'd path, of a #! interpreter, and the executed \
                 file's own name"
            ));
        }
        if name.len() >= NAME_LEN {
            return Err(format!(
                "{name:?} is {} bytes, the kernel compares at most {}",
                name.len(),
                NAME_LEN - 1
            ));
        }
        if name.contains('\0') || name == "." || name == ".." {
            return Err(format!("{name:?} is not a file name"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The kernel's key: the bytes, NUL-padded.
    pub fn key(&self) -> NameKey {
        let mut key = [0; NAME_LEN];
        key[..self.0.len()].copy_from_slice(self.0.as_bytes());
        key
    }
}

impl TryFrom<String> for ForbiddenName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::new(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_file_names_the_kernel_can_compare() {
        let key = ForbiddenName::new("sh").unwrap().key();
        assert_eq!(&key[..3], b"sh\0");
        assert!(key[2..].iter().all(|b| *b == 0));
        let longest = "x".repeat(NAME_LEN - 1);
        assert!(ForbiddenName::new(&longest).is_ok());
        let err = ForbiddenName::new(&"x".repeat(NAME_LEN)).unwrap_err();
        assert!(err.contains("32 bytes"), "{err}");
        let err = ForbiddenName::new("/bin/sh").unwrap_err();
        assert!(err.contains("a path") && err.contains("\"sh\""), "{err}");
        assert!(ForbiddenName::new("").is_err() && ForbiddenName::new("..").is_err());
        for name in DEFAULT_FORBIDDEN {
            assert!(ForbiddenName::new(name).is_ok());
        }
    }
}
