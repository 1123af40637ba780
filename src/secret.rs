//! Credentials: a redacting newtype and the sources (env var, file) they are read from.
//!
//! Nothing in this module ever formats the secret's content: `Debug`/`Display` print `***`,
//! and every error names only the *source* (variable name, file path) of a credential.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

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
            SecretSource::Env(name) => write!(f, "environment variable {}", shown(name)),
            SecretSource::File(path) => write!(f, "file {}", shown_path(path)),
            #[cfg(feature = "demo")]
            SecretSource::Static(_) => f.write_str("built-in demo credential"),
        }
    }
}

/// Why a credential could not be read. Never carries the credential itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("environment variable {} is not set", shown(.0))]
    EnvMissing(String),
    #[error("environment variable {} is empty", shown(.0))]
    EnvEmpty(String),
    #[error("environment variable {} is not valid UTF-8", shown(.0))]
    EnvNotUnicode(String),
    #[error("cannot read token file {}: {kind}", shown_path(.path))]
    FileUnreadable { path: PathBuf, kind: String },
    #[error("token file {} is empty", shown_path(.0))]
    FileEmpty(PathBuf),
    #[error("token file {} is not valid UTF-8", shown_path(.0))]
    FileNotUnicode(PathBuf),
    /// The file's read (or its metadata) did not return within the probe timeout: a hung
    /// network mount, a FIFO without a writer. The read stays outstanding; no other read
    /// of the file starts until it returns.
    #[error("token file {} has not answered for {secs} s (one read of it is outstanding; no other starts until it returns)", shown_path(.path))]
    FileHung { path: PathBuf, secs: u64 },
    /// Every slot for token-file reads is taken by reads that have not returned.
    #[error("token file {} not read: {} token-file reads are outstanding", shown_path(.0), MAX_FILE_READS)]
    FileReadsBusy(PathBuf),
}

/// What an error shows for a source name: the name, unless it looks like a credential
/// pasted where a variable name or path belongs (then it is never echoed).
fn shown(name: &str) -> &str {
    if looks_like_secret(name) {
        "(a name that looks like a credential; not shown)"
    } else {
        name
    }
}

fn shown_path(path: &Path) -> std::borrow::Cow<'_, str> {
    let text = path.to_string_lossy();
    if looks_like_secret(&text) {
        std::borrow::Cow::Borrowed("(a name that looks like a credential; not shown)")
    } else {
        text
    }
}

/// Whether `s` has the shape of a credential rather than of a variable name or a path,
/// whatever the vendor: 20+ characters without spaces or `/` that mix upper case, lower
/// case and digits with a random-looking spread (Shannon entropy ≥ 3.5 bits a character:
/// an old 24-character Atlassian token, a GitLab token), or 32+ hexadecimal digits (an
/// old GitHub token, a hash). Variable names are upper snake case and paths contain `/`,
/// so neither matches.
pub fn looks_like_secret(s: &str) -> bool {
    let s = s.trim();
    if s.len() < 20 || s.contains(|c: char| c.is_whitespace() || c == '/') {
        return false;
    }
    let count = |f: fn(&char) -> bool| s.chars().filter(f).count();
    let (upper, lower, digits) = (
        count(char::is_ascii_uppercase),
        count(char::is_ascii_lowercase),
        count(char::is_ascii_digit),
    );
    if s.len() >= 32 && digits > 0 && s.chars().all(|c| c.is_ascii_hexdigit()) {
        return true;
    }
    upper > 0 && lower > 0 && digits > 0 && entropy(s) >= 3.5
}

/// Shannon entropy of `s`, in bits per character.
fn entropy(s: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in s.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = s.chars().count() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Largest token file we read. Atlassian tokens are a few hundred bytes; a bigger file is a
/// misconfiguration (e.g. pointing at a whole secrets bundle) and must not be slurped.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// Token-file reads outstanding at once, across every token: each runs on a thread of the
/// blocking pool, and a hung mount must not take the whole pool (which also resolves host
/// names for the probes).
pub const MAX_FILE_READS: usize = 32;

static FILE_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_FILE_READS);

/// Reads a [`SecretSource`]. An environment variable is read once, when the reader is built
/// (the environment of a running process does not change from outside; a reload builds
/// new readers). A file's content is cached until the file changes on disk (mtime or
/// size), so a rotated token is picked up without a reload; [`SecretReader::read_within`]
/// reads it on the blocking pool with a bounded wait.
#[derive(Debug)]
pub struct SecretReader {
    source: SecretSource,
    /// `token_env`: the value as it was when the reader was built.
    env: Option<Result<Secret, CredentialError>>,
    cache: Arc<Mutex<Option<FileCache>>>,
    /// A file read that did not return in time: the next read waits for it instead of
    /// starting another (at most one outstanding read per reader).
    pending: Mutex<Option<Pending>>,
}

#[derive(Debug)]
struct Pending {
    started: Instant,
    read: tokio::task::JoinHandle<Result<Secret, CredentialError>>,
}

#[derive(Debug)]
struct FileCache {
    modified: Option<SystemTime>,
    len: u64,
    secret: Secret,
}

impl SecretReader {
    pub fn new(source: SecretSource) -> Self {
        let env = match &source {
            SecretSource::Env(name) => Some(read_env(name)),
            _ => None,
        };
        Self {
            source,
            env,
            cache: Arc::new(Mutex::new(None)),
            pending: Mutex::new(None),
        }
    }

    pub fn source(&self) -> &SecretSource {
        &self.source
    }

    /// Reads the secret on the calling thread (`--config.check`, tests).
    pub fn read(&self) -> Result<Secret, CredentialError> {
        match (&self.source, &self.env) {
            (_, Some(env)) => env.clone(),
            (SecretSource::Env(name), None) => read_env(name),
            #[cfg(feature = "demo")]
            (SecretSource::Static(secret), _) => Ok(secret.clone()),
            (SecretSource::File(path), _) => read_file_cached(&self.cache, path),
        }
    }

    /// Reads the secret without blocking the async thread: a file is stat'ed and read on
    /// the blocking pool, and waited for at most `limit`. A read that does not return in
    /// time is [`CredentialError::FileHung`] and stays outstanding: later calls wait for it
    /// (again at most `limit` each) rather than start another, and take its result when it
    /// comes.
    pub async fn read_within(&self, limit: Duration) -> Result<Secret, CredentialError> {
        let SecretSource::File(path) = &self.source else {
            return self.read();
        };
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let deadline = tokio::time::Instant::now() + limit;
        let mut pending = match pending {
            Some(p) => p,
            None => {
                let permit = match tokio::time::timeout_at(deadline, FILE_READS.acquire()).await {
                    Ok(Ok(permit)) => permit,
                    _ => return Err(CredentialError::FileReadsBusy(path.clone())),
                };
                let (cache, file) = (self.cache.clone(), path.clone());
                Pending {
                    started: Instant::now(),
                    read: tokio::task::spawn_blocking(move || {
                        let _permit = permit;
                        read_file_cached(&cache, &file)
                    }),
                }
            }
        };
        match tokio::time::timeout_at(deadline, &mut pending.read).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CredentialError::FileUnreadable {
                path: path.clone(),
                kind: "the read failed".into(),
            }),
            Err(_) => {
                let secs = pending.started.elapsed().as_secs_f64().round() as u64;
                *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(pending);
                Err(CredentialError::FileHung {
                    path: path.clone(),
                    secs,
                })
            }
        }
    }
}

/// Reads `path`, or takes the cached content when the file's mtime and size are those
/// it had when the cache was filled.
fn read_file_cached(
    cache: &Mutex<Option<FileCache>>,
    path: &Path,
) -> Result<Secret, CredentialError> {
    let unreadable = |e: std::io::Error| CredentialError::FileUnreadable {
        path: path.to_path_buf(),
        kind: io_kind(&e),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    let modified = meta.modified().ok();
    let len = meta.len();
    if let Some(c) = cache.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        if c.modified == modified && c.len == len && modified.is_some() {
            return Ok(c.secret.clone());
        }
    }
    let secret = read_file(path)?;
    *cache.lock().unwrap_or_else(|e| e.into_inner()) = Some(FileCache {
        modified,
        len,
        secret: secret.clone(),
    });
    Ok(secret)
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
    fn credential_shaped_names_are_never_echoed() {
        for secret in [
            "Zk3pQ9rLm2Tx7Vb4Nc8Wd1Ye",   // an older 24-character Atlassian token
            "glpat-3xYz9AbCdEfGh1JkLmNo", // GitLab
            "ghp_16C7e42F292c6912E7710c838347Ae178B4a", // GitHub, fine-grained prefix aside
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3", // an old 40-hex GitHub token
        ] {
            assert!(looks_like_secret(secret), "{secret}");
            for shown in [
                CredentialError::EnvMissing(secret.into()).to_string(),
                CredentialError::FileEmpty(secret.into()).to_string(),
                SecretSource::Env(secret.into()).to_string(),
            ] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        for name in [
            "JIRA_CI_TOKEN",
            "ATLASSIAN_ADMIN_KEY_PRODUCTION_2026",
            "/run/secrets/jira-ci-token-2026",
            "my-token",
        ] {
            assert!(!looks_like_secret(name), "{name}");
            assert!(CredentialError::EnvMissing(name.into())
                .to_string()
                .contains(name));
        }
    }

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
    fn an_env_var_is_read_when_the_reader_is_built() {
        // Only this test uses this variable; it is absent now and stays absent.
        let reader = SecretReader::new(SecretSource::Env("APITOKEN_TEST_ONCE_UNSET".into()));
        assert_eq!(
            reader.read().unwrap_err(),
            CredentialError::EnvMissing("APITOKEN_TEST_ONCE_UNSET".into())
        );
        let path = std::env::var_os("PATH").map(|p| p.to_string_lossy().trim().to_string());
        let reader = SecretReader::new(SecretSource::Env("PATH".into()));
        assert_eq!(reader.read().ok().map(|s| s.expose().to_string()), path);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_that_never_answers_is_an_error_and_one_read_stays_outstanding() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let reader = SecretReader::new(SecretSource::File(fifo.clone()));
        let limit = Duration::from_millis(200);
        let started = Instant::now();
        for _ in 0..5 {
            match reader.read_within(limit).await {
                Err(CredentialError::FileHung { path, .. }) => assert_eq!(path, fifo),
                other => panic!("expected FileHung, got {other:?}"),
            }
        }
        assert!(started.elapsed() < Duration::from_secs(3));
        // One read outstanding, holding one of the slots, not five.
        assert_eq!(FILE_READS.available_permits(), MAX_FILE_READS - 1);
        let text = reader.read_within(limit).await.unwrap_err().to_string();
        assert!(text.contains(&format!("token file {} has not answered", fifo.display())));
        // A writer appears: the outstanding read returns, and its result is taken.
        let writer_path = fifo.clone();
        let writer = std::thread::spawn(move || std::fs::write(writer_path, "late-token\n"));
        let mut got = None;
        for _ in 0..25 {
            if let Ok(s) = reader.read_within(limit).await {
                got = Some(s);
                break;
            }
        }
        writer.join().unwrap().unwrap();
        assert_eq!(
            got.map(|s| s.expose().to_string()).as_deref(),
            Some("late-token")
        );
        assert_eq!(FILE_READS.available_permits(), MAX_FILE_READS);
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
