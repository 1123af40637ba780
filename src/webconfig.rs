//! `--web.config.file` in the Prometheus exporter-toolkit format: TLS and basic auth.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt
//!   key_file: server.key
//!   min_version: TLS12            # TLS12 (default) or TLS13
//!   client_auth_type: RequireAndVerifyClientCert   # optional mTLS, with client_ca_file
//!   client_ca_file: ca.crt
//! basic_auth_users:
//!   prometheus: $2y$10$...        # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Every endpoint except `/-/healthy` requires auth when users are configured. bcrypt is
//! deliberately slow (~50 ms), so successful verifications are cached under a salted
//! SHA-256 of user and password; unknown users still pay one bcrypt so timing does not
//! reveal which users exist.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// A validated web configuration. The default serves plain HTTP without auth.
#[derive(Clone, Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "basic_auth_users",
                &self.auth.as_ref().map(|a| a.users.len()),
            )
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    min_version: Option<String>,
    max_version: Option<String>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; this server speaks HTTP/1.1.
    #[allow(dead_code)]
    http2: Option<bool>,
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

/// Loads and validates the file: certificates and keys readable, hashes well-formed.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let err = |msg: String| format!("web config {}: {msg}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig {
            tls_server_config: None,
            http_server_config: None,
            basic_auth_users: BTreeMap::new(),
        }
    } else {
        serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(
            |e| {
                let path = e.path().to_string();
                err(format!(
                    "{path}: {}",
                    without_string_values(&e.into_inner().to_string())
                ))
            },
        )?
    };
    let _ = raw.http_server_config;
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = raw
        .tls_server_config
        .map(|t| tls_config(&t, base).map(Arc::new))
        .transpose()
        .map_err(err)?;
    let auth = if raw.basic_auth_users.is_empty() {
        None
    } else {
        let mut users = BTreeMap::new();
        for (user, hash) in raw.basic_auth_users {
            if user.is_empty() || user.contains(':') {
                // `user:password` written as the key: show the user part only.
                let shown = user.split(':').next().unwrap_or("");
                return Err(err(format!(
                    "basic_auth_users: invalid user name {shown:?}… (empty or contains ':'; the value is the password's bcrypt hash)"
                )));
            }
            // Validate the hash format now rather than at the first request.
            if bcrypt::verify("", &hash).is_err() {
                return Err(err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (expected $2a$/$2b$/$2y$…)"
                )));
            }
            users.insert(user, hash);
        }
        Some(Arc::new(BasicAuth::new(users)))
    };
    Ok(WebConfig { tls, auth })
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn tls_version(v: &str, field: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match v {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config.{field}: {v} is not supported (insecure); use TLS12 or TLS13"
        )),
        other => Err(format!(
            "tls_server_config.{field}: unknown version {other:?}; use TLS12 or TLS13"
        )),
    }
}

fn tls_config(t: &RawTls, base: &Path) -> Result<rustls::ServerConfig, String> {
    let cert_path = resolve(base, &t.cert_file);
    let key_path = resolve(base, &t.key_file);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "tls_server_config.cert_file: cannot load {}: {e}",
                cert_path.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file: no certificate in {}",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
        format!(
            "tls_server_config.key_file: cannot load a private key from {}: {e}",
            key_path.display()
        )
    })?;

    let min = tls_version(t.min_version.as_deref().unwrap_or("TLS12"), "min_version")?;
    let max = tls_version(t.max_version.as_deref().unwrap_or("TLS13"), "max_version")?;
    let mut versions = Vec::new();
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let rank = |x: &rustls::SupportedProtocolVersion| u16::from(x.version);
        if rank(v) >= rank(min) && rank(v) <= rank(max) {
            versions.push(v);
        }
    }
    if versions.is_empty() {
        return Err("tls_server_config: min_version is above max_version".to_string());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (t.client_auth_type.as_deref(), &t.client_ca_file) {
        (None | Some("NoClientCert"), None) => builder.with_no_client_auth(),
        (Some("RequireAndVerifyClientCert"), Some(ca)) => {
            let ca_path = resolve(base, ca);
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&ca_path)
                .map_err(|e| {
                    format!(
                        "tls_server_config.client_ca_file: cannot load {}: {e}",
                        ca_path.display()
                    )
                })?
            {
                let cert = cert.map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("tls_server_config.client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        (Some("RequireAndVerifyClientCert"), None) => {
            return Err(
                "tls_server_config.client_ca_file: required with RequireAndVerifyClientCert"
                    .to_string(),
            )
        }
        (None | Some("NoClientCert"), Some(_)) => {
            return Err("tls_server_config.client_ca_file: set client_auth_type: RequireAndVerifyClientCert to use it".to_string())
        }
        (Some(other), _) => {
            return Err(format!(
                "tls_server_config.client_auth_type: {other:?} is not supported; use NoClientCert or RequireAndVerifyClientCert"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Most successful verifications kept; beyond this the cache is cleared (it refills at
/// the cost of one bcrypt per distinct credential).
const AUTH_CACHE_MAX: usize = 1024;

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    salt: [u8; 32],
    verified: Mutex<HashSet<[u8; 32]>>,
    /// Used for unknown users so that they cost as much as known ones.
    dummy_hash: String,
}

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        Self {
            users,
            salt: rand::random(),
            verified: Mutex::new(HashSet::new()),
            dummy_hash: bcrypt::hash("apitoken-exporter-dummy", 10).unwrap_or_default(),
        }
    }

    fn cache_key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// True when `user:password` matches. Blocking (bcrypt): call off the async runtime.
    pub fn check(&self, user: &str, password: &str) -> bool {
        let key = self.cache_key(user, password);
        {
            let cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            // Constant-time comparison against every cached key (the set is small).
            let mut hit = subtle::Choice::from(0);
            for k in cache.iter() {
                hit |= k.ct_eq(&key);
            }
            if bool::from(hit) {
                return true;
            }
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.dummy_hash.as_str(), false),
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= AUTH_CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
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

/// axum middleware: every path but `/-/healthy` needs valid basic auth.
pub async fn require_auth(
    State(auth): State<Arc<BasicAuth>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/-/healthy" {
        return next.run(request).await;
    }
    let creds = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(parse_basic);
    let ok = match creds {
        Some((user, password)) => {
            let auth = auth.clone();
            tokio::task::spawn_blocking(move || auth.check(&user, &password))
                .await
                .unwrap_or(false)
        }
        None => false,
    };
    if ok {
        next.run(request).await
    } else {
        let mut resp = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"apitoken-exporter\""),
        );
        resp
    }
}

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; more wait in the kernel's accept queue.
const MAX_PENDING_HANDSHAKES: usize = 256;

/// A TLS listener for `axum::serve`. Handshakes run in their own tasks with a timeout, so
/// a slow or silent client cannot block the accept loop.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        std::net::SocketAddr,
    )>,
    local: std::net::SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        tcp: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (sock, addr) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            rx,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_checks_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(BTreeMap::from([("prom".to_string(), hash)]));
        assert!(auth.check("prom", "s3cret"));
        assert!(auth.check("prom", "s3cret")); // cached path
        assert!(!auth.check("prom", "wrong"));
        assert!(!auth.check("nobody", "s3cret"));
    }

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
}
