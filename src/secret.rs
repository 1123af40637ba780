//! Credentials: a redacting newtype and the sources (env var, file) they are read from.
//!
//! Nothing in this module ever formats the secret's content: `Debug`/`Display` print `***`,
//! and every error names only the *source* (variable name, file path) of a credential.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use zeroize::Zeroize;

/// A credential value. Its memory is zeroed on drop and it never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The only way to read the value: at the point where it goes on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Wipes the value: every byte of the buffer's capacity is overwritten (zeroize's volatile
/// writes, which the optimizer may not remove), then the length is set to 0.
impl Zeroize for Secret {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.zeroize();
    }
}

/// The zeroize crate's marker for "dropping this wipes its memory" (the `Drop` above).
impl zeroize::ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a credential comes from. Inline secrets in the config file are deliberately not
/// supported; `Static` exists for the embedded demo only (feature `demo`) and cannot be
/// written in YAML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
    #[cfg(feature = "demo")]
    Static(Secret),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "environment variable {name}"),
            SecretSource::File(path) => write!(f, "file {}", path.display()),
            #[cfg(feature = "demo")]
            SecretSource::Static(_) => f.write_str("built-in demo credential"),
        }
    }
}

/// Why a credential could not be read. Never carries the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("environment variable {0} is not valid UTF-8")]
    EnvNotUnicode(String),
    #[error("cannot read token file {path}: {kind}")]
    FileUnreadable { path: PathBuf, kind: String },
    #[error("token file {0} is empty")]
    FileEmpty(PathBuf),
    #[error("token file {0} is not valid UTF-8")]
    FileNotUnicode(PathBuf),
}

/// Largest token file we read. Atlassian tokens are a few hundred bytes; a bigger file is a
/// misconfiguration (e.g. pointing at a whole secrets bundle) and must not be slurped.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Reads a [`SecretSource`], caching a file's content until the file changes on disk
/// (mtime or size), so a rotated token is picked up without a reload.
#[derive(Debug)]
pub struct SecretReader {
    source: SecretSource,
    cache: Mutex<Option<FileCache>>,
}

#[derive(Debug)]
struct FileCache {
    modified: Option<SystemTime>,
    len: u64,
    secret: Secret,
}

impl SecretReader {
    pub fn new(source: SecretSource) -> Self {
        Self {
            source,
            cache: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    pub fn read(&self) -> Result<Secret, CredentialError> {
        match &self.source {
            SecretSource::Env(name) => read_env(name),
            #[cfg(feature = "demo")]
            SecretSource::Static(secret) => Ok(secret.clone()),
            SecretSource::File(path) => self.read_file_cached(path),
        }
    }

    fn read_file_cached(&self, path: &Path) -> Result<Secret, CredentialError> {
        let unreadable = |e: std::io::Error| CredentialError::FileUnreadable {
            path: path.to_path_buf(),
            kind: io_kind(&e),
        };
        let meta = std::fs::metadata(path).map_err(unreadable)?;
        let modified = meta.modified().ok();
        let len = meta.len();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.as_ref() {
            if c.modified == modified && c.len == len && modified.is_some() {
                return Ok(c.secret.clone());
            }
        }
        let secret = read_file(path)?;
        *cache = Some(FileCache {
            modified,
            len,
            secret: secret.clone(),
        });
        Ok(secret)
    }
}

fn read_env(name: &str) -> Result<Secret, CredentialError> {
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Err(CredentialError::EnvEmpty(name.to_string())),
        Ok(v) => Ok(Secret::new(v.trim())),
        Err(std::env::VarError::NotPresent) => Err(CredentialError::EnvMissing(name.to_string())),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(CredentialError::EnvNotUnicode(name.to_string()))
        }
    }
}

/// Reads and trims a token file (trailing newline/whitespace is common in mounted secrets).
pub fn read_file(path: &Path) -> Result<Secret, CredentialError> {
    let mut bytes = crate::util::read_at_most(path, MAX_TOKEN_FILE_BYTES).map_err(|e| {
        CredentialError::FileUnreadable {
            path: path.to_path_buf(),
            kind: io_kind(&e),
        }
    })?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        bytes.zeroize();
        return Err(CredentialError::FileUnreadable {
            path: path.to_path_buf(),
            kind: format!("larger than {MAX_TOKEN_FILE_BYTES} bytes"),
        });
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            e.into_bytes().zeroize();
            return Err(CredentialError::FileNotUnicode(path.to_path_buf()));
        }
    };
    let secret = Secret::new(text.trim());
    text.zeroize();
    if secret.expose().is_empty() {
        return Err(CredentialError::FileEmpty(path.to_path_buf()));
    }
    Ok(secret)
}

/// A stable, secret-free description of an I/O error (no OS text that might echo content).
fn io_kind(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("ATATT3xSUPERSECRET");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        let src = SecretSource::Static(s);
        assert!(!format!("{src:?} {src}").contains("SUPERSECRET"));
    }

    #[test]
    fn file_is_trimmed_and_reread_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tok");
        std::fs::write(&path, "first-token\n").unwrap();
        let reader = SecretReader::new(SecretSource::File(path.clone()));
        assert_eq!(reader.read().unwrap().expose(), "first-token");
        // a different length guarantees the change is seen even on coarse mtime filesystems
        std::fs::write(&path, "second-token-rotated\n").unwrap();
        assert_eq!(reader.read().unwrap().expose(), "second-token-rotated");
    }

    #[test]
    fn missing_sources_name_the_source_not_a_value() {
        let reader = SecretReader::new(SecretSource::Env("APITOKEN_TEST_SURELY_UNSET".into()));
        let err = reader.read().unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable APITOKEN_TEST_SURELY_UNSET is not set"
        );
        let reader = SecretReader::new(SecretSource::File("/nonexistent/tok".into()));
        assert_eq!(
            reader.read().unwrap_err().to_string(),
            "cannot read token file /nonexistent/tok: no such file"
        );
    }

    #[test]
    fn empty_and_oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "  \n").unwrap();
        assert_eq!(
            read_file(&empty).unwrap_err(),
            CredentialError::FileEmpty(empty)
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 70 * 1024]).unwrap();
        assert!(matches!(
            read_file(&big).unwrap_err(),
            CredentialError::FileUnreadable { .. }
        ));
    }
}
