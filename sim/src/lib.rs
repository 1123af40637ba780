//! In-process HTTP simulator of the vendor APIs probed by apitoken-exporter: Atlassian
//! Cloud, GitHub and GitLab.
//!
//! Used by the exporter's integration tests and by its `demo` subcommand. It is a crate of
//! its own so that the exporter's library carries none of it: the exporter depends on it
//! for its tests and, behind its default `demo` feature, for the demo
//! (`cargo build --no-default-features` leaves both out).
//!
//! It reproduces the behaviours the exporter's classification relies on (README.md, "How
//! tokens are classified"), one module per product and the faults apart:
//!
//! * `atlassian::jira`: `/myself` never serves anonymous, `/project/search` silently does.
//! * `atlassian::confluence`: `/user/current` answers `{"type":"anonymous"}` on open sites.
//! * `atlassian::bitbucket`, `atlassian::admin`: no anonymous fallback.
//! * `atlassian::inventory`: the Admin API's organization inventory (pagination, rate
//!   limits, the owners' personal data).
//! * `github`: `/user` on github.com and under a GitHub Enterprise Server's `/api/v3`, with
//!   the token's expiry and (classic tokens) scopes in response headers, and GitHub's own
//!   rate-limit answers (403 with `x-ratelimit-remaining: 0`, 429 with `retry-after`).
//! * `gitlab`: `/api/v4/personal_access_tokens/self` with `PRIVATE-TOKEN` or Bearer, the
//!   token's own description (expiry, creation, last use, scopes, active/revoked).
//!   limits, the owners' personal data, keys without the 2026 API-keys scope, entries that
//!   turn `BLOCKED` or vanish, and organizations of any size generated on the fly).
//! * `faults`: what a [`Behaviour`] other than `Valid`/`Dead` forces on every request
//!   (429, 5xx, non-JSON, huge body, redirect, slow, no account id).
//! * `auth`: how `Authorization` headers are read and a login is decided.
//!
//! A *site* is a path prefix in front of the API path (`""` for none), e.g.
//! `/closed-site` or `/ex/jira/{cloudId}`. Sites are open to anonymous access
//! unless passed to [`Simulator::close_site`].
//!
//! Secrets are only kept in memory for lookup and counting; the simulator never
//! logs or prints them (its `Debug` output shows counts only).
//!
//! What GitHub and GitLab report about a token (expiry, creation, last use, scopes) is
//! registered apart, with [`Simulator::set_token_details`].
//!
//! A new vendor is a module with its endpoints' handlers, one variant of `Endpoint`
//! (below, in this file) and one arm in each of its three methods.

mod atlassian;
mod auth;
mod faults;
mod github;
mod gitlab;
mod respond;
#[cfg(test)]
mod test_support;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::{HeaderValue, ALLOW};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::atlassian::inventory::{self, SimOrg};
pub use crate::atlassian::inventory::{generated_org_token, RevokeAs, GENERATED_DAY};
use crate::auth::{parse_auth, AuthHeader};
use crate::respond::{base_url_from, json_response, not_found};

const STATS_PATH: &str = "/__sim/stats";

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
    /// GitLab: 200 describing the token with `active: false` (expired or deactivated), and
    /// `revoked` as given. Every other vendor treats it as `Dead`.
    Inactive { revoked: bool },
    /// Every request: 403, the credential recognised but the call refused (a missing
    /// scope, an IP allow list), in the vendor's own words where it has them.
    Forbidden,
}

/// What a vendor that describes its tokens (GitHub, GitLab) reports about one credential;
/// Unix seconds. Without details a GitHub token has no expiry and no scopes header, a
/// GitLab token was created when the simulator started, never expires, was never used
/// and has the `api` scope.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenDetails {
    /// GitHub `GitHub-Authentication-Token-Expiration`; GitLab `expires_at` (the date).
    pub expires_at: Option<i64>,
    /// GitLab `created_at`.
    pub created_at: Option<i64>,
    /// GitLab `last_used_at`.
    pub last_used_at: Option<i64>,
    /// GitHub `x-oauth-scopes` (`None`: a fine-grained token, no header at all); GitLab
    /// `scopes`.
    pub scopes: Option<Vec<String>>,
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
    /// The same moment in Unix seconds.
    started_unix: i64,
    credentials: Mutex<HashMap<String, Credential>>,
    /// Scoped API tokens: the credential type and scopes Bitbucket reports for a secret.
    scoped: Mutex<HashMap<String, ScopedToken>>,
    oauth: Mutex<atlassian::oauth::OAuthState>,
    /// Endpoints that fail on every nth request (see [`Simulator::flaky_endpoint`]).
    flaky: Mutex<Vec<faults::Flaky>>,
    closed_sites: Mutex<HashSet<String>>,
    counters: Mutex<Counters>,
    orgs: Mutex<HashMap<String, SimOrg>>,
    details: Mutex<HashMap<String, TokenDetails>>,
    /// Credentials that behave as [`Behaviour::Dead`] from this instant on (a revoked
    /// token that kept working for a while, see [`Simulator::dies_after`]).
    dies_at: Mutex<HashMap<String, Instant>>,
    /// Admin keys created before Atlassian's 2026 scope split: they may list API tokens
    /// but get a 403 on API keys (see [`Simulator::legacy_admin_key`]).
    legacy_keys: Mutex<HashSet<String>>,
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
                started_unix: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
                credentials: Mutex::new(HashMap::new()),
                scoped: Mutex::new(HashMap::new()),
                oauth: Mutex::new(atlassian::oauth::OAuthState::default()),
                flaky: Mutex::new(Vec::new()),
                closed_sites: Mutex::new(HashSet::new()),
                counters: Mutex::new(Counters::default()),
                orgs: Mutex::new(HashMap::new()),
                details: Mutex::new(HashMap::new()),
                dies_at: Mutex::new(HashMap::new()),
                legacy_keys: Mutex::new(HashSet::new()),
            }),
        }
    }

    /// Registers (or replaces) a credential; `secret` is the API token or admin key.
    pub fn add_credential(&self, secret: &str, cred: Credential) {
        lock(&self.inner.credentials).insert(secret.to_string(), cred);
    }

    /// Registers (or replaces) what GitHub and GitLab report about the credential
    /// registered under `secret` (see [`TokenDetails`]).
    pub fn set_token_details(&self, secret: &str, details: TokenDetails) {
        lock(&self.inner.details).insert(secret.to_string(), details);
    }

    /// Changes how a registered credential behaves from now on; false if it is unknown.
    pub fn set_behaviour(&self, secret: &str, behaviour: Behaviour) -> bool {
        lock(&self.inner.dies_at).remove(secret);
        lock(&self.inner.credentials)
            .get_mut(secret)
            .map(|c| c.behaviour = behaviour)
            .is_some()
    }

    /// The credential keeps its behaviour for `after`, then behaves as [`Behaviour::Dead`]:
    /// Atlassian's "a revoked token may keep working for 10–20 minutes".
    pub fn dies_after(&self, secret: &str, after: Duration) {
        lock(&self.inner.dies_at).insert(secret.to_string(), Instant::now() + after);
    }

    /// Marks an admin key as created before Atlassian's 2026 scope split (rolled out
    /// January to March 2026): such a key kept only the "API tokens" scope
    /// (`read:tokens:admin`), so it lists `…/api-tokens` but gets a 403 on `…/api-keys`
    /// (which needs `read:keys:admin`).
    pub fn legacy_admin_key(&self, secret: &str) {
        lock(&self.inner.legacy_keys).insert(secret.to_string());
    }

    fn is_legacy_key(&self, secret: &str) -> bool {
        lock(&self.inner.legacy_keys).contains(secret)
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

    /// The credential registered under `secret`, or the service account a live OAuth
    /// access token belongs to.
    fn lookup(&self, secret: &str) -> Option<Credential> {
        let mut cred = lock(&self.inner.credentials).get(secret).cloned();
        if let Some(c) = cred.as_mut() {
            if lock(&self.inner.dies_at)
                .get(secret)
                .is_some_and(|at| Instant::now() >= *at)
            {
                c.behaviour = Behaviour::Dead;
            }
        }
        cred.or_else(|| lock(&self.inner.oauth).account(secret))
    }

    /// Makes `secret` a scoped API token: Bitbucket answers with `x-credential-type` and
    /// `x-oauth-scopes`, and `/2.0/user` is 403 unless the scopes include
    /// `read:user:bitbucket` (as for an API token created without it).
    pub fn set_scoped_token(&self, secret: &str, token: ScopedToken) {
        lock(&self.inner.scoped).insert(secret.to_string(), token);
    }

    /// Registers an OAuth 2.0 client (a service account's credential): `POST
    /// {prefix}/oauth/token` exchanges `client_id` + `client_secret` for access tokens that
    /// authenticate as `account` on gateway sites (`/ex/…`) for `expires_in`.
    pub fn add_oauth_client(
        &self,
        client_id: &str,
        client_secret: &str,
        account: Credential,
        expires_in: Duration,
    ) {
        lock(&self.inner.oauth).add_client(client_id, client_secret, account, expires_in);
    }

    /// Token requests made for `client_id` so far (refused ones included).
    pub fn oauth_exchanges(&self, client_id: &str) -> u64 {
        lock(&self.inner.oauth).exchanges(client_id)
    }

    /// Every access token issued so far stops working at once (revoked early).
    pub fn expire_access_tokens(&self) {
        lock(&self.inner.oauth).expire_all();
    }

    /// Requests whose path ends with `suffix` (e.g. `/rest/api/3/project/search`) answer
    /// `status` on every `every`th request (1 = always), with `Retry-After` when given for
    /// a 429, or a redirect for a 3xx; the others are answered normally.
    pub fn flaky_endpoint(&self, suffix: &str, every: u64, status: u16, retry_after: Option<&str>) {
        lock(&self.inner.flaky).push(faults::Flaky::new(suffix, every, status, retry_after));
    }

    fn details(&self, secret: &str) -> Option<TokenDetails> {
        lock(&self.inner.details).get(secret).cloned()
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
// Dispatch
// ---------------------------------------------------------------------------

/// An API endpoint the simulator answers, one variant per vendor module. A new vendor adds
/// a variant and one arm (or line) in each method below.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Endpoint {
    Atlassian(atlassian::Endpoint),
    GitHub,
    GitLab,
}

impl Endpoint {
    /// Splits a path into (site prefix, endpoint) by matching how it ends; vendors are
    /// tried in this order (GitHub's `/user` last: Bitbucket's `/2.0/user` ends so too).
    fn route(path: &str) -> Option<(&str, Endpoint)> {
        atlassian::route(path)
            .map(|(prefix, ep)| (prefix, Endpoint::Atlassian(ep)))
            .or_else(|| gitlab::route(path).map(|prefix| (prefix, Endpoint::GitLab)))
            .or_else(|| github::route(path).map(|prefix| (prefix, Endpoint::GitHub)))
    }

    /// The answer to a request no fault [`Behaviour`] took over.
    fn answer(self, req: Incoming<'_>) -> Response {
        match self {
            Endpoint::Atlassian(ep) => ep.answer(req),
            Endpoint::GitHub => github::answer(req),
            Endpoint::GitLab => gitlab::answer(req),
        }
    }

    /// The vendor's own answer for a fault [`Behaviour`] (its rate-limit headers, its 403,
    /// its 200 without the account id), or None for the generic one in `faults`.
    fn fault(self, req: Incoming<'_>, behaviour: &Behaviour) -> Option<Response> {
        match self {
            Endpoint::Atlassian(ep) => ep.fault(req, behaviour),
            Endpoint::GitHub => github::fault(req, behaviour),
            Endpoint::GitLab => gitlab::fault(req, behaviour),
        }
    }
}

/// What an endpoint's handler sees of a request.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    auth: &'a AuthHeader,
    /// The credential registered under the request's secret, if any.
    cred: Option<&'a Credential>,
    /// What the vendor reports about that credential ([`Simulator::set_token_details`]).
    details: Option<&'a TokenDetails>,
    /// `http://{Host}{site prefix}`, where the answer's links point.
    base: &'a str,
    /// The site path prefix in front of the API path (`""` for none).
    prefix: &'a str,
    /// The site allows anonymous access (see [`Simulator::close_site`]).
    open: bool,
    headers: &'a HeaderMap,
    /// Unix seconds the simulator started (a default creation time).
    started: i64,
    /// The site is the API gateway form (`/ex/jira/{cloudId}`, …), where scoped tokens and
    /// OAuth access tokens are accepted as Bearer.
    gateway: bool,
    /// What the secret is as a scoped API token, if registered.
    scoped: Option<&'a ScopedToken>,
}

/// A scoped API token (Bitbucket API tokens are always scoped).
#[derive(Clone, Debug)]
pub struct ScopedToken {
    /// `x-credential-type`: `api_token`, `repo_access_token`, …
    pub credential_type: String,
    pub scopes: Vec<String>,
}

async fn handle(State(sim): State<Simulator>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let method = req.method().clone();
    let headers = req.headers().clone();
    let body = req.into_body();

    if path == STATS_PATH {
        // Not counted, so that polling the stats does not change them.
        return Json(sim.stats()).into_response();
    }

    let auth = parse_auth(&headers);
    let _guard = sim.enter(auth.secret());

    if let Some(resp) = faults::flaky_answer(&sim, &path) {
        return resp;
    }
    if path.ends_with(atlassian::oauth::TOKEN) && method == Method::POST {
        let form = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        return lock(&sim.inner.oauth).exchange(&String::from_utf8_lossy(&form));
    }

    if faults::is_redirect_target(&path) {
        return faults::redirect_target(&sim, &headers);
    }

    let cred = auth.secret().and_then(|s| sim.lookup(s));
    let details = auth.secret().and_then(|s| sim.details(s));
    let routed = Endpoint::route(&path);
    let (prefix, endpoint) = routed.unzip();
    let prefix = prefix.unwrap_or("");
    let base = format!("{}{prefix}", base_url_from(&headers));
    let scoped = auth
        .secret()
        .and_then(|s| lock(&sim.inner.scoped).get(s).cloned());
    let gateway = prefix.starts_with("/ex/");
    let incoming = Incoming {
        auth: &auth,
        cred: cred.as_ref(),
        details: details.as_ref(),
        base: &base,
        prefix,
        // The API gateway has no anonymous fallback.
        open: !gateway && !sim.is_closed(prefix),
        headers: &headers,
        started: sim.inner.started_unix,
        gateway,
        scoped: scoped.as_ref(),
    };

    // Behaviours that override normal handling for every request carrying the secret.
    if let Some(cred) = &cred {
        if let Some(resp) = faults::forced_answer(cred, endpoint, incoming).await {
            return resp;
        }
    }

    if let Some((prefix, org_id, list)) = inventory::route(&path) {
        let key = if !auth::admin_key_accepted(&auth, cred.as_ref()) {
            inventory::Key::Refused
        } else if auth.secret().is_some_and(|s| sim.is_legacy_key(s)) {
            inventory::Key::Legacy
        } else {
            inventory::Key::Accepted
        };
        return inventory::answer(&sim, prefix, org_id, list, query.as_deref(), key);
    }
    let Some(endpoint) = endpoint else {
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

    endpoint.answer(incoming)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::*;

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
