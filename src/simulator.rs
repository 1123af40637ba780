//! In-process HTTP simulator of the Atlassian Cloud APIs probed by the exporter.
//!
//! Used by the integration tests and by the `demo` subcommand. It reproduces the
//! behaviours the classification in SPEC §4 relies on (see `ATLASSIAN.md`):
//!
//! * Jira `GET {prefix}/rest/api/3/myself` never allows anonymous access: every
//!   failed login is a `401` with `X-Seraph-LoginReason: AUTHENTICATED_FAILED`.
//! * Jira `GET {prefix}/rest/api/3/project/search` silently falls back to an
//!   anonymous session (`200`, empty list, `AUTHENTICATED_FAILED`, `_lout` cookie)
//!   for failed logins on sites with anonymous access.
//! * Confluence `GET {prefix}/wiki/rest/api/user/current` answers
//!   `{"type":"anonymous"}` for failed logins on open sites.
//! * Bitbucket `GET {prefix}/2.0/user` and admin `GET {prefix}/admin/v1/orgs`
//!   have no anonymous fallback.
//!
//! * The Admin API's org inventory, `GET {prefix}/admin/api-access/v1/orgs/{orgId}/api-tokens`
//!   and `…/api-keys` (Bearer admin key): cursor pagination (`links.next` is a relative
//!   URL with `cursor=`), `pageSize` (default 20, at most 100), `X-RateLimit-*` headers,
//!   and the owner's `user.name`/`user.email` in every entry, as the real API answers.
//!   Tests seed organizations and inject a 429 or a failing page (see [`OrgToken`]).
//!
//! A *site* is a path prefix in front of the API path (`""` for none), e.g.
//! `/closed-site` or `/ex/jira/{cloudId}`. Sites are open to anonymous access
//! unless passed to [`Simulator::close_site`].
//!
//! Secrets are only kept in memory for lookup and counting; the simulator never
//! logs or prints them (its `Debug` output shows counts only).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    HeaderName, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER,
    SET_COOKIE, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const X_AACCOUNTID: HeaderName = HeaderName::from_static("x-aaccountid");
const X_SERAPH_LOGINREASON: HeaderName = HeaderName::from_static("x-seraph-loginreason");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT_REASON: HeaderName = HeaderName::from_static("ratelimit-reason");

const JIRA_MYSELF: &str = "/rest/api/3/myself";
const JIRA_PROJECT_SEARCH: &str = "/rest/api/3/project/search";
const CONFLUENCE_CURRENT: &str = "/wiki/rest/api/user/current";
const BITBUCKET_USER: &str = "/2.0/user";
const ADMIN_ORGS: &str = "/admin/v1/orgs";
const REDIRECT_TARGET: &str = "/redirect-target";
const STATS_PATH: &str = "/__sim/stats";

const JIRA_REALM: &str = "Basic realm=\"protected-by-atlassian\"";
const BITBUCKET_REALM: &str = "Basic realm=\"Bitbucket.org HTTP\"";
const HUGE_BODY_PREFIX: &[u8] = br#"{"accountId":"x","pad":""#;
const HUGE_BODY_CHUNK: usize = 64 * 1024;

/// One simulated credential (the secret itself is the key it is registered under).
#[derive(Clone, Debug)]
pub struct Credential {
    pub account_id: String,
    pub email: String,
    pub username: String,
    pub behaviour: Behaviour,
}

/// How the simulated Atlassian side treats requests carrying a secret.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Authenticates normally.
    Valid,
    /// Expired or revoked: rejected where anonymous access is impossible, served
    /// as anonymous where it is.
    Dead,
    /// Every request: 429, `Retry-After` header verbatim when `Some`.
    RateLimited { retry_after: Option<String> },
    /// Every request answers this status with a small JSON error body.
    ServerError { status: u16 },
    /// Sleeps `delay`, then behaves as `Valid`.
    Slow { delay: Duration },
    /// 200 with a `text/html` body.
    NonJson,
    /// 302 with that `Location`.
    Redirect { location: String },
    /// 200 `application/json` with a body of exactly `bytes` bytes (a JSON
    /// prefix that never closes), streamed without `Content-Length`.
    HugeBody { bytes: usize },
    /// 200 JSON without the provider's account id field(s).
    NoAccountId,
}

/// A user API token in a simulated organization. The owner's name and e-mail are served
/// like the real API does, so tests can prove the exporter drops them.
#[derive(Clone, Debug)]
pub struct OrgToken {
    pub id: String,
    pub label: String,
    /// `ALLOWED` or `BLOCKED`.
    pub status: String,
    pub account_id: String,
    pub user_name: String,
    pub user_email: String,
    /// Unix seconds.
    pub created_at: i64,
    /// `None` is served as `"expiresAt": null`.
    pub expires_at: Option<i64>,
    pub last_active_at: Option<i64>,
}

/// An admin API key in a simulated organization.
#[derive(Clone, Debug)]
pub struct OrgApiKey {
    pub id: String,
    pub label: String,
    pub created_by_name: String,
    pub created_by_email: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// Rate-limit budget served in `X-RateLimit-*`; requests over it get a 429.
const DEFAULT_ORG_BUDGET: (u64, Duration) = (1000, Duration::from_secs(60));
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;
const ORG_API_PREFIX: &str = "/admin/api-access/v1/orgs/";

struct SimOrg {
    tokens: Vec<OrgToken>,
    api_keys: Vec<OrgApiKey>,
    /// `api-tokens` pages (1-based) that answer 500.
    failing_pages: HashSet<usize>,
    /// Inventory requests (1-based, counted per organization) that answer 429 once, with
    /// this `Retry-After` (verbatim) when `Some`.
    rate_limited: HashMap<u64, Option<String>>,
    budget: (u64, Duration),
    window_started: Instant,
    window_used: u64,
    /// Arrival offsets (since `Simulator::new`) of inventory requests.
    requests: Vec<Duration>,
    throttled: u64,
}

impl SimOrg {
    fn new() -> Self {
        Self {
            tokens: Vec::new(),
            api_keys: Vec::new(),
            failing_pages: HashSet::new(),
            rate_limited: HashMap::new(),
            budget: DEFAULT_ORG_BUDGET,
            window_started: Instant::now(),
            window_used: 0,
            requests: Vec::new(),
            throttled: 0,
        }
    }
}

/// Which inventory list a request asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum OrgList {
    ApiTokens,
    ApiKeys,
}

/// Counters served as JSON on `GET /__sim/stats`.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub requests_total: u64,
    pub max_in_flight: u64,
    pub redirect_target_hits: u64,
    pub redirect_target_auth_headers: u64,
}

#[derive(Default)]
struct Counters {
    requests_total: u64,
    in_flight: u64,
    max_in_flight: u64,
    redirect_target_hits: u64,
    redirect_target_auth_headers: u64,
    /// Arrival offsets (since `Simulator::new`) of requests, keyed by secret.
    per_secret: HashMap<String, Vec<Duration>>,
}

struct Inner {
    started: Instant,
    credentials: Mutex<HashMap<String, Credential>>,
    closed_sites: Mutex<HashSet<String>>,
    counters: Mutex<Counters>,
    orgs: Mutex<HashMap<String, SimOrg>>,
}

/// The simulator state. Cheap to clone (an `Arc` inside); all clones share state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

impl fmt::Debug for Simulator {
    // Deliberately shows no secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = lock(&self.inner.credentials).len();
        let closed_sites = lock(&self.inner.closed_sites).len();
        let orgs = lock(&self.inner.orgs).len();
        f.debug_struct("Simulator")
            .field("credentials", &credentials)
            .field("closed_sites", &closed_sites)
            .field("orgs", &orgs)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Default for Simulator {
    fn default() -> Self {
        Self::new()
    }
}

/// A simulator being served on a local TCP port.
///
/// Dropping it does not stop the server (it keeps serving until the tokio
/// runtime shuts down); call [`RunningSimulator::shutdown`] to stop it.
pub struct RunningSimulator {
    pub addr: SocketAddr,
    pub sim: Simulator,
    shutdown_tx: oneshot::Sender<()>,
    _task: JoinHandle<()>,
}

impl fmt::Debug for RunningSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningSimulator")
            .field("addr", &self.addr)
            .field("sim", &self.sim)
            .finish()
    }
}

impl RunningSimulator {
    /// `http://127.0.0.1:PORT` (an unspecified bind address is reported as loopback).
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Stops accepting connections and lets open connections finish gracefully.
    /// Returns at once.
    pub fn shutdown(self) {
        // The receiver is gone only if the server already stopped.
        let _ = self.shutdown_tx.send(());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Normalises a site prefix: `""`, or `/a/b` without trailing slash. A full URL
/// (`http://host:port/a/b`) is reduced to its path.
fn normalize_prefix(prefix: &str) -> String {
    let mut p = prefix.trim();
    if let Some(idx) = p.find("://") {
        let after = &p[idx + 3..];
        p = match after.find('/') {
            Some(slash) => &after[slash..],
            None => "",
        };
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        String::new()
    } else if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

impl Simulator {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                started: Instant::now(),
                credentials: Mutex::new(HashMap::new()),
                closed_sites: Mutex::new(HashSet::new()),
                counters: Mutex::new(Counters::default()),
                orgs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Registers (or replaces) a credential; `secret` is the API token or admin key.
    pub fn add_credential(&self, secret: &str, cred: Credential) {
        lock(&self.inner.credentials).insert(secret.to_string(), cred);
    }

    /// Turns anonymous access off for the site with that path prefix
    /// (`""` or `"/"` for the root site; a trailing slash is ignored).
    pub fn close_site(&self, prefix: &str) {
        lock(&self.inner.closed_sites).insert(normalize_prefix(prefix));
    }

    pub fn stats(&self) -> Stats {
        let c = lock(&self.inner.counters);
        Stats {
            requests_total: c.requests_total,
            max_in_flight: c.max_in_flight,
            redirect_target_hits: c.redirect_target_hits,
            redirect_target_auth_headers: c.redirect_target_auth_headers,
        }
    }

    /// Number of requests that carried this secret (basic password or bearer token).
    pub fn requests_for(&self, secret: &str) -> u64 {
        lock(&self.inner.counters)
            .per_secret
            .get(secret)
            .map_or(0, |v| v.len() as u64)
    }

    /// Arrival times (since `Simulator::new`) of the requests that carried this
    /// secret, in arrival order.
    pub fn request_offsets_for(&self, secret: &str) -> Vec<Duration> {
        lock(&self.inner.counters)
            .per_secret
            .get(secret)
            .cloned()
            .unwrap_or_default()
    }

    /// The simulator as an axum router (everything goes through one fallback
    /// handler that routes by path suffix).
    pub fn router(&self) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Binds `addr` (port 0 allowed), spawns the server on the current tokio
    /// runtime and returns at once.
    pub async fn start(self, addr: SocketAddr) -> std::io::Result<RunningSimulator> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let signal = async move {
                // A dropped sender (RunningSimulator dropped) means "detach", not "stop".
                if shutdown_rx.await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            // Errors cannot be reported anywhere useful; the server just stops.
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(signal)
                .await;
        });
        Ok(RunningSimulator {
            addr,
            sim: self,
            shutdown_tx,
            _task: task,
        })
    }

    fn lookup(&self, secret: &str) -> Option<Credential> {
        lock(&self.inner.credentials).get(secret).cloned()
    }

    fn with_org<R>(&self, org_id: &str, f: impl FnOnce(&mut SimOrg) -> R) -> R {
        let mut orgs = lock(&self.inner.orgs);
        f(orgs.entry(org_id.to_string()).or_insert_with(SimOrg::new))
    }

    /// Adds user API tokens to an organization (created on first use). An admin key
    /// registered with [`Simulator::add_credential`] (behaviour `Valid`) may list them.
    pub fn add_org_tokens(&self, org_id: &str, tokens: Vec<OrgToken>) {
        self.with_org(org_id, |o| o.tokens.extend(tokens));
    }

    /// Adds admin API keys to an organization (created on first use).
    pub fn add_org_api_keys(&self, org_id: &str, keys: Vec<OrgApiKey>) {
        self.with_org(org_id, |o| o.api_keys.extend(keys));
    }

    /// Deletes a user API token (as an admin revoking it would); true if it existed.
    pub fn remove_org_token(&self, org_id: &str, token_id: &str) -> bool {
        self.with_org(org_id, |o| {
            let before = o.tokens.len();
            o.tokens.retain(|t| t.id != token_id);
            o.tokens.len() != before
        })
    }

    /// Page `page` (1-based) of the organization's `api-tokens` list answers 500 until
    /// [`Simulator::clear_org_failures`].
    pub fn fail_org_page(&self, org_id: &str, page: usize) {
        self.with_org(org_id, |o| {
            o.failing_pages.insert(page);
        });
    }

    pub fn clear_org_failures(&self, org_id: &str) {
        self.with_org(org_id, |o| {
            o.failing_pages.clear();
            o.rate_limited.clear();
        });
    }

    /// The organization's `nth` inventory request (1-based, both lists counted together
    /// since the organization was created) answers 429 once, with `Retry-After` verbatim
    /// when given (`X-RateLimit-*` headers are always sent).
    pub fn rate_limit_org_request(&self, org_id: &str, nth: u64, retry_after: Option<&str>) {
        self.with_org(org_id, |o| {
            o.rate_limited.insert(nth, retry_after.map(str::to_string));
        });
    }

    /// The organization's rate-limit budget: `limit` requests per `window`. Responses carry
    /// it in `X-RateLimit-Limit/Remaining/Reset`; requests over it get a 429 without
    /// `Retry-After` (as the Admin APIs answer).
    pub fn set_org_rate_limit(&self, org_id: &str, limit: u64, window: Duration) {
        self.with_org(org_id, |o| {
            o.budget = (limit, window);
            o.window_started = Instant::now();
            o.window_used = 0;
        });
    }

    /// Inventory requests the organization received (any status, both lists).
    pub fn org_requests(&self, org_id: &str) -> u64 {
        lock(&self.inner.orgs)
            .get(org_id)
            .map_or(0, |o| o.requests.len() as u64)
    }

    /// Arrival times (since `Simulator::new`) of the organization's inventory requests.
    pub fn org_request_offsets(&self, org_id: &str) -> Vec<Duration> {
        lock(&self.inner.orgs)
            .get(org_id)
            .map(|o| o.requests.clone())
            .unwrap_or_default()
    }

    /// 429s the organization answered (injected or over budget).
    pub fn org_throttled(&self, org_id: &str) -> u64 {
        lock(&self.inner.orgs)
            .get(org_id)
            .map_or(0, |o| o.throttled)
    }

    fn is_closed(&self, prefix: &str) -> bool {
        lock(&self.inner.closed_sites).contains(&normalize_prefix(prefix))
    }

    /// Records an arriving request and returns the guard that marks it finished.
    fn enter(&self, secret: Option<&str>) -> InFlightGuard {
        let offset = self.inner.started.elapsed();
        let mut c = lock(&self.inner.counters);
        c.requests_total += 1;
        c.in_flight += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
        if let Some(secret) = secret {
            c.per_secret
                .entry(secret.to_string())
                .or_default()
                .push(offset);
        }
        InFlightGuard {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// Decrements the in-flight counter when the request finishes or is cancelled.
struct InFlightGuard {
    inner: Arc<Inner>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.inner.counters);
        c.in_flight = c.in_flight.saturating_sub(1);
    }
}

// ---------------------------------------------------------------------------
// Request parsing
// ---------------------------------------------------------------------------

enum AuthHeader {
    None,
    Basic {
        user: String,
        secret: String,
    },
    Bearer {
        secret: String,
    },
    /// Present but unparseable (unknown scheme, bad base64, no colon, ...).
    Malformed,
}

impl AuthHeader {
    fn secret(&self) -> Option<&str> {
        match self {
            AuthHeader::Basic { secret, .. } | AuthHeader::Bearer { secret } => Some(secret),
            AuthHeader::None | AuthHeader::Malformed => None,
        }
    }
}

fn parse_auth(headers: &HeaderMap) -> AuthHeader {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return AuthHeader::None;
    };
    let Ok(value) = value.to_str() else {
        return AuthHeader::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r.trim()),
        None => return AuthHeader::Malformed,
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest));
        let Ok(decoded) = decoded else {
            return AuthHeader::Malformed;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return AuthHeader::Malformed;
        };
        match decoded.split_once(':') {
            Some((user, secret)) => AuthHeader::Basic {
                user: user.to_string(),
                secret: secret.to_string(),
            },
            None => AuthHeader::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        AuthHeader::Bearer {
            secret: rest.to_string(),
        }
    } else {
        AuthHeader::Malformed
    }
}

/// Result of checking basic-auth credentials against the simulated site.
enum Login {
    Authenticated(Credential),
    /// Known secret with the wrong user, or a Dead secret: Atlassian silently
    /// treats these as anonymous where anonymous access is possible.
    Failed,
    /// Unknown secret, wrong scheme or malformed header: rejected everywhere.
    Mistyped,
    /// No `Authorization` header.
    Anonymous,
}

fn basic_login(auth: &AuthHeader, cred: Option<&Credential>, allow_username: bool) -> Login {
    match auth {
        AuthHeader::None => Login::Anonymous,
        AuthHeader::Malformed | AuthHeader::Bearer { .. } => Login::Mistyped,
        AuthHeader::Basic { user, .. } => match cred {
            None => Login::Mistyped,
            Some(cred) => {
                if matches!(cred.behaviour, Behaviour::Dead) {
                    return Login::Failed;
                }
                let user_ok = user.eq_ignore_ascii_case(&cred.email)
                    || (allow_username
                        && !cred.username.is_empty()
                        && user.eq_ignore_ascii_case(&cred.username));
                if user_ok {
                    Login::Authenticated(cred.clone())
                } else {
                    Login::Failed
                }
            }
        },
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    JiraMyself,
    JiraProjectSearch,
    ConfluenceCurrent,
    BitbucketUser,
    AdminOrgs,
}

/// Splits a path into (site prefix, endpoint) by matching how it ends.
fn route(path: &str) -> Option<(&str, Endpoint)> {
    // Longest / most specific suffixes first.
    const TABLE: [(&str, Endpoint); 5] = [
        (CONFLUENCE_CURRENT, Endpoint::ConfluenceCurrent),
        (JIRA_PROJECT_SEARCH, Endpoint::JiraProjectSearch),
        (JIRA_MYSELF, Endpoint::JiraMyself),
        (ADMIN_ORGS, Endpoint::AdminOrgs),
        (BITBUCKET_USER, Endpoint::BitbucketUser),
    ];
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    TABLE
        .iter()
        .find_map(|(suffix, ep)| path.strip_suffix(suffix).map(|prefix| (prefix, *ep)))
}

fn base_url_from(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    format!("http://{host}")
}

// ---------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------

async fn handle(State(sim): State<Simulator>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let headers = req.headers().clone();
    drop(req);

    if path == STATS_PATH {
        // Not counted, so that polling the stats does not change them.
        return Json(sim.stats()).into_response();
    }

    let auth = parse_auth(&headers);
    let _guard = sim.enter(auth.secret());

    if path == REDIRECT_TARGET || path.starts_with("/redirect-target/") {
        return redirect_target(&sim, &headers);
    }

    let cred = auth.secret().and_then(|s| sim.lookup(s));
    let routed = route(&path);

    // Behaviours that override normal handling for every request carrying the secret.
    if let Some(cred) = &cred {
        match &cred.behaviour {
            Behaviour::Valid | Behaviour::Dead => {}
            Behaviour::Slow { delay } => tokio::time::sleep(*delay).await,
            Behaviour::RateLimited { retry_after } => return rate_limited(retry_after.as_deref()),
            Behaviour::ServerError { status } => return server_error(*status),
            Behaviour::NonJson => return non_json(),
            Behaviour::Redirect { location } => return redirect(location),
            Behaviour::HugeBody { bytes } => return huge_body(*bytes),
            Behaviour::NoAccountId => {
                if let Some((prefix, ep)) = routed {
                    let base = format!("{}{prefix}", base_url_from(&headers));
                    return no_account_id(ep, &base, cred);
                }
            }
        }
    }

    if let Some((prefix, org_id, list)) = route_org_inventory(&path) {
        let authorized = matches!(auth, AuthHeader::Bearer { .. })
            && cred
                .as_ref()
                .is_some_and(|c| matches!(c.behaviour, Behaviour::Valid | Behaviour::Slow { .. }));
        return org_inventory(&sim, prefix, org_id, list, query.as_deref(), authorized);
    }
    let Some((prefix, endpoint)) = routed else {
        return not_found();
    };
    if method != Method::GET && method != Method::HEAD {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"errorMessages": ["Method not allowed"]}),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return resp;
    }

    let base = format!("{}{prefix}", base_url_from(&headers));
    let open = !sim.is_closed(prefix);
    match endpoint {
        Endpoint::JiraMyself => jira_myself(basic_login(&auth, cred.as_ref(), false), &base),
        Endpoint::JiraProjectSearch => {
            jira_project_search(basic_login(&auth, cred.as_ref(), false), &base, open)
        }
        Endpoint::ConfluenceCurrent => {
            confluence_current(basic_login(&auth, cred.as_ref(), false), &base, open)
        }
        Endpoint::BitbucketUser => bitbucket_user(basic_login(&auth, cred.as_ref(), true), &base),
        Endpoint::AdminOrgs => admin_orgs(&auth, cred.as_ref(), &base),
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    let mut resp = Json(body).into_response();
    *resp.status_mut() = status;
    resp
}

fn insert_header(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errorMessages": ["Not found (simulator)"], "errors": {}, "status": 404}),
    )
}

fn redirect_target(sim: &Simulator, headers: &HeaderMap) -> Response {
    {
        let mut c = lock(&sim.inner.counters);
        c.redirect_target_hits += 1;
        if headers.contains_key(AUTHORIZATION) {
            c.redirect_target_auth_headers += 1;
        }
    }
    // Looks valid to every provider's check: a client that follows redirects
    // would wrongly report the credential as valid.
    let id = "redirect-target-account";
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "self": format!("{}/redirect-target", base_url_from(headers)),
            "type": "known",
            "accountId": id,
            "account_id": id,
            "uuid": "{00000000-0000-4000-8000-000000000000}",
            "accountType": "atlassian",
            "emailAddress": "redirect-target@example.invalid",
            "displayName": "Redirect Target",
            "active": true,
            "data": [],
        }),
    );
    insert_header(&mut resp, X_AACCOUNTID, id);
    insert_header(&mut resp, X_SERAPH_LOGINREASON, "OK");
    resp
}

// ---------------------------------------------------------------------------
// Behaviour overrides
// ---------------------------------------------------------------------------

/// `yyyy-MM-ddTHH:mmZ` for a Unix timestamp (UTC).
fn iso_minute(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (hour, minute) = (rem / 3600, (rem % 3600) / 60);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}Z")
}

fn rate_limited(retry_after: Option<&str>) -> Response {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // At least one minute ahead, rounded up to the next whole minute.
    let reset = (now + 60) / 60 * 60 + 60;
    let mut resp = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        json!({"errorMessages": ["Rate limit exceeded."], "errors": {}, "status": 429}),
    );
    if let Some(ra) = retry_after {
        insert_header(&mut resp, RETRY_AFTER, ra);
    }
    insert_header(&mut resp, X_RATELIMIT_LIMIT, "100");
    insert_header(&mut resp, X_RATELIMIT_REMAINING, "0");
    insert_header(&mut resp, X_RATELIMIT_RESET, &iso_minute(reset));
    insert_header(&mut resp, RATELIMIT_REASON, "jira-burst-based");
    resp
}

fn server_error(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, json!({"errorMessages": ["Internal server error"]}))
}

fn non_json() -> Response {
    let mut resp = (
        StatusCode::OK,
        "<html><head><title>Atlassian</title></head><body>Simulated non-JSON page</body></html>",
    )
        .into_response();
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    insert_header(&mut resp, LOCATION, location);
    resp
}

/// Exactly `n` bytes: a JSON prefix that never closes, padded with `a`,
/// streamed in chunks (no `Content-Length`), so a client must cap its reads.
fn huge_body(n: usize) -> Response {
    let head_len = n.min(HUGE_BODY_PREFIX.len());
    let head = Bytes::from_static(&HUGE_BODY_PREFIX[..head_len]);
    let pad = Bytes::from(vec![b'a'; HUGE_BODY_CHUNK]);
    let mut remaining = n - head_len;
    let chunks = std::iter::once(head)
        .chain(std::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            let take = remaining.min(HUGE_BODY_CHUNK);
            remaining -= take;
            Some(pad.slice(..take))
        }))
        .filter(|b| !b.is_empty())
        .map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn no_account_id(ep: Endpoint, base: &str, cred: &Credential) -> Response {
    match ep {
        Endpoint::JiraMyself => {
            let mut resp = json_response(
                StatusCode::OK,
                json!({
                    "self": format!("{base}/rest/api/3/myself"),
                    "accountType": "atlassian",
                    "emailAddress": cred.email,
                    "displayName": display_name(cred),
                    "active": true,
                    "timeZone": "UTC",
                    "locale": "en_US",
                }),
            );
            insert_header(&mut resp, X_SERAPH_LOGINREASON, "OK");
            resp
        }
        Endpoint::JiraProjectSearch => {
            let mut resp = json_response(StatusCode::OK, project_page(base, true));
            insert_header(&mut resp, X_SERAPH_LOGINREASON, "OK");
            resp
        }
        Endpoint::ConfluenceCurrent => json_response(
            StatusCode::OK,
            json!({
                "type": "known",
                "accountType": "atlassian",
                "email": cred.email,
                "publicName": display_name(cred),
                "displayName": display_name(cred),
            }),
        ),
        Endpoint::BitbucketUser => json_response(
            StatusCode::OK,
            json!({
                "type": "user",
                "display_name": display_name(cred),
                "username": cred.username,
                "account_status": "active",
            }),
        ),
        Endpoint::AdminOrgs => json_response(
            StatusCode::OK,
            json!({"links": {"self": format!("{base}/admin/v1/orgs")}}),
        ),
    }
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

fn display_name(cred: &Credential) -> String {
    if cred.username.is_empty() {
        cred.email.clone()
    } else {
        cred.username.clone()
    }
}

/// Deterministic Bitbucket-style `{uuid}` derived from the account id (FNV-1a).
fn bitbucket_uuid(account_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{{{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}}}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

fn jira_unauthorized() -> Response {
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        json!({"message": "Client must be authenticated to access this resource.", "status-code": 401}),
    );
    insert_header(&mut resp, X_SERAPH_LOGINREASON, "AUTHENTICATED_FAILED");
    insert_header(&mut resp, WWW_AUTHENTICATE, JIRA_REALM);
    resp
}

fn jira_authenticated_headers(resp: &mut Response, cred: &Credential) {
    insert_header(resp, X_AACCOUNTID, &cred.account_id);
    insert_header(resp, X_SERAPH_LOGINREASON, "OK");
    insert_header(resp, SET_COOKIE, "atlassian.xsrf.token=SIMXSRF_lin; Path=/");
}

fn jira_myself(login: Login, base: &str) -> Response {
    match login {
        Login::Authenticated(cred) => {
            let mut resp = json_response(
                StatusCode::OK,
                json!({
                    "self": format!("{base}/rest/api/3/user?accountId={}", cred.account_id),
                    "accountId": cred.account_id,
                    "accountType": "atlassian",
                    "emailAddress": cred.email,
                    "displayName": display_name(&cred),
                    "active": true,
                    "timeZone": "UTC",
                    "locale": "en_US",
                }),
            );
            jira_authenticated_headers(&mut resp, &cred);
            resp
        }
        Login::Failed | Login::Mistyped | Login::Anonymous => jira_unauthorized(),
    }
}

fn project_page(base: &str, with_projects: bool) -> Value {
    let self_url = format!("{base}/rest/api/3/project/search?maxResults=1&startAt=0");
    if with_projects {
        json!({
            "self": self_url,
            "nextPage": format!("{base}/rest/api/3/project/search?maxResults=1&startAt=1"),
            "maxResults": 1,
            "startAt": 0,
            "total": 3,
            "isLast": false,
            "values": [{"id": "10000", "key": "OPS", "name": "Operations"}],
        })
    } else {
        json!({
            "self": self_url,
            "maxResults": 1,
            "startAt": 0,
            "total": 0,
            "isLast": true,
            "values": [],
        })
    }
}

fn jira_project_search(login: Login, base: &str, open: bool) -> Response {
    match login {
        Login::Authenticated(cred) => {
            let mut resp = json_response(StatusCode::OK, project_page(base, true));
            jira_authenticated_headers(&mut resp, &cred);
            resp
        }
        Login::Failed if open => {
            let mut resp = json_response(StatusCode::OK, project_page(base, false));
            insert_header(&mut resp, X_SERAPH_LOGINREASON, "AUTHENTICATED_FAILED");
            insert_header(
                &mut resp,
                SET_COOKIE,
                "atlassian.xsrf.token=SIMXSRF_lout; Path=/",
            );
            resp
        }
        Login::Anonymous if open => json_response(StatusCode::OK, project_page(base, false)),
        Login::Failed | Login::Anonymous | Login::Mistyped => jira_unauthorized(),
    }
}

fn confluence_current(login: Login, base: &str, open: bool) -> Response {
    match login {
        Login::Authenticated(cred) => json_response(
            StatusCode::OK,
            json!({
                "type": "known",
                "accountId": cred.account_id,
                "accountType": "atlassian",
                "email": cred.email,
                "publicName": display_name(&cred),
                "displayName": display_name(&cred),
                "profilePicture": {
                    "path": "/wiki/aa-avatar/default.png",
                    "width": 48,
                    "height": 48,
                    "isDefault": true,
                },
                "_links": {
                    "self": format!("{base}/wiki/rest/api/user?accountId={}", cred.account_id),
                    "base": format!("{base}/wiki"),
                },
            }),
        ),
        Login::Failed | Login::Anonymous if open => json_response(
            StatusCode::OK,
            json!({
                "type": "anonymous",
                "displayName": "Anonymous",
                "profilePicture": {
                    "path": "/wiki/s/-1/_/images/icons/profilepics/anonymous.svg",
                    "width": 48,
                    "height": 48,
                    "isDefault": true,
                },
                "_links": {"base": format!("{base}/wiki")},
            }),
        ),
        Login::Failed | Login::Anonymous | Login::Mistyped => {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                json!({
                    "statusCode": 401,
                    "data": {"authorized": false, "valid": true, "errors": [], "successful": false},
                    "message": "Unauthorized",
                }),
            );
            insert_header(&mut resp, WWW_AUTHENTICATE, JIRA_REALM);
            resp
        }
    }
}

fn bitbucket_user(login: Login, base: &str) -> Response {
    match login {
        Login::Authenticated(cred) => {
            let uuid = bitbucket_uuid(&cred.account_id);
            json_response(
                StatusCode::OK,
                json!({
                    "type": "user",
                    "uuid": uuid,
                    "account_id": cred.account_id,
                    "display_name": display_name(&cred),
                    "nickname": cred.username,
                    "username": cred.username,
                    "account_status": "active",
                    "created_on": "2020-01-01T00:00:00.000000+00:00",
                    "links": {
                        "self": {"href": format!("{base}/2.0/users/{uuid}")},
                        "avatar": {"href": format!("{base}/account/{}/avatar", cred.username)},
                        "html": {"href": format!("{base}/{uuid}/")},
                    },
                }),
            )
        }
        Login::Failed | Login::Mistyped | Login::Anonymous => {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                json!({
                    "type": "error",
                    "error": {"message": "Token is invalid, expired, or not supported for this endpoint."},
                }),
            );
            insert_header(&mut resp, WWW_AUTHENTICATE, BITBUCKET_REALM);
            resp
        }
    }
}

fn admin_orgs(auth: &AuthHeader, cred: Option<&Credential>, base: &str) -> Response {
    let valid = matches!(auth, AuthHeader::Bearer { .. })
        && cred.is_some_and(|c| matches!(c.behaviour, Behaviour::Valid | Behaviour::Slow { .. }));
    if valid {
        json_response(
            StatusCode::OK,
            json!({
                "data": [{
                    "id": "sim-org-1",
                    "type": "orgs",
                    "attributes": {"name": "Simulated Org"},
                    "links": {"self": format!("{base}/admin/v1/orgs/sim-org-1")},
                }],
                "links": {"self": format!("{base}/admin/v1/orgs")},
            }),
        )
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"code": 401, "message": "Unauthorized"}),
        )
    }
}

// ---------------------------------------------------------------------------
// Organization inventory (Admin API, API Access)
// ---------------------------------------------------------------------------

/// `{prefix}/admin/api-access/v1/orgs/{orgId}/api-tokens|api-keys` -> (prefix, orgId, list).
fn route_org_inventory(path: &str) -> Option<(&str, &str, OrgList)> {
    let at = path.find(ORG_API_PREFIX)?;
    let rest = &path[at + ORG_API_PREFIX.len()..];
    let (org_id, list) = rest.trim_end_matches('/').split_once('/')?;
    let list = match list {
        "api-tokens" => OrgList::ApiTokens,
        "api-keys" => OrgList::ApiKeys,
        _ => return None,
    };
    (!org_id.is_empty()).then_some((&path[..at], org_id, list))
}

fn rfc3339(unix: i64) -> Value {
    chrono::DateTime::from_timestamp(unix, 0).map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    })
}

fn encode_cursor(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("offset:")?
        .parse()
        .ok()
}

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"code": 400, "message": message}),
    )
}

fn org_token_json(t: &OrgToken, org_id: &str) -> Value {
    json!({
        "id": t.id,
        "label": t.label,
        "status": t.status,
        "createdAt": rfc3339(t.created_at),
        "expiresAt": t.expires_at.map_or(Value::Null, rfc3339),
        "lastActiveAt": t.last_active_at.map_or(Value::Null, rfc3339),
        "user": {"id": t.account_id, "orgId": org_id, "name": t.user_name, "email": t.user_email},
        "scopes": [],
    })
}

fn org_key_json(k: &OrgApiKey, org_id: &str) -> Value {
    json!({
        "id": k.id,
        "label": k.label,
        "createdAt": rfc3339(k.created_at),
        "expiresAt": k.expires_at.map_or(Value::Null, rfc3339),
        "lastActiveAt": Value::Null,
        "systemAccountId": format!("system-{}", k.id),
        "resource": "admin",
        "orgId": org_id,
        "createdBy": {"id": format!("creator-{}", k.id), "name": k.created_by_name, "email": k.created_by_email},
        "scopes": [],
        "targetResources": [],
    })
}

fn org_inventory(
    sim: &Simulator,
    prefix: &str,
    org_id: &str,
    list: OrgList,
    query: Option<&str>,
    authorized: bool,
) -> Response {
    if !authorized {
        return json_response(
            StatusCode::UNAUTHORIZED,
            json!({"code": 401, "message": "Unauthorized"}),
        );
    }
    let offset_now = sim.inner.started.elapsed();
    let mut orgs = lock(&sim.inner.orgs);
    let Some(org) = orgs.get_mut(org_id) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({"code": 404, "message": "Organization not found"}),
        );
    };
    org.requests.push(offset_now);
    let nth = org.requests.len() as u64;

    // The budget: X-RateLimit-* on every answer, 429 once it is spent.
    let (limit, window) = org.budget;
    if org.window_started.elapsed() >= window {
        org.window_started = Instant::now();
        org.window_used = 0;
    }
    org.window_used += 1;
    let over_budget = org.window_used > limit;
    let remaining = limit.saturating_sub(org.window_used);
    let reset = SystemTime::now() + window.saturating_sub(org.window_started.elapsed());
    let reset = reset.duration_since(UNIX_EPOCH).map_or(Value::Null, |d| {
        rfc3339(i64::try_from(d.as_secs() + 1).unwrap_or(0))
    });
    let rate_headers = |resp: &mut Response| {
        insert_header(resp, X_RATELIMIT_LIMIT, &limit.to_string());
        insert_header(resp, X_RATELIMIT_REMAINING, &remaining.to_string());
        insert_header(resp, X_RATELIMIT_RESET, reset.as_str().unwrap_or(""));
    };
    let injected = org.rate_limited.remove(&nth);
    if over_budget || injected.is_some() {
        org.throttled += 1;
        let mut resp = json_response(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"code": 429, "message": "Too many requests"}),
        );
        rate_headers(&mut resp);
        if injected.is_some() {
            insert_header(&mut resp, X_RATELIMIT_REMAINING, "0");
        }
        if let Some(Some(ra)) = injected {
            insert_header(&mut resp, RETRY_AFTER, &ra);
        }
        return resp;
    }

    let mut page_size = DEFAULT_PAGE_SIZE;
    let mut offset = 0;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "pageSize" => match v.parse::<usize>() {
                Ok(n) if n >= 1 => page_size = n.min(MAX_PAGE_SIZE),
                _ => return bad_request("pageSize must be a positive number"),
            },
            "cursor" => match decode_cursor(&v) {
                Some(o) => offset = o,
                None => return bad_request("invalid cursor"),
            },
            _ => {}
        }
    }
    let page = offset / page_size + 1;
    if list == OrgList::ApiTokens && org.failing_pages.contains(&page) {
        let mut resp = server_error(500);
        rate_headers(&mut resp);
        return resp;
    }
    let (total, data): (usize, Vec<Value>) = match list {
        OrgList::ApiTokens => (
            org.tokens.len(),
            org.tokens
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|t| org_token_json(t, org_id))
                .collect(),
        ),
        OrgList::ApiKeys => (
            org.api_keys.len(),
            org.api_keys
                .iter()
                .skip(offset)
                .take(page_size)
                .map(|k| org_key_json(k, org_id))
                .collect(),
        ),
    };
    let list_path = format!(
        "{prefix}{ORG_API_PREFIX}{org_id}/{}",
        match list {
            OrgList::ApiTokens => "api-tokens",
            OrgList::ApiKeys => "api-keys",
        }
    );
    let link = |o: usize| {
        format!(
            "{list_path}?cursor={}&pageSize={page_size}",
            encode_cursor(o)
        )
    };
    let next = (offset + page_size < total).then(|| link(offset + page_size));
    let prev = (offset > 0).then(|| link(offset.saturating_sub(page_size)));
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "data": data,
            "links": {"self": link(offset), "next": next, "prev": prev},
        }),
    );
    rate_headers(&mut resp);
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap as RHeaderMap;

    const EMAIL: &str = "alice@example.com";
    const USER: &str = "alice";
    const ACCOUNT: &str = "5b10a2844c20165700ede21g";

    fn cred(behaviour: Behaviour) -> Credential {
        Credential {
            account_id: ACCOUNT.to_string(),
            email: EMAIL.to_string(),
            username: USER.to_string(),
            behaviour,
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    async fn start(sim: &Simulator) -> RunningSimulator {
        sim.clone()
            .start("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap()
    }

    /// A simulator with one credential, served; returns (running, base_url).
    async fn with(secret: &str, behaviour: Behaviour) -> (RunningSimulator, String) {
        let sim = Simulator::new();
        sim.add_credential(secret, cred(behaviour));
        let running = start(&sim).await;
        let base = running.base_url();
        (running, base)
    }

    struct Resp {
        status: u16,
        headers: RHeaderMap,
        body: String,
    }

    impl Resp {
        fn json(&self) -> Value {
            serde_json::from_str(&self.body).unwrap()
        }
        fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        }
    }

    async fn send(req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn basic(url: &str, user: &str, secret: &str) -> Resp {
        send(client().get(url).basic_auth(user, Some(secret))).await
    }

    async fn bearer(url: &str, secret: &str) -> Resp {
        send(client().get(url).bearer_auth(secret)).await
    }

    async fn anon(url: &str) -> Resp {
        send(client().get(url)).await
    }

    fn assert_jira_401(r: &Resp) {
        assert_eq!(r.status, 401, "body: {}", r.body);
        assert_eq!(
            r.header("x-seraph-loginreason").as_deref(),
            Some("AUTHENTICATED_FAILED")
        );
        assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
        assert!(r.header("x-aaccountid").is_none());
        let v = r.json();
        assert_eq!(
            v["message"],
            "Client must be authenticated to access this resource."
        );
        assert_eq!(v["status-code"], 401);
    }

    fn assert_anonymous_project_page(r: &Resp) {
        assert_eq!(r.status, 200);
        assert!(r.header("x-aaccountid").is_none());
        let v = r.json();
        assert_eq!(v["total"], 0);
        assert_eq!(v["isLast"], true);
        assert_eq!(v["values"].as_array().unwrap().len(), 0);
    }

    fn assert_confluence_anonymous(r: &Resp) {
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "anonymous");
        assert_eq!(v["displayName"], "Anonymous");
        assert!(v.get("accountId").is_none());
        assert!(v["profilePicture"].is_object());
    }

    fn assert_confluence_401(r: &Resp) {
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["statusCode"], 401);
        assert_eq!(v["data"]["authorized"], false);
        assert_eq!(v["data"]["successful"], false);
        assert_eq!(v["message"], "Unauthorized");
    }

    fn assert_bitbucket_401(r: &Resp) {
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"Bitbucket.org HTTP\"")
        );
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(
            v["error"]["message"],
            "Token is invalid, expired, or not supported for this endpoint."
        );
    }

    fn assert_admin_401(r: &Resp) {
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["code"], 401);
        assert_eq!(v["message"], "Unauthorized");
        assert!(v.get("data").is_none());
    }

    // --- Jira /myself -----------------------------------------------------

    #[tokio::test]
    async fn jira_myself_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-aaccountid").as_deref(), Some(ACCOUNT));
        assert_eq!(r.header("x-seraph-loginreason").as_deref(), Some("OK"));
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let v = r.json();
        assert_eq!(v["accountId"], ACCOUNT);
        assert_eq!(v["emailAddress"], EMAIL);
        assert_eq!(v["accountType"], "atlassian");
        assert_eq!(v["active"], true);
        assert!(v["self"].as_str().unwrap().starts_with(&base));
    }

    #[tokio::test]
    async fn jira_myself_email_is_case_insensitive() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/myself"),
            "ALICE@Example.COM",
            "tok",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["accountId"], ACCOUNT);
    }

    #[tokio::test]
    async fn jira_myself_wrong_email_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/myself"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_username_is_not_accepted() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), USER, "tok").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_dead_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_mistyped_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok-typo").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_no_auth_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/rest/api/3/myself")).await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_bearer_or_malformed_auth_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let url = format!("{base}/rest/api/3/myself");
        assert_jira_401(&bearer(&url, "tok").await);
        let r = send(
            client()
                .get(&url)
                .header("authorization", "Basic !!!not-base64"),
        )
        .await;
        assert_jira_401(&r);
    }

    // --- Jira /project/search ----------------------------------------------

    #[tokio::test]
    async fn project_search_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search?maxResults=1"),
            EMAIL,
            "tok",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-aaccountid").as_deref(), Some(ACCOUNT));
        assert_eq!(r.header("x-seraph-loginreason").as_deref(), Some("OK"));
        let v = r.json();
        assert_eq!(v["total"], 3);
        assert_eq!(v["isLast"], false);
        assert_eq!(v["values"][0]["key"], "OPS");
    }

    #[tokio::test]
    async fn project_search_dead_on_open_site_falls_back_to_anonymous() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search?maxResults=1"),
            EMAIL,
            "tok",
        )
        .await;
        assert_anonymous_project_page(&r);
        assert_eq!(
            r.header("x-seraph-loginreason").as_deref(),
            Some("AUTHENTICATED_FAILED")
        );
        assert!(r.header("set-cookie").unwrap().contains("_lout"));
    }

    #[tokio::test]
    async fn project_search_wrong_email_on_open_site_falls_back_to_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_anonymous_project_page(&r);
        assert_eq!(
            r.header("x-seraph-loginreason").as_deref(),
            Some("AUTHENTICATED_FAILED")
        );
    }

    #[tokio::test]
    async fn project_search_no_auth_on_open_site_is_anonymous_without_seraph() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/rest/api/3/project/search")).await;
        assert_anonymous_project_page(&r);
        assert!(r.header("x-seraph-loginreason").is_none());
    }

    #[tokio::test]
    async fn project_search_dead_on_closed_site_is_401() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Dead));
        sim.close_site("");
        let running = start(&sim).await;
        let url = format!("{}/rest/api/3/project/search", running.base_url());
        assert_jira_401(&basic(&url, EMAIL, "tok").await);
        // No auth on a closed site is rejected too.
        assert_jira_401(&anon(&url).await);
    }

    #[tokio::test]
    async fn project_search_mistyped_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/project/search"), EMAIL, "nope").await;
        assert_jira_401(&r);
    }

    // --- Sites ----------------------------------------------------------------

    #[tokio::test]
    async fn site_prefixes_route_by_suffix_and_close_independently() {
        let sim = Simulator::new();
        sim.add_credential("dead", cred(Behaviour::Dead));
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.close_site("/closed-site/"); // trailing slash ignored
        let running = start(&sim).await;
        let base = running.base_url();

        let closed = basic(
            &format!("{base}/closed-site/rest/api/3/project/search"),
            EMAIL,
            "dead",
        )
        .await;
        assert_jira_401(&closed);
        let open = basic(
            &format!("{base}/open-site/rest/api/3/project/search"),
            EMAIL,
            "dead",
        )
        .await;
        assert_anonymous_project_page(&open);
        let root = basic(&format!("{base}/rest/api/3/project/search"), EMAIL, "dead").await;
        assert_anonymous_project_page(&root);

        // Scoped-token gateway prefix works like any other prefix.
        let gw = basic(
            &format!("{base}/ex/jira/11111111-2222-3333-4444-555555555555/rest/api/3/myself"),
            EMAIL,
            "tok",
        )
        .await;
        assert_eq!(gw.status, 200);
        assert!(gw.json()["self"]
            .as_str()
            .unwrap()
            .contains("/ex/jira/11111111-2222-3333-4444-555555555555/rest/api/3/user"));

        // Confluence on the closed prefix.
        let conf = basic(
            &format!("{base}/closed-site/wiki/rest/api/user/current"),
            EMAIL,
            "dead",
        )
        .await;
        assert_confluence_401(&conf);
    }

    #[test]
    fn prefix_normalisation() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix("closed"), "/closed");
        assert_eq!(normalize_prefix("/a/b/"), "/a/b");
        assert_eq!(normalize_prefix("http://127.0.0.1:9/a/b"), "/a/b");
        assert_eq!(normalize_prefix("http://127.0.0.1:9"), "");
        assert_eq!(
            route("/x/rest/api/3/myself"),
            Some(("/x", Endpoint::JiraMyself))
        );
        assert_eq!(
            route("/wiki/rest/api/user/current"),
            Some(("", Endpoint::ConfluenceCurrent))
        );
        assert_eq!(route("/2.0/user/"), Some(("", Endpoint::BitbucketUser)));
        assert_eq!(route("/rest/api/3/myselfish"), None);
    }

    #[tokio::test]
    async fn unknown_path_is_404_and_wrong_method_is_405() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/nothing"), EMAIL, "tok").await;
        assert_eq!(r.status, 404);
        let r = send(
            client()
                .post(format!("{base}/rest/api/3/myself"))
                .basic_auth(EMAIL, Some("tok")),
        )
        .await;
        assert_eq!(r.status, 405);
    }

    // --- Confluence --------------------------------------------------------------

    #[tokio::test]
    async fn confluence_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "known");
        assert_eq!(v["accountId"], ACCOUNT);
        assert_eq!(v["email"], EMAIL);
        assert_eq!(v["accountType"], "atlassian");
    }

    #[tokio::test]
    async fn confluence_dead_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_wrong_email_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/wiki/rest/api/user/current"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_no_auth_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/wiki/rest/api/user/current")).await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_failed_login_on_closed_site_is_401() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.close_site("/wiki-closed");
        let running = start(&sim).await;
        let url = format!(
            "{}/wiki-closed/wiki/rest/api/user/current",
            running.base_url()
        );
        assert_confluence_401(&basic(&url, "bob@example.com", "tok").await);
        assert_confluence_401(&anon(&url).await);
        // Correct credentials still work on a closed site.
        let ok = basic(&url, EMAIL, "tok").await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["accountId"], ACCOUNT);
    }

    #[tokio::test]
    async fn confluence_mistyped_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "typo").await;
        assert_confluence_401(&r);
    }

    // --- Bitbucket ---------------------------------------------------------------

    #[tokio::test]
    async fn bitbucket_valid_with_email_and_with_username() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let url = format!("{base}/2.0/user");
        for user in [EMAIL, USER] {
            let r = basic(&url, user, "tok").await;
            assert_eq!(r.status, 200, "user {user}");
            let v = r.json();
            assert_eq!(v["type"], "user");
            assert_eq!(v["account_id"], ACCOUNT);
            assert_eq!(v["username"], USER);
            assert_eq!(v["account_status"], "active");
            let uuid = v["uuid"].as_str().unwrap();
            assert!(uuid.starts_with('{') && uuid.ends_with('}') && uuid.len() == 38);
            assert!(v["links"]["self"]["href"].is_string());
        }
    }

    #[tokio::test]
    async fn bitbucket_failures_are_401_without_anonymous_fallback() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.add_credential("dead", cred(Behaviour::Dead));
        let running = start(&sim).await;
        let url = format!("{}/2.0/user", running.base_url());
        assert_bitbucket_401(&basic(&url, "someone-else", "tok").await);
        assert_bitbucket_401(&basic(&url, EMAIL, "dead").await);
        assert_bitbucket_401(&basic(&url, EMAIL, "typo").await);
        assert_bitbucket_401(&anon(&url).await);
    }

    // --- Admin ---------------------------------------------------------------------

    #[tokio::test]
    async fn admin_valid_key() {
        let (_r, base) = with("adminkey", Behaviour::Valid).await;
        let r = bearer(&format!("{base}/admin/v1/orgs"), "adminkey").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["data"][0]["id"], "sim-org-1");
        assert_eq!(v["data"][0]["type"], "orgs");
        assert_eq!(v["data"][0]["attributes"]["name"], "Simulated Org");
        assert!(v["links"]["self"].is_string());
    }

    #[tokio::test]
    async fn org_inventory_pages_with_relative_cursor_links() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_credential("deadkey", cred(Behaviour::Dead));
        let token = |i: usize| OrgToken {
            id: format!("t{i}"),
            label: format!("l{i}"),
            status: "ALLOWED".into(),
            account_id: format!("acc{i}"),
            user_name: "Alice Example".into(),
            user_email: EMAIL.into(),
            created_at: 0,
            expires_at: (i != 0).then_some(86_400),
            last_active_at: None,
        };
        sim.add_org_tokens("o1", (0..130).map(token).collect());
        let running = start(&sim).await;
        let base = running.base_url();
        let list = format!("{base}/admin/api-access/v1/orgs/o1/api-tokens");

        let r = bearer(&format!("{list}?pageSize=500"), "adminkey").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("1000"));
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("999"));
        assert!(r.header("x-ratelimit-reset").unwrap().ends_with('Z'));
        let v = r.json();
        assert_eq!(
            v["data"].as_array().unwrap().len(),
            100,
            "pageSize is capped"
        );
        assert_eq!(v["data"][0]["user"]["email"], EMAIL);
        assert_eq!(v["data"][0]["user"]["name"], "Alice Example");
        assert_eq!(v["data"][0]["expiresAt"], Value::Null);
        assert_eq!(v["data"][1]["expiresAt"], "1970-01-02T00:00:00.000Z");
        let next = v["links"]["next"].as_str().unwrap();
        assert!(
            next.starts_with("/admin/api-access/v1/orgs/o1/api-tokens?cursor="),
            "{next}"
        );
        let v = bearer(&format!("{base}{next}"), "adminkey").await.json();
        assert_eq!(v["data"].as_array().unwrap().len(), 30);
        assert_eq!(v["data"][0]["id"], "t100");
        assert_eq!(v["links"]["next"], Value::Null);

        let v = bearer(&list, "adminkey").await.json();
        assert_eq!(v["data"].as_array().unwrap().len(), 20, "default pageSize");
        assert_eq!(sim.org_requests("o1"), 3);

        for r in [
            anon(&list).await,
            bearer(&list, "deadkey").await,
            bearer(&list, "unknown").await,
            basic(&list, EMAIL, "adminkey").await,
        ] {
            assert_eq!(r.status, 401);
        }
        let r = bearer(&format!("{list}?cursor=%%%"), "adminkey").await;
        assert_eq!(r.status, 400);
        let r = bearer(
            &format!("{base}/admin/api-access/v1/orgs/nope/api-keys"),
            "adminkey",
        )
        .await;
        assert_eq!(r.status, 404);
        assert_eq!(sim.org_requests("o1"), 4, "only authorized requests count");
    }

    #[tokio::test]
    async fn org_inventory_injects_429_and_failing_pages() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_org_api_keys(
            "o1",
            vec![OrgApiKey {
                id: "k1".into(),
                label: "ops".into(),
                created_by_name: "Alice Example".into(),
                created_by_email: EMAIL.into(),
                created_at: 0,
                expires_at: Some(0),
            }],
        );
        sim.rate_limit_org_request("o1", 1, Some("7"));
        sim.fail_org_page("o1", 1);
        let running = start(&sim).await;
        let base = running.base_url();
        let keys = format!("{base}/admin/api-access/v1/orgs/o1/api-keys");
        let tokens = format!("{base}/admin/api-access/v1/orgs/o1/api-tokens");
        let r = bearer(&keys, "adminkey").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some("7"));
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
        let r = bearer(&keys, "adminkey").await;
        assert_eq!(r.status, 200, "the 429 is served once");
        assert_eq!(r.json()["data"][0]["createdBy"]["email"], EMAIL);
        assert_eq!(bearer(&tokens, "adminkey").await.status, 500);
        sim.clear_org_failures("o1");
        assert_eq!(bearer(&tokens, "adminkey").await.status, 200);
        assert_eq!(sim.org_throttled("o1"), 1);

        sim.set_org_rate_limit("o1", 1, Duration::from_secs(60));
        assert_eq!(bearer(&keys, "adminkey").await.status, 200);
        let r = bearer(&keys, "adminkey").await;
        assert_eq!(r.status, 429, "over budget");
        assert!(r.header("retry-after").is_none());
        assert_eq!(sim.org_throttled("o1"), 2);
    }

    #[tokio::test]
    async fn admin_invalid_keys_are_401() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_credential("deadkey", cred(Behaviour::Dead));
        let running = start(&sim).await;
        let url = format!("{}/admin/v1/orgs", running.base_url());
        assert_admin_401(&bearer(&url, "unknown").await);
        assert_admin_401(&bearer(&url, "deadkey").await);
        assert_admin_401(&basic(&url, EMAIL, "adminkey").await);
        assert_admin_401(&anon(&url).await);
    }

    // --- Behaviours ----------------------------------------------------------------

    #[tokio::test]
    async fn rate_limited_passes_retry_after_verbatim() {
        for ra in [
            "30",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "9223372036854775807",
            "-5",
            "soon",
        ] {
            let (_r, base) = with(
                "tok",
                Behaviour::RateLimited {
                    retry_after: Some(ra.to_string()),
                },
            )
            .await;
            let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
            assert_eq!(r.status, 429);
            assert_eq!(r.header("retry-after").as_deref(), Some(ra));
            assert_eq!(r.header("x-ratelimit-limit").as_deref(), Some("100"));
            assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
            let _ = r.json(); // JSON body
        }
    }

    #[tokio::test]
    async fn rate_limited_without_retry_after_and_reset_is_future_iso() {
        let (_r, base) = with("tok", Behaviour::RateLimited { retry_after: None }).await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_eq!(r.status, 429);
        assert!(r.header("retry-after").is_none());
        let reset = r.header("x-ratelimit-reset").unwrap();
        assert_eq!(reset.len(), "yyyy-MM-ddTHH:mmZ".len());
        assert!(reset.ends_with('Z') && reset.as_bytes()[10] == b'T');
        // Lexicographic order equals time order for this fixed format.
        assert!(reset > iso_minute(now + 59), "{reset}");
        assert!(r.json()["errorMessages"].is_array());
    }

    #[test]
    fn iso_minute_formats_known_dates() {
        assert_eq!(iso_minute(0), "1970-01-01T00:00Z");
        assert_eq!(iso_minute(951_782_400), "2000-02-29T00:00Z");
        assert_eq!(iso_minute(1_445_412_480), "2015-10-21T07:28Z");
        assert_eq!(iso_minute(4_102_444_799), "2099-12-31T23:59Z");
    }

    #[tokio::test]
    async fn rate_limited_applies_to_every_endpoint() {
        let (_r, base) = with("tok", Behaviour::RateLimited { retry_after: None }).await;
        for path in [
            "/rest/api/3/myself",
            "/rest/api/3/project/search",
            "/wiki/rest/api/user/current",
            "/2.0/user",
        ] {
            let r = basic(&format!("{base}{path}"), "wrong-user", "tok").await;
            assert_eq!(r.status, 429, "{path}");
        }
        let r = bearer(&format!("{base}/admin/v1/orgs"), "tok").await;
        assert_eq!(r.status, 429);
    }

    #[tokio::test]
    async fn server_error_answers_configured_status() {
        let (_r, base) = with("tok", Behaviour::ServerError { status: 503 }).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.json()["errorMessages"][0], "Internal server error");
        let r = bearer(&format!("{base}/admin/v1/orgs"), "tok").await;
        assert_eq!(r.status, 503);
    }

    #[tokio::test]
    async fn server_error_with_invalid_status_is_500() {
        let (_r, base) = with("tok", Behaviour::ServerError { status: 42 }).await;
        let r = basic(&format!("{base}/2.0/user"), EMAIL, "tok").await;
        assert_eq!(r.status, 500);
    }

    #[tokio::test]
    async fn slow_sleeps_then_behaves_as_valid() {
        let delay = Duration::from_millis(250);
        let (_r, base) = with("tok", Behaviour::Slow { delay }).await;
        let t0 = Instant::now();
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert!(t0.elapsed() >= delay);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-aaccountid").as_deref(), Some(ACCOUNT));
        // Slow + wrong email is still a failed login after the sleep.
        let r = basic(&format!("{base}/rest/api/3/myself"), "bob@x", "tok").await;
        assert_jira_401(&r);
        // Slow admin key is valid.
        let r = bearer(&format!("{base}/admin/v1/orgs"), "tok").await;
        assert_eq!(r.status, 200);
    }

    #[tokio::test]
    async fn non_json_is_html_200() {
        let (_r, base) = with("tok", Behaviour::NonJson).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-type").unwrap().starts_with("text/html"));
        assert!(r.body.starts_with("<html>") && r.body.ends_with("</html>"));
        assert!(serde_json::from_str::<Value>(&r.body).is_err());
    }

    #[tokio::test]
    async fn redirect_is_302_and_target_counts_auth_headers() {
        let sim = Simulator::new();
        let running = start(&sim).await;
        let base = running.base_url();
        let location = format!("{base}/redirect-target/rest/api/3/myself");
        sim.add_credential(
            "tok",
            cred(Behaviour::Redirect {
                location: location.clone(),
            }),
        );
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 302);
        assert_eq!(r.header("location").as_deref(), Some(location.as_str()));
        assert_eq!(sim.stats().redirect_target_hits, 0);

        // A client that follows the redirect to the same host leaks the header
        // and sees something that looks valid.
        let follower = reqwest::Client::new();
        let r = send(
            follower
                .get(format!("{base}/rest/api/3/myself"))
                .basic_auth(EMAIL, Some("tok")),
        )
        .await;
        assert_eq!(r.status, 200);
        assert!(r.json()["accountId"].is_string());
        let s = sim.stats();
        assert_eq!(s.redirect_target_hits, 1);
        assert_eq!(s.redirect_target_auth_headers, 1);
    }

    #[tokio::test]
    async fn redirect_target_counts_hits_with_and_without_auth() {
        let sim = Simulator::new();
        let running = start(&sim).await;
        let base = running.base_url();
        let r = anon(&format!("{base}/redirect-target")).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert!(v["accountId"].is_string());
        assert_eq!(v["type"], "known");
        assert!(v["account_id"].is_string());
        assert!(v["data"].is_array());
        assert!(r.header("x-aaccountid").is_some());
        let r = bearer(&format!("{base}/redirect-target/admin/v1/orgs"), "x").await;
        assert_eq!(r.status, 200);
        let s = sim.stats();
        assert_eq!(s.redirect_target_hits, 2);
        assert_eq!(s.redirect_target_auth_headers, 1);
        // Not a redirect target: a different path with the same start.
        let r = anon(&format!("{base}/redirect-targetx")).await;
        assert_eq!(r.status, 404);
        assert_eq!(sim.stats().redirect_target_hits, 2);
    }

    #[tokio::test]
    async fn huge_body_has_exact_size() {
        for n in [2 * 1024 * 1024 + 3, 10, 0] {
            let (_r, base) = with("tok", Behaviour::HugeBody { bytes: n }).await;
            let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
            assert_eq!(r.status, 200);
            assert_eq!(
                r.header("content-type").as_deref(),
                Some("application/json")
            );
            assert_eq!(r.body.len(), n);
            let expected_prefix = &r#"{"accountId":"x","pad":""#[..n.min(24)];
            assert!(r.body.starts_with(expected_prefix));
            if n > 24 {
                assert!(r.body[24..].bytes().all(|b| b == b'a'));
            }
        }
    }

    #[tokio::test]
    async fn no_account_id_per_provider() {
        let (_r, base) = with("tok", Behaviour::NoAccountId).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-aaccountid").is_none());
        assert!(r.json().get("accountId").is_none());

        let r = basic(&format!("{base}/rest/api/3/project/search"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert!(r.header("x-aaccountid").is_none());

        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "known");
        assert!(v.get("accountId").is_none());

        let r = basic(&format!("{base}/2.0/user"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert!(v.get("uuid").is_none() && v.get("account_id").is_none());

        let r = bearer(&format!("{base}/admin/v1/orgs"), "tok").await;
        assert_eq!(r.status, 200);
        assert!(r.json().get("data").is_none());
    }

    // --- Counting ----------------------------------------------------------------

    #[tokio::test]
    async fn requests_are_counted_per_secret_with_offsets() {
        let sim = Simulator::new();
        sim.add_credential("a", cred(Behaviour::Valid));
        sim.add_credential("b", cred(Behaviour::Dead));
        let running = start(&sim).await;
        let base = running.base_url();
        basic(&format!("{base}/rest/api/3/myself"), EMAIL, "a").await;
        tokio::time::sleep(Duration::from_millis(60)).await;
        basic(&format!("{base}/2.0/user"), EMAIL, "a").await;
        basic(&format!("{base}/rest/api/3/myself"), EMAIL, "b").await;
        bearer(&format!("{base}/admin/v1/orgs"), "b").await;
        basic(&format!("{base}/rest/api/3/myself"), EMAIL, "unknown").await;
        anon(&format!("{base}/rest/api/3/myself")).await;

        assert_eq!(sim.requests_for("a"), 2);
        assert_eq!(sim.requests_for("b"), 2);
        assert_eq!(sim.requests_for("unknown"), 1);
        assert_eq!(sim.requests_for("never"), 0);
        assert_eq!(sim.stats().requests_total, 6);
        // The running handle shares the same state.
        assert_eq!(running.sim.stats().requests_total, 6);

        let offs = sim.request_offsets_for("a");
        assert_eq!(offs.len(), 2);
        assert!(offs[1] >= offs[0] + Duration::from_millis(60), "{offs:?}");
        assert!(sim.request_offsets_for("never").is_empty());
    }

    #[tokio::test]
    async fn max_in_flight_tracks_concurrent_slow_requests() {
        let sim = Simulator::new();
        sim.add_credential(
            "slow",
            cred(Behaviour::Slow {
                delay: Duration::from_millis(300),
            }),
        );
        let running = start(&sim).await;
        let url = format!("{}/rest/api/3/myself", running.base_url());
        let c = client();
        for _round in 0..2 {
            let mut tasks = Vec::new();
            for _ in 0..5 {
                let req = c.get(&url).basic_auth(EMAIL, Some("slow"));
                tasks.push(tokio::spawn(
                    async move { req.send().await.unwrap().status() },
                ));
            }
            for t in tasks {
                assert_eq!(t.await.unwrap().as_u16(), 200);
            }
        }
        let s = sim.stats();
        assert_eq!(s.requests_total, 10);
        // Both rounds had 5 concurrent requests; a missing decrement would show 10.
        assert_eq!(s.max_in_flight, 5);
        assert_eq!(sim.requests_for("slow"), 10);
    }

    #[tokio::test]
    async fn in_flight_is_released_when_client_gives_up() {
        let sim = Simulator::new();
        sim.add_credential(
            "slow",
            cred(Behaviour::Slow {
                delay: Duration::from_millis(400),
            }),
        );
        let running = start(&sim).await;
        let url = format!("{}/rest/api/3/myself", running.base_url());
        let r = client()
            .get(&url)
            .basic_auth(EMAIL, Some("slow"))
            .timeout(Duration::from_millis(50))
            .send()
            .await;
        assert!(r.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(lock(&sim.inner.counters).in_flight, 0);
        assert_eq!(sim.stats().max_in_flight, 1);
    }

    #[tokio::test]
    async fn stats_endpoint_serves_json_and_is_not_counted() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        let running = start(&sim).await;
        let base = running.base_url();
        basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        anon(&format!("{base}/redirect-target")).await;
        let r = anon(&format!("{base}/__sim/stats")).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["requests_total"], 2);
        assert_eq!(v["max_in_flight"], 1);
        assert_eq!(v["redirect_target_hits"], 1);
        assert_eq!(v["redirect_target_auth_headers"], 0);
        let parsed: Stats = serde_json::from_str(&r.body).unwrap();
        assert_eq!(parsed.requests_total, sim.stats().requests_total);
    }

    // --- Lifecycle -----------------------------------------------------------------

    #[tokio::test]
    async fn router_can_be_served_by_caller() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = sim.router();
        let task = tokio::spawn(async move { axum::serve(listener, router).await });
        let r = basic(&format!("http://{addr}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert_eq!(sim.requests_for("tok"), 1);
        task.abort();
    }

    #[tokio::test]
    async fn base_url_and_shutdown() {
        let sim = Simulator::default();
        let running = start(&sim).await;
        let base = running.base_url();
        assert_eq!(base, format!("http://127.0.0.1:{}", running.addr.port()));
        assert_ne!(running.addr.port(), 0);
        assert_eq!(anon(&format!("{base}/nothing")).await.status, 404);
        running.shutdown();
        let mut stopped = false;
        for _ in 0..50 {
            let fresh = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            if fresh.get(format!("{base}/nothing")).send().await.is_err() {
                stopped = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(stopped, "server still answering after shutdown");
    }

    #[tokio::test]
    async fn dropping_running_simulator_keeps_serving() {
        let sim = Simulator::new();
        let base = start(&sim).await.base_url();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(anon(&format!("{base}/nothing")).await.status, 404);
    }

    #[test]
    fn debug_output_never_contains_secrets() {
        let sim = Simulator::new();
        sim.add_credential("ATATT3xSUPERSECRET", cred(Behaviour::Valid));
        let dbg = format!("{sim:?}");
        assert!(!dbg.contains("SUPERSECRET"), "{dbg}");
        assert!(dbg.contains("credentials: 1"));
    }
}
