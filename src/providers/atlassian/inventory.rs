//! The organization inventory client (README "Organization inventory"): every user API
//! token and admin API key an organization has, listed through the Admin API ("API
//! Access"). The two lists stand alone: [`fetch_inventory`] returns each list only when
//! *every* page of *that* list arrived, so a failed page never publishes half a list, and
//! a list that fails (e.g. a 403 on API keys for a key from before Atlassian's 2026 scope
//! split, which can read `read:tokens:admin` but not `read:keys:admin`) does not hold back
//! the other. The scheduler's inventory loop hands both results to the state.
//!
//! What the lists contain is untrusted: ids and labels are clipped, and the owner's name
//! and e-mail address are never deserialized (the types below have no field for them).

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use tokio::sync::Semaphore;
use url::Url;

use crate::probe::{ErrorReason, ProbeError};
use crate::secret::{CredentialError, Secret};
use crate::upstream::{
    rate_limit_reset, rate_limit_wait, Auth, HttpClient, Response, RETRY_AFTER_MIN,
};
use crate::util::{clip, MAX_UPSTREAM_LABEL};

/// Entries per page; the API's maximum.
pub const PAGE_SIZE: u32 = 100;
/// Pages one list may take by default (`organizations[].max_pages`): a cursor that never
/// ends must not keep a run going forever, and 2,500 pages are 250,000 entries.
pub const MAX_PAGES: usize = 2500;
/// The largest `max_pages` a configuration may set (10 million entries per list).
pub const MAX_PAGES_LIMIT: usize = 100_000;
/// 429s one run absorbs (waiting as asked) before it gives up until the next run.
pub const MAX_RATE_LIMIT_RETRIES: u32 = 5;
/// Total time one run may spend waiting for rate limits (429 or an exhausted budget). A
/// longer wait ends the run; the next one starts no earlier than the server asked.
pub const MAX_RUN_WAIT: Duration = Duration::from_secs(300);

/// A user API token as the API lists it, minus the owner's name and e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedToken {
    pub id: String,
    pub label: String,
    /// `ALLOWED`, `BLOCKED`, … as the API says it (empty when absent).
    pub status: String,
    /// The owner's Atlassian account id (`user.id`).
    pub account_id: Option<String>,
    /// Unix seconds.
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_active_at: Option<i64>,
}

/// An organization admin API key as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedKey {
    pub id: String,
    pub label: String,
    /// Unix seconds.
    pub created_at: Option<i64>,
    pub expires_at: Option<i64>,
}

/// One run over both lists of an organization: each list complete (keyed by id) or why
/// not. A failed list says nothing about the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryRun {
    pub api_tokens: Result<BTreeMap<String, ListedToken>, InventoryError>,
    pub api_keys: Result<BTreeMap<String, ListedKey>, InventoryError>,
    /// Pages fetched per list (whether or not the list completed), for logs.
    pub token_pages: usize,
    pub key_pages: usize,
}

impl InventoryRun {
    /// A run that could not start (no key): both lists fail with `error`.
    pub fn failed(error: InventoryError) -> Self {
        Self {
            api_tokens: Err(error.clone()),
            api_keys: Err(error),
            token_pages: 0,
            key_pages: 0,
        }
    }

    /// How long the server asked us to stay away (the longer of both lists), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        let wait = |r: Result<(), &InventoryError>| r.err().and_then(InventoryError::retry_after);
        wait(self.api_tokens.as_ref().map(|_| ())).max(wait(self.api_keys.as_ref().map(|_| ())))
    }
}

/// The two lists of the API Access API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum List {
    ApiTokens,
    ApiKeys,
}

impl List {
    pub const ALL: [List; 2] = [List::ApiTokens, List::ApiKeys];

    /// The path segment (`api-tokens`, `api-keys`), also used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            List::ApiTokens => "api-tokens",
            List::ApiKeys => "api-keys",
        }
    }

    /// The `list` label: `api_tokens`, `api_keys`.
    pub fn label(self) -> &'static str {
        match self {
            List::ApiTokens => "api_tokens",
            List::ApiKeys => "api_keys",
        }
    }

    /// The admin key scope the list needs since Atlassian's 2026 scope split.
    pub fn scope(self) -> &'static str {
        match self {
            List::ApiTokens => "read:tokens:admin",
            List::ApiKeys => "read:keys:admin",
        }
    }
}

impl std::fmt::Display for List {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run did not produce a complete inventory. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("admin API key unavailable: {0}")]
    Credential(#[from] CredentialError),
    #[error("{list} page {page}: {}: {}", .error.reason.as_str(), .error.detail)]
    Fetch {
        list: List,
        page: usize,
        error: ProbeError,
    },
    #[error("{list} page {page}: HTTP {status}: the admin API key was refused ({})", refusal_hint(*.list, *.status))]
    Refused {
        list: List,
        page: usize,
        status: u16,
    },
    #[error("{list} page {page}: unexpected HTTP {status}")]
    UnexpectedStatus {
        list: List,
        page: usize,
        status: u16,
    },
    #[error("{list} page {page}: not the expected JSON ({detail})")]
    BadBody {
        list: List,
        page: usize,
        detail: String,
    },
    #[error("{list} page {page}: the next-page link points to {target}, not the configured base URL; not followed (the key must not leave its host)")]
    ForeignNextLink {
        list: List,
        page: usize,
        target: String,
    },
    #[error("{list} page {page}: the next-page link repeats an earlier page; giving up")]
    CursorLoop { list: List, page: usize },
    #[error("{list}: more than {max} pages; giving up")]
    TooManyPages { list: List, max: usize },
    #[error("{list} page {page}: rate limited; the server asked to wait {}", humantime::format_duration(*.wait))]
    RateLimited {
        list: List,
        page: usize,
        wait: Duration,
    },
}

/// Why a key is refused: a 403 on API keys is most likely a key from before the 2026 scope
/// split (README "Organization inventory").
fn refusal_hint(list: List, status: u16) -> String {
    match (list, status) {
        (List::ApiKeys, 403) => format!(
            "it lacks the {} scope: keys created before Atlassian's 2026 scope split can read API tokens but not API keys; \
             create a key with both the API tokens and the API keys read scopes to list them",
            list.scope()
        ),
        (_, 403) => format!("it lacks the {} scope", list.scope()),
        _ => format!("it needs the {} scope", list.scope()),
    }
}

impl InventoryError {
    /// The scope the key seems to lack: set for a 403 (recognised, but not allowed).
    pub fn missing_scope(&self) -> Option<&'static str> {
        match self {
            InventoryError::Refused {
                list, status: 403, ..
            } => Some(list.scope()),
            _ => None,
        }
    }

    /// How long the server asked us to stay away, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            InventoryError::RateLimited { wait, .. } => Some(*wait),
            InventoryError::Fetch { error, .. } => error.retry_after,
            _ => None,
        }
    }
}

/// Bounds of one run (tests shrink them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Each page request, including reading the body.
    pub page_timeout: Duration,
    pub max_pages: usize,
    pub max_rate_limit_retries: u32,
    pub max_run_wait: Duration,
}

impl Limits {
    pub fn new(page_timeout: Duration) -> Self {
        Self {
            page_timeout,
            max_pages: MAX_PAGES,
            max_rate_limit_retries: MAX_RATE_LIMIT_RETRIES,
            max_run_wait: MAX_RUN_WAIT,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Wire format (only the fields we keep; serde skips the rest, e.g. user.name/user.email)
// ---------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToken {
    id: Option<String>,
    label: Option<String>,
    status: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
    last_active_at: Option<String>,
    user: Option<WireUser>,
}

/// `user.id` only: `name` and `email` are personal data and never leave the parser.
#[derive(Deserialize)]
struct WireUser {
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireKey {
    id: Option<String>,
    label: Option<String>,
    created_at: Option<String>,
    expires_at: Option<String>,
}

fn text(v: Option<String>) -> String {
    v.map(|s| clip(s.trim(), MAX_UPSTREAM_LABEL).to_string())
        .unwrap_or_default()
}

fn id(v: Option<String>) -> Option<String> {
    Some(text(v)).filter(|s| !s.is_empty())
}

/// RFC 3339 (or a plain date); anything else counts as absent rather than failing the run.
fn time(v: Option<String>) -> Option<i64> {
    crate::util::parse_timestamp(v.as_deref()?).ok()
}

/// Entries without an id cannot be told apart or linked; they are skipped.
trait Entry: DeserializeOwned {
    type Listed;
    fn into_listed(self) -> Option<(String, Self::Listed)>;
}

impl Entry for WireToken {
    type Listed = ListedToken;
    fn into_listed(self) -> Option<(String, ListedToken)> {
        let id = id(self.id)?;
        Some((
            id.clone(),
            ListedToken {
                id,
                label: text(self.label),
                status: text(self.status),
                account_id: self.user.and_then(|u| self::id(u.id)),
                created_at: time(self.created_at),
                expires_at: time(self.expires_at),
                last_active_at: time(self.last_active_at),
            },
        ))
    }
}

impl Entry for WireKey {
    type Listed = ListedKey;
    fn into_listed(self) -> Option<(String, ListedKey)> {
        let id = id(self.id)?;
        Some((
            id.clone(),
            ListedKey {
                id,
                label: text(self.label),
                created_at: time(self.created_at),
                expires_at: time(self.expires_at),
            },
        ))
    }
}

// ---------------------------------------------------------------------------------------
// Fetching
// ---------------------------------------------------------------------------------------

/// `{base_url}/admin/api-access/v1/orgs/{orgId}/{list}?pageSize=100`.
pub fn list_url(base: &Url, org_id: &str, list: List) -> Result<Url, String> {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| format!("base URL {base} cannot take a path"))?
        .pop_if_empty()
        .extend(["admin", "api-access", "v1", "orgs", org_id, list.as_str()]);
    url.query_pairs_mut()
        .append_pair("pageSize", &PAGE_SIZE.to_string());
    Ok(url)
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.username().is_empty()
        && a.password().is_none()
}

/// Where `links.next` leads. Atlassian documents it loosely, so three forms are accepted:
/// an absolute URL (only on the base URL's scheme, host and port: the key must never be
/// sent elsewhere), a relative reference (`/admin/…?cursor=…`, `?cursor=…`), or a bare
/// cursor value, which replaces `cursor=` on the first page's URL.
pub fn next_page_url(base: &Url, current: &Url, first: &Url, next: &str) -> Result<Url, String> {
    let next = next.trim();
    let url = if let Ok(absolute) = Url::parse(next) {
        absolute
    } else if next.starts_with('/') || next.contains('?') {
        current
            .join(next)
            .map_err(|e| format!("invalid link ({e})"))?
    } else {
        let mut url = first.clone();
        let kept: Vec<(String, String)> = first
            .query_pairs()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("cursor", next);
        url
    };
    if same_origin(&url, base) {
        Ok(url)
    } else {
        Err(match url.host_str() {
            Some(host) => format!(
                "{}://{}",
                url.scheme(),
                clip(
                    &format!("{host}:{}", url.port_or_known_default().unwrap_or(0)),
                    100
                )
            ),
            None => "a URL without a host".to_string(),
        })
    }
}

/// Which organization to list, and where.
#[derive(Debug, Clone, Copy)]
pub struct OrgTarget<'a> {
    /// The configured organization name (for logs).
    pub name: &'a str,
    pub org_id: &'a str,
    pub base_url: &'a Url,
}

/// One run over both lists of one organization.
struct Run<'a> {
    client: &'a HttpClient,
    org: OrgTarget<'a>,
    secret: &'a Secret,
    limits: Limits,
    permits: Option<&'a Semaphore>,
    rate_limit_retries: u32,
    waited: Duration,
    /// Set when a page said the budget is spent (`X-RateLimit-Remaining: 0`): the next
    /// request, of either list, first waits for the reset instead of provoking a 429.
    pause_before_next: Option<Duration>,
    /// Pages fetched of the list being listed.
    pages: usize,
}

/// Lists both lists, each completely or not at all; the second is listed whatever became
/// of the first (they share the run's rate-limit budget). `permits` (the probes'
/// concurrency limit) is held only while a request is in flight, never while waiting out a
/// rate limit.
pub async fn fetch_inventory(
    client: &HttpClient,
    org: OrgTarget<'_>,
    secret: &Secret,
    limits: Limits,
    permits: Option<&Semaphore>,
) -> InventoryRun {
    let mut run = Run {
        client,
        org,
        secret,
        limits,
        permits,
        rate_limit_retries: 0,
        waited: Duration::ZERO,
        pause_before_next: None,
        pages: 0,
    };
    let api_tokens = run.list::<WireToken>(List::ApiTokens).await;
    let token_pages = std::mem::take(&mut run.pages);
    let api_keys = run.list::<WireKey>(List::ApiKeys).await;
    InventoryRun {
        api_tokens,
        api_keys,
        token_pages,
        key_pages: run.pages,
    }
}

impl Run<'_> {
    async fn list<T: Entry>(
        &mut self,
        list: List,
    ) -> Result<BTreeMap<String, T::Listed>, InventoryError> {
        let first = list_url(self.org.base_url, self.org.org_id, list).map_err(|detail| {
            InventoryError::BadBody {
                list,
                page: 1,
                detail,
            }
        })?;
        let mut url = first.clone();
        let mut seen = HashSet::from([first.to_string()]);
        let mut out = BTreeMap::new();
        for page in 1..=self.limits.max_pages {
            let resp = self.page(&url, list, page).await?;
            self.pages += 1;
            let parsed: Page<T> =
                serde_json::from_slice(&resp.body).map_err(|e| InventoryError::BadBody {
                    list,
                    page,
                    // Not serde's message: it quotes values from the body (e-mails).
                    detail: format!(
                        "{:?} error at line {} column {}",
                        e.classify(),
                        e.line(),
                        e.column()
                    ),
                })?;
            out.extend(parsed.data.into_iter().filter_map(Entry::into_listed));
            let next = parsed
                .links
                .and_then(|l| l.next)
                .filter(|n| !n.trim().is_empty());
            let Some(next) = next else {
                return Ok(out);
            };
            let next = next_page_url(self.org.base_url, &url, &first, &next)
                .map_err(|target| InventoryError::ForeignNextLink { list, page, target })?;
            if !seen.insert(next.to_string()) {
                return Err(InventoryError::CursorLoop { list, page });
            }
            url = next;
        }
        Err(InventoryError::TooManyPages {
            list,
            max: self.limits.max_pages,
        })
    }

    /// One page, retried after a 429 as the server asks (bounded per run).
    async fn page(
        &mut self,
        url: &Url,
        list: List,
        page: usize,
    ) -> Result<Response, InventoryError> {
        if let Some(pause) = self.pause_before_next.take() {
            self.wait(pause, list, page).await?;
        }
        loop {
            let result = {
                let _permit = match self.permits {
                    Some(p) => Some(p.acquire().await.map_err(|_| InventoryError::Fetch {
                        list,
                        page,
                        error: ProbeError::new(ErrorReason::Connect, "shutting down"),
                    })?),
                    None => None,
                };
                tokio::time::timeout(
                    self.limits.page_timeout,
                    self.client.get(url.clone(), Auth::Bearer(self.secret)),
                )
                .await
            };
            let error = match result {
                Err(_) => ProbeError::new(
                    ErrorReason::Timeout,
                    format!(
                        "no answer within {}",
                        humantime::format_duration(self.limits.page_timeout)
                    ),
                ),
                Ok(Ok(resp)) if resp.status.is_success() => {
                    if resp.header("x-ratelimit-remaining").map(str::trim) == Some("0") {
                        self.pause_before_next = Some(
                            rate_limit_reset(&resp.headers, SystemTime::now())
                                .unwrap_or(RETRY_AFTER_MIN),
                        );
                    }
                    return Ok(resp);
                }
                Ok(Ok(resp)) => {
                    let status = resp.status.as_u16();
                    return Err(if matches!(status, 401 | 403) {
                        InventoryError::Refused { list, page, status }
                    } else {
                        InventoryError::UnexpectedStatus { list, page, status }
                    });
                }
                Ok(Err(e)) => e,
            };
            if error.reason != ErrorReason::RateLimited {
                return Err(InventoryError::Fetch { list, page, error });
            }
            let wait = rate_limit_wait(&error).unwrap_or(RETRY_AFTER_MIN);
            if self.rate_limit_retries >= self.limits.max_rate_limit_retries {
                return Err(InventoryError::RateLimited { list, page, wait });
            }
            self.rate_limit_retries += 1;
            self.wait(wait, list, page).await?;
        }
    }

    async fn wait(
        &mut self,
        wait: Duration,
        list: List,
        page: usize,
    ) -> Result<(), InventoryError> {
        if self.waited + wait > self.limits.max_run_wait {
            return Err(InventoryError::RateLimited { list, page, wait });
        }
        tracing::debug!(
            org = self.org.name,
            list = list.as_str(),
            page,
            wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            "organization inventory: waiting for the rate limit"
        );
        self.waited += wait;
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Instant;

    use apitoken_sim::{Behaviour, Credential, OrgApiKey, OrgToken, Simulator};
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    use axum::Json;
    use serde_json::{json, Value};

    const KEY: &str = "ATATT3xINVENTORYUNITKEY";
    const DAY: i64 = 86_400;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn limits() -> Limits {
        Limits {
            max_pages: 20,
            ..Limits::new(Duration::from_secs(5))
        }
    }

    /// The API tokens list of a run, or its error (most tests look at that list).
    async fn fetch(base: &str) -> Result<BTreeMap<String, ListedToken>, InventoryError> {
        fetch_with(base, KEY, limits()).await.api_tokens
    }

    async fn fetch_with(base: &str, key: &str, limits: Limits) -> InventoryRun {
        let client = HttpClient::new().unwrap();
        let base = url(base);
        let org = OrgTarget {
            name: "acme",
            org_id: "org-1",
            base_url: &base,
        };
        fetch_inventory(&client, org, &Secret::new(key), limits, None).await
    }

    #[test]
    fn list_urls_keep_the_base_path_and_encode_the_org() {
        let base = url("https://api.atlassian.com");
        assert_eq!(
            list_url(&base, "0a1b", List::ApiTokens).unwrap().as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/0a1b/api-tokens?pageSize=100"
        );
        let base = url("http://127.0.0.1:8080/prefix");
        assert_eq!(
            list_url(&base, "a/b c", List::ApiKeys).unwrap().as_str(),
            "http://127.0.0.1:8080/prefix/admin/api-access/v1/orgs/a%2Fb%20c/api-keys?pageSize=100"
        );
    }

    #[test]
    fn next_links_stay_on_the_base_origin() {
        let base = url("https://api.atlassian.com");
        let first = list_url(&base, "o", List::ApiTokens).unwrap();
        let current = url(
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?pageSize=100&cursor=a",
        );
        let next = |n: &str| next_page_url(&base, &current, &first, n);
        assert_eq!(
            next("https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?cursor=b")
                .unwrap()
                .as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?cursor=b"
        );
        assert_eq!(
            next("/admin/api-access/v1/orgs/o/api-tokens?cursor=b&pageSize=100")
                .unwrap()
                .as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?cursor=b&pageSize=100"
        );
        // A path without a query is a relative reference too, not a cursor.
        assert_eq!(
            next("/admin/api-access/v1/orgs/o/api-tokens/page/2")
                .unwrap()
                .as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens/page/2"
        );
        assert_eq!(
            next("?cursor=c").unwrap().as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?cursor=c"
        );
        // A bare cursor (may contain base64 characters) replaces cursor= on the first URL.
        assert_eq!(
            next("eyJv+Zn/Q=").unwrap().as_str(),
            "https://api.atlassian.com/admin/api-access/v1/orgs/o/api-tokens?pageSize=100&cursor=eyJv%2BZn%2FQ%3D"
        );
        for foreign in [
            "https://evil.example/admin/api-access/v1/orgs/o/api-tokens?cursor=b",
            "http://api.atlassian.com/admin?cursor=b",
            "https://api.atlassian.com:8443/admin?cursor=b",
            "//evil.example/admin?cursor=b",
            "https://user:pw@api.atlassian.com/admin?cursor=b",
        ] {
            assert!(next(foreign).is_err(), "{foreign} accepted");
        }
        assert_eq!(
            next("https://evil.example/x?cursor=1").unwrap_err(),
            "https://evil.example:443"
        );
    }

    #[test]
    fn parsing_keeps_the_documented_fields_and_drops_personal_data() {
        let body = json!({
            "data": [
                {"id": "t1", "label": "ci", "status": "ALLOWED", "createdAt": "2026-01-01T00:00:00Z",
                 "expiresAt": "2026-12-31T00:00:00.000Z", "lastActiveAt": "2026-02-01T00:00:00+00:00",
                 "user": {"id": "acc-1", "orgId": "o", "name": "Mia Muster", "email": "mia@example.com"},
                 "scopes": ["read:jira-work"]},
                {"id": "t2", "label": null, "status": "BLOCKED", "expiresAt": null, "user": {"id": "acc-2"}},
                {"label": "no id: skipped"},
                {"id": "t3", "label": "x".repeat(1000), "expiresAt": "soon"}
            ],
            "links": {"self": "s", "next": null}
        });
        let page: Page<WireToken> = serde_json::from_value(body).unwrap();
        let listed: Vec<ListedToken> = page
            .data
            .into_iter()
            .filter_map(Entry::into_listed)
            .map(|(_, t)| t)
            .collect();
        assert_eq!(listed.len(), 3);
        assert_eq!(
            listed[0],
            ListedToken {
                id: "t1".into(),
                label: "ci".into(),
                status: "ALLOWED".into(),
                account_id: Some("acc-1".into()),
                created_at: Some(1_767_225_600),
                expires_at: Some(1_798_675_200),
                last_active_at: Some(1_769_904_000),
            }
        );
        assert_eq!(listed[1].expires_at, None);
        assert_eq!(listed[1].label, "");
        assert_eq!(listed[2].label.chars().count(), MAX_UPSTREAM_LABEL);
        assert_eq!(listed[2].expires_at, None, "unparseable time is absent");
        assert!(!format!("{listed:?}").contains("mia"));
    }

    fn sim_token(i: usize, now: i64) -> OrgToken {
        OrgToken {
            id: format!("tok-{i:03}"),
            label: format!("label {i}"),
            status: "ALLOWED".into(),
            account_id: format!("acc-{}", i % 7),
            user_name: format!("User {i}"),
            user_email: format!("user{i}@example.com"),
            created_at: now - 10 * DAY,
            expires_at: Some(now + i as i64 * DAY),
            last_active_at: Some(now - DAY),
        }
    }

    async fn sim_with_org(tokens: usize) -> (apitoken_sim::RunningSimulator, Simulator) {
        let sim = Simulator::new();
        sim.add_credential(
            KEY,
            Credential {
                account_id: "admin".into(),
                email: "admin@example.com".into(),
                username: "admin".into(),
                behaviour: Behaviour::Valid,
            },
        );
        let now = crate::util::unix_now() as i64;
        sim.add_org_tokens("org-1", (0..tokens).map(|i| sim_token(i, now)).collect());
        sim.add_org_api_keys(
            "org-1",
            vec![OrgApiKey {
                id: "key-1".into(),
                label: "ops".into(),
                created_by_name: "Admin Person".into(),
                created_by_email: "admin@example.com".into(),
                created_at: now - DAY,
                expires_at: Some(now + 5 * DAY),
            }],
        );
        let running = sim.clone().start(([127, 0, 0, 1], 0).into()).await.unwrap();
        (running, sim)
    }

    #[tokio::test]
    async fn lists_every_page_of_both_lists() {
        let (running, sim) = sim_with_org(250).await;
        let run = fetch_with(&running.base_url(), KEY, limits()).await;
        let tokens = run.api_tokens.unwrap();
        assert_eq!(tokens.len(), 250);
        assert_eq!(run.api_keys.unwrap().len(), 1);
        assert_eq!(
            (run.token_pages, run.key_pages),
            (3, 1),
            "3 token pages of 100"
        );
        assert_eq!(sim.org_requests("org-1"), 4);
        assert_eq!(tokens["tok-249"].account_id.as_deref(), Some("acc-4"));
    }

    #[tokio::test]
    async fn a_403_on_api_keys_names_the_missing_scope_and_keeps_the_tokens() {
        let (running, sim) = sim_with_org(150).await;
        sim.legacy_admin_key(KEY);
        let run = fetch_with(&running.base_url(), KEY, limits()).await;
        assert_eq!(run.api_tokens.unwrap().len(), 150);
        let err = run.api_keys.unwrap_err();
        assert_eq!(
            err,
            InventoryError::Refused {
                list: List::ApiKeys,
                page: 1,
                status: 403
            }
        );
        assert_eq!(err.missing_scope(), Some("read:keys:admin"));
        let text = err.to_string();
        assert!(text.starts_with("api-keys page 1: HTTP 403: the admin API key was refused (it lacks the read:keys:admin scope"), "{text}");
        assert!(text.contains("2026 scope split"), "{text}");
    }

    #[tokio::test]
    async fn a_failing_token_page_does_not_hold_back_the_keys_and_pages_are_capped_per_list() {
        let (running, sim) = sim_with_org(250).await;
        sim.fail_org_page("org-1", 2);
        let run = fetch_with(&running.base_url(), KEY, limits()).await;
        assert_eq!(run.retry_after(), None);
        assert!(matches!(
            run.api_tokens,
            Err(InventoryError::Fetch { page: 2, .. })
        ));
        assert_eq!(run.api_keys.unwrap().len(), 1);
        sim.clear_org_failures("org-1");
        let capped = Limits {
            max_pages: 2,
            ..limits()
        };
        let run = fetch_with(&running.base_url(), KEY, capped).await;
        assert_eq!(
            run.api_tokens.unwrap_err(),
            InventoryError::TooManyPages {
                list: List::ApiTokens,
                max: 2
            }
        );
        assert_eq!(run.api_keys.unwrap().len(), 1, "one page: within the cap");
    }

    #[tokio::test]
    async fn a_429_is_waited_out_and_the_same_page_retried() {
        let (running, sim) = sim_with_org(150).await;
        sim.rate_limit_org_request("org-1", 2, Some("1"));
        let started = Instant::now();
        let tokens = fetch(&running.base_url()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(1));
        assert_eq!(tokens.len(), 150);
        assert_eq!(sim.org_requests("org-1"), 4, "page 2 asked twice");
    }

    /// A run of an organization of 10 tokens whose first three requests get a 429 with
    /// `Retry-After: 1`, and the simulator (its request count).
    async fn run_behind_three_429s(limits: Limits) -> (InventoryRun, Simulator) {
        let (running, sim) = sim_with_org(10).await;
        for n in 1..=3 {
            sim.rate_limit_org_request("org-1", n, Some("1"));
        }
        (fetch_with(&running.base_url(), KEY, limits).await, sim)
    }

    #[tokio::test]
    async fn too_many_429s_end_the_run() {
        let (run, _) = run_behind_three_429s(Limits {
            max_rate_limit_retries: 2,
            ..limits()
        })
        .await;
        assert_eq!(run.retry_after(), Some(Duration::from_secs(1)));
        let err = run.api_tokens.unwrap_err();
        assert!(
            matches!(err, InventoryError::RateLimited { page: 1, .. }),
            "{err}"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn a_run_waits_at_most_max_run_wait_in_all() {
        // Three 429s of 1 s each, retries allowed, but 1.5 s of waiting in all: the first
        // wait fits, the second would pass the cap, so the list ends after two requests.
        let (run, sim) = run_behind_three_429s(Limits {
            max_rate_limit_retries: 10,
            max_run_wait: Duration::from_millis(1500),
            ..limits()
        })
        .await;
        let err = run.api_tokens.unwrap_err();
        assert!(
            matches!(err, InventoryError::RateLimited { page: 1, .. }),
            "{err}"
        );
        // The API keys list shares the run's budget: its first answer (the third 429)
        // would need a wait past the cap too.
        assert!(
            matches!(run.api_keys, Err(InventoryError::RateLimited { .. })),
            "{:?}",
            run.api_keys
        );
        assert_eq!(
            sim.org_requests("org-1"),
            3,
            "two for the API tokens, one for the keys: a wait past the cap was taken"
        );
    }

    #[tokio::test]
    async fn a_failing_page_fails_the_run_and_a_wrong_key_is_refused() {
        let (running, sim) = sim_with_org(250).await;
        sim.fail_org_page("org-1", 3);
        let err = fetch(&running.base_url()).await.unwrap_err();
        assert!(
            matches!(
                err,
                InventoryError::Fetch {
                    list: List::ApiTokens,
                    page: 3,
                    ..
                }
            ),
            "{err}"
        );
        let err = fetch_with(&running.base_url(), "ATATT3xWRONG", limits())
            .await
            .api_tokens
            .unwrap_err();
        assert_eq!(err.to_string(), "api-tokens page 1: HTTP 401: the admin API key was refused (it needs the read:tokens:admin scope)");
        assert!(!err.to_string().contains("WRONG"));
    }

    /// A fake API whose `links.next` is whatever the test puts in `next` (`{n}` = page + 1).
    #[derive(Clone)]
    struct Fake {
        next: Arc<String>,
        hits: Arc<AtomicUsize>,
    }

    async fn fake_page(
        State(f): State<Fake>,
        Query(q): Query<BTreeMap<String, String>>,
        headers: HeaderMap,
    ) -> Json<Value> {
        f.hits.fetch_add(1, Ordering::SeqCst);
        assert_eq!(
            headers.get("authorization").unwrap(),
            &format!("Bearer {KEY}")
        );
        let page: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(1);
        let next = f.next.replace("{n}", &(page + 1).to_string());
        Json(json!({"data": [{"id": format!("t{page}")}], "links": {"next": next}}))
    }

    async fn serve_fake(next: &str) -> (String, Arc<AtomicUsize>) {
        let fake = Fake {
            next: Arc::new(next.to_string()),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let hits = fake.hits.clone();
        let app = axum::Router::new().fallback(fake_page).with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, hits)
    }

    #[tokio::test]
    async fn a_malformed_page_fails_without_quoting_the_body() {
        let app = axum::Router::new().fallback(|| async {
            Json(json!({"data": [{"id": "t1", "user": "mia@example.com"}]}))
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let err = fetch(&base).await.unwrap_err();
        assert!(
            matches!(err, InventoryError::BadBody { page: 1, .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("mia"), "{err}");
    }

    #[tokio::test]
    async fn a_bare_cursor_is_followed_until_the_page_cap() {
        let (base, hits) = serve_fake("{n}").await;
        let err = fetch(&base).await.unwrap_err();
        assert_eq!(
            err,
            InventoryError::TooManyPages {
                list: List::ApiTokens,
                max: 20
            }
        );
        // The API keys list hits the same cap on its own: 20 pages each.
        assert_eq!(hits.load(Ordering::SeqCst), 40);
    }

    #[tokio::test]
    async fn a_repeating_cursor_is_detected() {
        let (base, hits) = serve_fake("?pageSize=100&cursor=7").await;
        let err = fetch(&base).await.unwrap_err();
        assert!(
            matches!(err, InventoryError::CursorLoop { page: 2, .. }),
            "{err}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 4, "2 pages of each list");
    }

    #[tokio::test]
    async fn a_next_link_to_another_host_is_not_followed() {
        let (elsewhere, elsewhere_hits) = serve_fake("").await;
        let (base, hits) = serve_fake(&format!("{elsewhere}/admin?cursor={{n}}")).await;
        let err = fetch(&base).await.unwrap_err();
        assert!(
            matches!(err, InventoryError::ForeignNextLink { page: 1, .. }),
            "{err}"
        );
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "the first page of each list"
        );
        assert_eq!(
            elsewhere_hits.load(Ordering::SeqCst),
            0,
            "the key left its host"
        );
    }

    #[test]
    fn a_refusal_names_the_scope_the_key_seems_to_lack() {
        let refused = |list, status| {
            InventoryError::Refused {
                list,
                page: 1,
                status,
            }
            .to_string()
        };
        let tokens_403 = refused(List::ApiTokens, 403);
        assert!(
            tokens_403.ends_with("(it lacks the read:tokens:admin scope)"),
            "{tokens_403}"
        );
        let keys_403 = refused(List::ApiKeys, 403);
        assert!(keys_403.contains("it lacks the read:keys:admin scope: keys created before Atlassian's 2026 scope split"), "{keys_403}");
        let tokens_401 = refused(List::ApiTokens, 401);
        assert!(
            tokens_401.ends_with("(it needs the read:tokens:admin scope)"),
            "{tokens_401}"
        );
    }

    #[test]
    fn a_failed_fetch_passes_on_the_wait_the_server_asked_for() {
        let mut error = ProbeError::new(ErrorReason::Http5xx, "HTTP 503");
        error.retry_after = Some(Duration::from_secs(42));
        let e = InventoryError::Fetch {
            list: List::ApiKeys,
            page: 2,
            error,
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(42)));
        let e = InventoryError::UnexpectedStatus {
            list: List::ApiKeys,
            page: 2,
            status: 418,
        };
        assert_eq!(e.retry_after(), None);
    }
}
