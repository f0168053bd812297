//! The webhook's token, read from a file (a mounted Kubernetes Secret) and re-read when the
//! file changes, so rotating the Secret needs no restart. Compared in constant time.
//!
//! Presented as `Authorization: Bearer <token>` (falcosidekick's webhook custom headers,
//! curl...) or as the password of HTTP Basic credentials (`Authorization: Basic
//! base64(<any user>:<token>)`): Falco's own `http_output` has no header setting, but libcurl
//! sends the credentials of its URL, `http://falco:<token>@agent:9376/falco`, that way.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Mutex,
    time::SystemTime,
};

use subtle::ConstantTimeEq;

/// Why a request's token could not be checked or was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no 'Authorization: Bearer <token>' (or Basic) header")]
    Missing,
    #[error("invalid bearer token")]
    Invalid,
    /// The server side: the file cannot be read or is empty.
    #[error("the webhook token file {path} is unusable: {reason}")]
    Unavailable { path: PathBuf, reason: String },
}

/// What identifies a version of the file: a Secret update swaps a symlink, changing all of
/// these.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<(Stamp, Vec<u8>)>>,
}

/// Tokens longer than this are refused (a Secret holding something else by mistake).
const MAX_TOKEN_BYTES: u64 = 4096;

impl TokenFile {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            cached: Mutex::new(None),
        }
    }

    /// Reads the token now (at start-up, so a bad path fails fast).
    pub fn check(&self) -> Result<(), TokenError> {
        self.current().map(|_| ())
    }

    /// Checks an `Authorization` header value.
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<(), TokenError> {
        let expected = self.current()?;
        let presented = authorization
            .and_then(presented_token)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing)?;
        if bool::from(presented.as_slice().ct_eq(&expected)) {
            Ok(())
        } else {
            Err(TokenError::Invalid)
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> TokenError {
        TokenError::Unavailable {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }

    /// The token, re-read when the file changed since the last read.
    fn current(&self) -> Result<Vec<u8>, TokenError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.unavailable(e.to_string()))?;
        let stamp = Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.modified().ok(),
        };
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, token)) = cached.as_ref()
            && *s == stamp
        {
            return Ok(token.clone());
        }
        if meta.len() > MAX_TOKEN_BYTES {
            return Err(self.unavailable(format!("larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let bytes = std::fs::read(&self.path).map_err(|e| self.unavailable(e.to_string()))?;
        let token = bytes.trim_ascii().to_vec();
        if token.is_empty() {
            return Err(self.unavailable("it is empty"));
        }
        if cached.is_some() {
            tracing::info!(path = %self.path.display(), "webhook token file changed: reloaded");
        }
        *cached = Some((stamp, token.clone()));
        Ok(token)
    }
}

/// The token in an `Authorization` value: a Bearer token, or the password of Basic
/// credentials.
fn presented_token(header: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let header = header.trim_ascii();
    let split = header.iter().position(u8::is_ascii_whitespace)?;
    let (scheme, credentials) = (&header[..split], header[split..].trim_ascii());
    if scheme.eq_ignore_ascii_case(b"bearer") {
        return Some(credentials.to_vec());
    }
    if scheme.eq_ignore_ascii_case(b"basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(credentials)
            .ok()?;
        let colon = decoded.iter().position(|&b| b == b':')?;
        return Some(decoded[colon + 1..].to_vec());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_and_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let t = TokenFile::new(&path);
        assert_eq!(t.verify(Some(b"Bearer s3cret")), Ok(()));
        assert_eq!(t.verify(Some(b"bearer   s3cret ")), Ok(()));
        assert_eq!(t.verify(Some(b"Bearer wrong")), Err(TokenError::Invalid));
        // Falco's http_output: URL credentials, sent by libcurl as Basic (user "falco").
        assert_eq!(t.verify(Some(b"Basic ZmFsY286czNjcmV0")), Ok(()));
        assert_eq!(
            t.verify(Some(b"Basic ZmFsY286d3Jvbmc=")),
            Err(TokenError::Invalid)
        );
        // Basic without a colon, or not base64: no token presented.
        assert_eq!(t.verify(Some(b"Basic czNjcmV0")), Err(TokenError::Missing));
        assert_eq!(t.verify(Some(b"Basic !!!")), Err(TokenError::Missing));
        assert_eq!(t.verify(Some(b"Digest x")), Err(TokenError::Missing));
        assert_eq!(t.verify(Some(b"Bearers3cret")), Err(TokenError::Missing));
        assert_eq!(t.verify(None), Err(TokenError::Missing));
        // A Secret update: a new file swapped in under the same name.
        let new = dir.path().join("token.new");
        std::fs::write(&new, "rotated").unwrap();
        std::fs::rename(&new, &path).unwrap();
        assert_eq!(t.verify(Some(b"Bearer s3cret")), Err(TokenError::Invalid));
        assert_eq!(t.verify(Some(b"Bearer rotated")), Ok(()));
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let t = TokenFile::new(&path);
        assert!(matches!(t.check(), Err(TokenError::Unavailable { .. })));
        std::fs::write(&path, "  \n").unwrap();
        let err = t.check().unwrap_err().to_string();
        assert!(
            err.contains("empty") && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
}
