//! `--web.config.file` in the Prometheus exporter-toolkit format (its
//! `docs/web-configuration.md`): TLS, basic auth, response headers, a rate limit.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # or cert: <PEM>; key_file / key likewise
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: ca.crt         # or client_ca: <PEM>
//! basic_auth_users:
//!   prometheus: $2y$10$...
//! http_server_config:
//!   headers: { X-Frame-Options: deny }
//! rate_limit: { interval: 1s, burst: 10 }
//! ```
//!
//! The file and every file it names are re-read while running ([`WebConfig::watch`]): a
//! rotated certificate or a changed user list applies to new connections and requests
//! within [`RELOAD_POLL`]; a broken new version keeps the running one and logs why.
//! Whether TLS is on and `http2` are fixed at start-up (as in the toolkit).
//!
//! Layout: `tls` (the rustls config and client-certificate rules), `auth` (bcrypt, bounded
//! and cached), `limit` (the token bucket, Go durations), `listener` (the TLS accept loop).

mod auth;
mod limit;
mod listener;
mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

pub use auth::{BasicAuth, Verdict, MAX_BCRYPT_WAITING, MAX_CONCURRENT_BCRYPT};
pub use limit::{parse_go_duration, RateLimit};
pub use listener::{TlsListener, TLS_HANDSHAKE_TIMEOUT};

/// How often the web config file and the files it names are checked for changes.
pub const RELOAD_POLL: Duration = Duration::from_secs(1);
/// Most bytes read from the web config file.
const MAX_WEB_CONFIG_BYTES: u64 = 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    #[serde(default)]
    tls_server_config: tls::RawTls,
    #[serde(default)]
    http_server_config: RawHttp,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    interval: Option<serde_yaml::Value>,
    #[serde(default)]
    burst: i64,
}

/// The headers the toolkit lets a file set, and the values allowed where it restricts them
/// (its `extraHTTPHeaders`). Names are matched exactly, as in the toolkit.
const SETTABLE_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// One validated version of the file.
pub struct Active {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub http2: bool,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub rate_limit: Option<RateLimit>,
    /// The files it was built from (watched for changes).
    files: Vec<PathBuf>,
}

impl Default for Active {
    fn default() -> Self {
        Self {
            tls: None,
            http2: true,
            auth: None,
            headers: Vec::new(),
            rate_limit: None,
            files: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Active {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Active")
            .field("tls", &self.tls.is_some())
            .field("http2", &self.http2)
            .field("basic_auth_users", &self.auth.as_ref().map(|a| a.len()))
            .field("headers", &self.headers.len())
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// serde quotes a value it cannot use (`invalid type: string "…", expected a map`). In this
/// file that value may be a password written in the wrong place, so it is cut out.
fn without_string_values(msg: &str) -> String {
    const QUOTED: &str = "string \"";
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(start) = rest.find(QUOTED) {
        out.push_str(&rest[..start]);
        out.push_str("string (value not shown)");
        // Skip the Debug-quoted value, honouring its backslash escapes.
        let mut escaped = false;
        let value = &rest[start + QUOTED.len()..];
        let end = value
            .char_indices()
            .find(|&(_, c)| {
                let closes = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                closes
            })
            .map_or(value.len(), |(i, _)| i + 1);
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Reads and validates the file (and the certificate, key and CA files it names). Never
/// hashes: bcrypt hashes are only checked for their format.
fn load_active(path: &Path, previous: Option<&Active>) -> Result<Active, String> {
    let err = |msg: String| format!("web config {}: {msg}", path.display());
    let bytes = crate::util::read_at_most(path, MAX_WEB_CONFIG_BYTES)
        .map_err(|e| err(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_WEB_CONFIG_BYTES {
        return Err(err(format!("larger than {MAX_WEB_CONFIG_BYTES} bytes")));
    }
    let text = String::from_utf8(bytes).map_err(|_| err("not valid UTF-8".to_string()))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        serde_yaml::from_str("{}").map_err(|e| err(e.to_string()))?
    } else {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(
            |e| {
                let at = e.path().to_string();
                err(format!(
                    "{at}: {}",
                    without_string_values(&e.into_inner().to_string())
                ))
            },
        )?
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let http2 = raw.http_server_config.http2.unwrap_or(true);

    let mut headers = Vec::new();
    for (name, value) in &raw.http_server_config.headers {
        let Some((_, allowed)) = SETTABLE_HEADERS.iter().find(|(n, _)| n == name) else {
            return Err(err(format!(
                "http_server_config.headers: HTTP header {name:?} can not be configured (allowed: {})",
                SETTABLE_HEADERS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            return Err(err(format!(
                "http_server_config.headers: invalid value for {name}. Expected one of: {allowed:?}, but got: {value:?}"
            )));
        }
        if value.is_empty() {
            continue; // "Unset if blank."
        }
        let v = HeaderValue::from_str(value).map_err(|_| {
            err(format!(
                "http_server_config.headers.{name}: not a valid HTTP header value"
            ))
        })?;
        headers.push((
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| err(e.to_string()))?,
            v,
        ));
    }

    let rate_limit = match &raw.rate_limit {
        None => None,
        Some(r) => {
            let interval = match &r.interval {
                None | Some(serde_yaml::Value::Null) => Duration::ZERO,
                // A YAML integer is nanoseconds, as Go's yaml decodes a time.Duration.
                Some(serde_yaml::Value::Number(n)) => match n.as_u64() {
                    Some(ns) => Duration::from_nanos(ns),
                    None => return Err(err("rate_limit.interval: not a duration".to_string())),
                },
                Some(serde_yaml::Value::String(s)) => {
                    parse_go_duration(s).map_err(|e| err(format!("rate_limit.interval: {e}")))?
                }
                Some(_) => return Err(err("rate_limit.interval: not a duration".to_string())),
            };
            (!interval.is_zero()).then(|| RateLimit {
                interval,
                burst: u32::try_from(r.burst.max(0)).unwrap_or(u32::MAX),
            })
        }
    };

    let tls = if raw.tls_server_config.enabled() {
        Some(Arc::new(
            tls::server_config(&raw.tls_server_config, base, http2).map_err(err)?,
        ))
    } else {
        None
    };

    let auth = if raw.basic_auth_users.is_empty() {
        None
    } else {
        for (user, hash) in &raw.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                // `user:password` written as the key: show the user part only.
                let shown = user.split(':').next().unwrap_or("");
                return Err(err(format!(
                    "basic_auth_users: invalid user name {shown:?}… (empty or contains ':'; the value is the password's bcrypt hash)"
                )));
            }
            auth::hash_cost(hash).map_err(|why| err(format!("basic_auth_users.{user}: {why}")))?;
        }
        // The same users as before keep their cache.
        match previous.and_then(|p| p.auth.as_ref()) {
            Some(a) if a.same_users(&raw.basic_auth_users) => Some(a.clone()),
            _ => Some(Arc::new(BasicAuth::new(raw.basic_auth_users))),
        }
    };
    let mut files = vec![path.to_path_buf()];
    files.extend(raw.tls_server_config.files(base));
    Ok(Active {
        tls,
        http2,
        auth,
        headers,
        rate_limit,
        files,
    })
}

/// A fingerprint of the inputs' contents (an unreadable file counts as its error).
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for f in files {
        ctx.update(f.as_os_str().as_encoded_bytes());
        match crate::util::read_at_most(f, MAX_WEB_CONFIG_BYTES) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                ctx.update(&(bytes.len() as u64).to_le_bytes());
                ctx.update(&bytes);
            }
            Err(e) => ctx.update(format!("error {:?}", e.kind()).as_bytes()),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

struct Live {
    path: PathBuf,
    current: RwLock<Arc<Active>>,
    /// The inputs' fingerprint last tried (applied or refused).
    tried: Mutex<[u8; 32]>,
    limiter: Mutex<Option<Arc<limit::Bucket>>>,
}

/// The web configuration: none (plain HTTP, no auth) or a file re-read while running.
#[derive(Clone, Default)]
pub struct WebConfig {
    live: Option<Arc<Live>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field(
                "file",
                &self.live.as_ref().map(|l| l.path.display().to_string()),
            )
            .field("active", &self.current())
            .finish()
    }
}

/// Loads and validates the file: certificates and keys readable and matching, hashes
/// well-formed (not computed), every field as the toolkit accepts it.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let active = load_active(path, None)?;
    let tried = fingerprint(&active.files);
    let limiter = active.rate_limit.map(|r| Arc::new(limit::Bucket::new(r)));
    Ok(WebConfig {
        live: Some(Arc::new(Live {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(active)),
            tried: Mutex::new(tried),
            limiter: Mutex::new(limiter),
        })),
    })
}

impl WebConfig {
    /// The version in force now.
    pub fn current(&self) -> Arc<Active> {
        match &self.live {
            Some(l) => l.current.read().unwrap_or_else(|e| e.into_inner()).clone(),
            None => Arc::new(Active::default()),
        }
    }

    pub fn tls_enabled(&self) -> bool {
        self.current().tls.is_some()
    }

    pub fn basic_auth_enabled(&self) -> bool {
        self.current().auth.is_some()
    }

    /// Whether requests go through [`web_layer`] (auth, headers, rate limit).
    pub fn has_file(&self) -> bool {
        self.live.is_some()
    }

    /// The TLS config for the next handshake (`None`: plain HTTP).
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.current().tls.clone()
    }

    fn limiter(&self) -> Option<Arc<limit::Bucket>> {
        let live = self.live.as_ref()?;
        live.limiter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks the inputs once: if any changed since the last try, loads them and applies
    /// the result, or keeps the running version and logs why. Returns whether a new
    /// version was applied.
    pub fn reload_if_changed(&self) -> bool {
        let Some(live) = &self.live else {
            return false;
        };
        let old = self.current();
        // A changed web config may name other files: the old list is checked, and the
        // file itself is always in it.
        let now = fingerprint(&old.files);
        {
            let mut tried = live.tried.lock().unwrap_or_else(|e| e.into_inner());
            if *tried == now {
                return false;
            }
            *tried = now;
        }
        let new = match load_active(&live.path, Some(&old)) {
            Ok(new) => new,
            Err(e) => {
                tracing::error!(error = %e, "web config changed but cannot be used; keeping the previous web config");
                return false;
            }
        };
        if new.tls.is_some() != old.tls.is_some() {
            tracing::error!(
                file = %live.path.display(),
                "web config: turning TLS {} needs a restart; keeping the previous web config",
                if new.tls.is_some() { "on" } else { "off" }
            );
            return false;
        }
        let mut new = new;
        if new.http2 != old.http2 {
            tracing::warn!(file = %live.path.display(), "web config: http_server_config.http2 takes effect at the next restart");
            new.http2 = old.http2;
        }
        // The new file list is fingerprinted from now on.
        *live.tried.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint(&new.files);
        {
            let mut limiter = live.limiter.lock().unwrap_or_else(|e| e.into_inner());
            if limiter.as_ref().map(|b| b.spec()) != new.rate_limit {
                *limiter = new.rate_limit.map(|r| Arc::new(limit::Bucket::new(r)));
            }
        }
        tracing::info!(
            file = %live.path.display(),
            tls = new.tls.is_some(),
            basic_auth_users = new.auth.as_ref().map_or(0, |a| a.len()),
            headers = new.headers.len(),
            rate_limit = new.rate_limit.is_some(),
            "web config reloaded"
        );
        *live.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        true
    }

    /// Polls for changes every [`RELOAD_POLL`] until the returned task is aborted (the file
    /// reads run on the blocking pool). `None` without a file.
    pub fn watch(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.live.as_ref()?;
        let web = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let web = web.clone();
                let _ = tokio::task::spawn_blocking(move || web.reload_if_changed()).await;
            }
        }))
    }
}

fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let v = value.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// axum middleware for a web config file: the rate limit and basic auth (every path but
/// `/-/healthy`), then the configured headers on every answer.
pub async fn web_layer(State(web): State<WebConfig>, request: Request, next: Next) -> Response {
    let active = web.current();
    let exempt = request.uri().path() == "/-/healthy";
    if !exempt {
        if let Some(bucket) = web.limiter() {
            if !bucket.allow() {
                return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response();
            }
        }
    }
    let mut response = match (&active.auth, exempt) {
        (Some(auth), false) => {
            let creds = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(parse_basic);
            let verdict = match creds {
                Some((user, password)) => auth.check_bounded(user, password).await,
                None => Verdict::Denied,
            };
            match verdict {
                Verdict::Allowed => next.run(request).await,
                Verdict::Denied => {
                    let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"apitoken-exporter\""),
                    );
                    resp
                }
                Verdict::Busy => {
                    let mut resp = (
                        StatusCode::TOO_MANY_REQUESTS,
                        "too many password checks in progress\n",
                    )
                        .into_response();
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    resp
                }
            }
        }
        _ => next.run(request).await,
    };
    for (name, value) in &active.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        let v = HeaderValue::from_static("Basic cHJvbTpzM2NyZXQ6d2l0aDpjb2xvbnM=");
        assert_eq!(
            parse_basic(&v),
            Some(("prom".into(), "s3cret:with:colons".into()))
        );
        assert_eq!(parse_basic(&HeaderValue::from_static("Bearer x")), None);
    }

    #[test]
    fn bad_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        std::fs::write(&p, "basic_auth_users:\n  prom: notahash\n").unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("basic_auth_users.prom: not a bcrypt hash"),
            "{e}"
        );
        assert!(!e.contains("notahash"), "{e}");
        std::fs::write(
            &p,
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n",
        )
        .unwrap();
        let e = load(&p).unwrap_err();
        assert!(
            e.contains("tls_server_config.cert_file: cannot load"),
            "{e}"
        );
        std::fs::write(&p, "tls_server_confg: {}\n").unwrap();
        let e = load(&p).unwrap_err();
        assert!(e.contains("unknown field `tls_server_confg`"), "{e}");
    }

    #[test]
    fn a_changed_file_is_applied_and_a_broken_one_keeps_the_running_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        let h1 = bcrypt::hash("one", 4).unwrap();
        std::fs::write(&p, format!("basic_auth_users:\n  a: \"{h1}\"\n")).unwrap();
        let web = load(&p).unwrap();
        assert!(!web.reload_if_changed(), "nothing changed");
        let first = web.current().auth.clone().unwrap();
        assert!(first.check("a", "one"));
        // Headers change, users do not: the same BasicAuth (and its cache) stays.
        std::fs::write(
            &p,
            format!("basic_auth_users:\n  a: \"{h1}\"\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n"),
        )
        .unwrap();
        assert!(web.reload_if_changed());
        assert!(Arc::ptr_eq(&first, web.current().auth.as_ref().unwrap()));
        assert_eq!(web.current().headers.len(), 1);
        // Broken: refused once, the running version stays.
        std::fs::write(&p, "basic_auth_users:\n  a: nope\n").unwrap();
        assert!(!web.reload_if_changed());
        assert!(!web.reload_if_changed());
        assert!(web.current().auth.as_ref().unwrap().check("a", "one"));
        // TLS cannot be switched on while running.
        std::fs::write(&p, "tls_server_config:\n  cert_file: x\n  key_file: y\n").unwrap();
        assert!(!web.reload_if_changed());
        assert!(web.current().tls.is_none());
    }

    #[test]
    fn debug_output_holds_no_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("web.yml");
        let h = bcrypt::hash("one", 4).unwrap();
        std::fs::write(&p, format!("basic_auth_users:\n  a: \"{h}\"\n")).unwrap();
        let web = load(&p).unwrap();
        let shown = format!("{web:?}");
        assert!(!shown.contains(&h[7..]), "{shown}");
    }
}
