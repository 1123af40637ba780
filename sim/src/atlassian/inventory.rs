//! The Admin API's organization inventory (API Access), which the exporter lists for every
//! configured organization (README.md, "Organization inventory"):
//! `GET {prefix}/admin/api-access/v1/orgs/{orgId}/api-tokens` and `…/api-keys` with a
//! Bearer admin key. As the real API answers: cursor pagination (`links.next` is a relative
//! URL with `cursor=`), `pageSize` (default 20, at most 100), `X-RateLimit-*` headers, and
//! the owner's `user.name`/`user.email` in every entry, so tests can prove the exporter
//! drops them. Tests seed organizations and inject a 429 or a failing page with the
//! `Simulator` methods below (see [`OrgToken`]).
//!
//! Also what changed in 2026 and what large organizations look like:
//! * an admin key created before the 2026 scope split
//!   ([`Simulator::legacy_admin_key`]) lists `api-tokens` but gets a 403 on `api-keys`,
//!   with the gateway's scope-mismatch body;
//! * entries turn `BLOCKED` ([`Simulator::set_org_token_status`]) or vanish
//!   ([`Simulator::remove_org_token`], [`Simulator::remove_org_api_key`]) between runs,
//!   and [`Simulator::revoke_org_token`] does either while the token's credential keeps
//!   authenticating for a while ("revoked, but still works for 20 minutes");
//!   [`Simulator::revoke_org_token_on_listing`] does the same during the organization's
//!   nth listing, so a process that lists on its own schedule (the exporter in
//!   `tests/e2e/alerting_e2e.sh`) is sure to have seen the entry `ALLOWED` first;
//! * [`Simulator::add_generated_org_tokens`] adds any number of tokens that are made up
//!   page by page ([`generated_org_token`]), so 250,000 tokens cost no memory.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::header::RETRY_AFTER;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET};
use crate::faults::server_error;
use crate::respond::{insert_header, json_response};
use crate::{lock, OrgApiKey, OrgToken, Simulator};

/// Rate-limit budget served in `X-RateLimit-*`; requests over it get a 429.
const DEFAULT_ORG_BUDGET: (u64, Duration) = (1000, Duration::from_secs(60));
const DEFAULT_PAGE_SIZE: usize = 20;
const MAX_PAGE_SIZE: usize = 100;
const ORG_API_PREFIX: &str = "/admin/api-access/v1/orgs/";

/// One day in seconds, the unit of [`generated_org_token`]'s dates.
pub const GENERATED_DAY: i64 = 86_400;

/// Generated token `i` of an organization whose generated tokens were added at Unix time
/// `base` (see [`Simulator::add_generated_org_tokens`]): id `gen-0000042`, account
/// `gen-acc-{i % 5000}`, every 50th (`i % 50 == 25`) `BLOCKED`, every 10th
/// (`i % 10 == 9`) without expiry, the others expiring `(i % 400) - 20` days (plus an
/// hour) after `base`, so every bucket from expired to a year ahead is populated.
pub fn generated_org_token(i: usize, base: i64) -> OrgToken {
    let expires_in_days = (i % 400) as i64 - 20;
    OrgToken {
        id: format!("gen-{i:07}"),
        label: format!("generated {i}"),
        status: if i % 50 == 25 { "BLOCKED" } else { "ALLOWED" }.to_string(),
        account_id: format!("gen-acc-{}", i % 5000),
        user_name: format!("Generated Person {i}"),
        user_email: format!("person{i}@generated.example"),
        created_at: base - 30 * GENERATED_DAY,
        expires_at: (i % 10 != 9).then_some(base + expires_in_days * GENERATED_DAY + 3600),
        last_active_at: Some(base - (i % 100) as i64 * 3600),
    }
}

/// How [`Simulator::revoke_org_token`] shows a revocation in the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeAs {
    /// The entry stays, with `status: BLOCKED`.
    Blocked,
    /// The entry is gone from the list.
    Deleted,
}

/// How the request's key is treated by the inventory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Key {
    /// No accepted admin key: 401 on both lists.
    Refused,
    /// A key from before the 2026 scope split: `api-tokens` only, 403 on `api-keys`.
    Legacy,
    Accepted,
}

/// One simulated organization: its two lists and the faults injected into them.
pub(crate) struct SimOrg {
    tokens: Vec<OrgToken>,
    /// Generated tokens listed after `tokens`: (how many, their base time).
    generated: Option<(usize, i64)>,
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
    /// Listings of `api-tokens` answered so far (first-page requests, without `cursor`).
    listings: u64,
    /// Revocations due on a listing ([`Simulator::revoke_org_token_on_listing`]).
    scheduled: Vec<ScheduledRevocation>,
}

/// A revocation that happens during the organization's `on_listing`th listing.
struct ScheduledRevocation {
    on_listing: u64,
    token_id: String,
    how: RevokeAs,
    secret: String,
    still_works_for: Duration,
}

impl SimOrg {
    fn new() -> Self {
        Self {
            tokens: Vec::new(),
            generated: None,
            api_keys: Vec::new(),
            failing_pages: HashSet::new(),
            rate_limited: HashMap::new(),
            budget: DEFAULT_ORG_BUDGET,
            window_started: Instant::now(),
            window_used: 0,
            requests: Vec::new(),
            throttled: 0,
            listings: 0,
            scheduled: Vec::new(),
        }
    }

    /// A listing of `api-tokens` begins: counts it and applies the revocations due on it
    /// (before the page is served, so this listing already shows them).
    fn begin_listing(&mut self, sim: &Simulator) {
        self.listings += 1;
        let listings = self.listings;
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|r| r.on_listing <= listings);
        self.scheduled = later;
        for r in due {
            match r.how {
                RevokeAs::Blocked => self
                    .tokens
                    .iter_mut()
                    .filter(|t| t.id == r.token_id)
                    .for_each(|t| t.status = "BLOCKED".to_string()),
                RevokeAs::Deleted => self.tokens.retain(|t| t.id != r.token_id),
            }
            sim.dies_after(&r.secret, r.still_works_for);
        }
    }
}

/// Which inventory list a request asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum OrgList {
    ApiTokens,
    ApiKeys,
}

impl Simulator {
    fn with_org<R>(&self, org_id: &str, f: impl FnOnce(&mut SimOrg) -> R) -> R {
        let mut orgs = lock(&self.inner.orgs);
        f(orgs.entry(org_id.to_string()).or_insert_with(SimOrg::new))
    }

    /// Adds user API tokens to an organization (created on first use). An admin key
    /// registered with [`Simulator::add_credential`] (behaviour `Valid`) may list them.
    pub fn add_org_tokens(&self, org_id: &str, tokens: Vec<OrgToken>) {
        self.with_org(org_id, |o| o.tokens.extend(tokens));
    }

    /// Adds `count` generated user API tokens (listed after the explicit ones), made up page
    /// by page from their index ([`generated_org_token`] with `base` = now), so that an
    /// organization of 250,000 tokens costs no memory. Replaces earlier generated ones.
    pub fn add_generated_org_tokens(&self, org_id: &str, count: usize) -> i64 {
        let base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        self.with_org(org_id, |o| o.generated = Some((count, base)));
        base
    }

    /// Sets a user API token's `status` (`ALLOWED`, `BLOCKED`, …); true if it exists.
    pub fn set_org_token_status(&self, org_id: &str, token_id: &str, status: &str) -> bool {
        self.with_org(org_id, |o| {
            o.tokens
                .iter_mut()
                .find(|t| t.id == token_id)
                .map(|t| t.status = status.to_string())
                .is_some()
        })
    }

    /// An admin revokes a user API token whose secret is `secret`: the inventory shows it
    /// at once (`BLOCKED` or gone), but the credential keeps authenticating for
    /// `still_works_for` before it is [`Behaviour::Dead`](crate::Behaviour::Dead), as
    /// Atlassian's revocations take 10–20 minutes to propagate. True if the entry existed.
    pub fn revoke_org_token(
        &self,
        org_id: &str,
        token_id: &str,
        how: RevokeAs,
        secret: &str,
        still_works_for: Duration,
    ) -> bool {
        let found = match how {
            RevokeAs::Blocked => self.set_org_token_status(org_id, token_id, "BLOCKED"),
            RevokeAs::Deleted => self.remove_org_token(org_id, token_id),
        };
        self.dies_after(secret, still_works_for);
        found
    }

    /// [`Simulator::revoke_org_token`], done by the admin during the organization's `nth`
    /// listing of `api-tokens` (1-based, counting first-page requests, i.e. those without
    /// `cursor`, from the organization's creation on; a listing that is due already or
    /// overdue is the next one): the listings before show the entry as it is, that listing
    /// and the later ones show it `BLOCKED` or gone, and the credential `secret` keeps
    /// authenticating for `still_works_for` from that moment on. A test (or
    /// `apitoken-sim --scenario alerts-2026`) thus knows the exporter saw the entry
    /// `ALLOWED` `nth - 1` times first, whatever the exporter's timing.
    pub fn revoke_org_token_on_listing(
        &self,
        org_id: &str,
        token_id: &str,
        how: RevokeAs,
        nth: u64,
        secret: &str,
        still_works_for: Duration,
    ) {
        self.with_org(org_id, |o| {
            o.scheduled.push(ScheduledRevocation {
                on_listing: nth,
                token_id: token_id.to_string(),
                how,
                secret: secret.to_string(),
                still_works_for,
            });
        });
    }

    /// Listings of the organization's `api-tokens` so far (first-page requests answered
    /// past the rate limit, see [`Simulator::revoke_org_token_on_listing`]).
    pub fn org_listings(&self, org_id: &str) -> u64 {
        lock(&self.inner.orgs).get(org_id).map_or(0, |o| o.listings)
    }

    /// Deletes an admin API key from the list; true if it existed.
    pub fn remove_org_api_key(&self, org_id: &str, key_id: &str) -> bool {
        self.with_org(org_id, |o| {
            let before = o.api_keys.len();
            o.api_keys.retain(|k| k.id != key_id);
            o.api_keys.len() != before
        })
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
}

/// `{prefix}/admin/api-access/v1/orgs/{orgId}/api-tokens|api-keys` -> (prefix, orgId, list).
pub(crate) fn route(path: &str) -> Option<(&str, &str, OrgList)> {
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

/// One page of a list, for a request whose admin key is treated as `key`.
pub(crate) fn answer(
    sim: &Simulator,
    prefix: &str,
    org_id: &str,
    list: OrgList,
    query: Option<&str>,
    key: Key,
) -> Response {
    match (key, list) {
        (Key::Refused, _) => {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"code": 401, "message": "Unauthorized"}),
            )
        }
        // What the API gateway answers a key that lacks the scope an endpoint needs.
        (Key::Legacy, OrgList::ApiKeys) => {
            return json_response(
                StatusCode::FORBIDDEN,
                json!({"code": 403, "message": "Unauthorized; scope does not match"}),
            )
        }
        _ => {}
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
    let mut first_page = true;
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "pageSize" => match v.parse::<usize>() {
                Ok(n) if n >= 1 => page_size = n.min(MAX_PAGE_SIZE),
                _ => return bad_request("pageSize must be a positive number"),
            },
            "cursor" => match decode_cursor(&v) {
                Some(o) => (offset, first_page) = (o, false),
                None => return bad_request("invalid cursor"),
            },
            _ => {}
        }
    }
    if list == OrgList::ApiTokens && first_page {
        org.begin_listing(sim);
    }
    let page = offset / page_size + 1;
    if list == OrgList::ApiTokens && org.failing_pages.contains(&page) {
        let mut resp = server_error(500);
        rate_headers(&mut resp);
        return resp;
    }
    let (total, data): (usize, Vec<Value>) = match list {
        OrgList::ApiTokens => {
            let (generated, base) = org.generated.unwrap_or((0, 0));
            let explicit = org.tokens.len();
            let total = explicit + generated;
            let data = (offset..total.min(offset.saturating_add(page_size)))
                .map(|i| match org.tokens.get(i) {
                    Some(t) => org_token_json(t, org_id),
                    None => org_token_json(&generated_org_token(i - explicit, base), org_id),
                })
                .collect();
            (total, data)
        }
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
    use crate::test_support::*;
    use crate::{Behaviour, OrgApiKey};

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
    async fn a_key_from_before_the_scope_split_lists_tokens_but_not_keys() {
        let sim = Simulator::new();
        sim.add_credential("oldkey", cred(Behaviour::Valid));
        sim.legacy_admin_key("oldkey");
        sim.add_org_tokens(
            "o1",
            vec![OrgToken {
                id: "t1".into(),
                label: "l".into(),
                status: "ALLOWED".into(),
                account_id: "a".into(),
                user_name: "Alice Example".into(),
                user_email: EMAIL.into(),
                created_at: 0,
                expires_at: None,
                last_active_at: None,
            }],
        );
        let running = start(&sim).await;
        let base = running.base_url();
        let r = bearer(
            &format!("{base}/admin/api-access/v1/orgs/o1/api-tokens"),
            "oldkey",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["data"][0]["id"], "t1");
        let r = bearer(
            &format!("{base}/admin/api-access/v1/orgs/o1/api-keys"),
            "oldkey",
        )
        .await;
        assert_eq!(r.status, 403);
        assert_eq!(r.json()["message"], "Unauthorized; scope does not match");
    }

    #[tokio::test]
    async fn generated_tokens_are_paged_after_the_explicit_ones() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_org_tokens("o1", vec![generated_org_token(0, 0)]);
        let base_time = sim.add_generated_org_tokens("o1", 250_000);
        let running = start(&sim).await;
        let list = format!(
            "{}/admin/api-access/v1/orgs/o1/api-tokens",
            running.base_url()
        );
        // The last page: offset 249,901 of 250,001 entries.
        let url = format!("{list}?pageSize=100&cursor={}", encode_cursor(249_901));
        let v = bearer(&url, "adminkey").await.json();
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 100);
        assert_eq!(data[0]["id"], "gen-0249900");
        assert_eq!(data[99]["id"], "gen-0249999");
        assert_eq!(v["links"]["next"], Value::Null);
        assert_eq!(data[25]["status"], "BLOCKED", "i % 50 == 25");
        assert_eq!(data[99]["status"], "ALLOWED");
        assert_eq!(data[99]["expiresAt"], Value::Null, "i % 10 == 9");
        let t = generated_org_token(249_900, base_time);
        assert_eq!(data[0]["expiresAt"], rfc3339(t.expires_at.unwrap()));
        assert_eq!(data[0]["user"]["id"], "gen-acc-4900");
    }

    #[tokio::test]
    async fn a_revocation_on_the_nth_listing_shows_from_that_listing_on() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_credential("blocked", cred(Behaviour::Valid));
        sim.add_credential("deleted", cred(Behaviour::Valid));
        sim.add_org_tokens("o1", (1..=3).map(|i| generated_org_token(i, 0)).collect());
        let ids = ["gen-0000001", "gen-0000002"];
        sim.revoke_org_token_on_listing(
            "o1",
            ids[0],
            RevokeAs::Blocked,
            3,
            "blocked",
            Duration::from_millis(300),
        );
        sim.revoke_org_token_on_listing(
            "o1",
            ids[1],
            RevokeAs::Deleted,
            3,
            "deleted",
            Duration::ZERO,
        );
        let running = start(&sim).await;
        let base = running.base_url();
        let list = format!("{base}/admin/api-access/v1/orgs/o1/api-tokens?pageSize=2");
        let myself = format!("{base}/rest/api/3/myself");
        // A whole listing (following `next`): the entries' ids and statuses.
        async fn listing_of(base: &str, list: &str) -> Vec<String> {
            let mut seen = Vec::new();
            let mut url = list.to_string();
            loop {
                let v = bearer(&url, "adminkey").await.json();
                for t in v["data"].as_array().unwrap() {
                    let (id, status) = (t["id"].as_str().unwrap(), t["status"].as_str().unwrap());
                    seen.push(format!("{id}={status}"));
                }
                match v["links"]["next"].as_str() {
                    Some(next) => url = format!("{base}{next}"),
                    None => return seen,
                }
            }
        }
        let listing = || listing_of(&base, &list);
        let before = [
            "gen-0000001=ALLOWED",
            "gen-0000002=ALLOWED",
            "gen-0000003=ALLOWED",
        ];
        for n in 1..=2 {
            assert_eq!(listing().await, before, "listing {n}");
            assert_eq!(sim.org_listings("o1"), n, "a next page is no listing");
        }
        assert_eq!(
            basic(&myself, EMAIL, "deleted").await.status,
            200,
            "not yet"
        );
        let after = ["gen-0000001=BLOCKED", "gen-0000003=ALLOWED"];
        assert_eq!(listing().await, after, "listing 3");
        assert_eq!(
            basic(&myself, EMAIL, "blocked").await.status,
            200,
            "still works"
        );
        assert_eq!(
            basic(&myself, EMAIL, "deleted").await.status,
            401,
            "died at once"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            basic(&myself, EMAIL, "blocked").await.status,
            401,
            "now dead"
        );
        assert_eq!(listing().await, after, "listing 4");
        // Scheduled on a listing that is past: the next one.
        sim.revoke_org_token_on_listing(
            "o1",
            "gen-0000003",
            RevokeAs::Blocked,
            1,
            "x",
            Duration::ZERO,
        );
        assert_eq!(
            listing().await,
            ["gen-0000001=BLOCKED", "gen-0000003=BLOCKED"]
        );
        assert_eq!(sim.org_listings("o1"), 5);
    }

    #[tokio::test]
    async fn a_revoked_token_turns_blocked_at_once_and_stops_working_later() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_credential("usertoken", cred(Behaviour::Valid));
        sim.add_org_tokens(
            "o1",
            vec![generated_org_token(1, 0), generated_org_token(2, 0)],
        );
        let running = start(&sim).await;
        let base = running.base_url();
        let list = format!("{base}/admin/api-access/v1/orgs/o1/api-tokens");
        let myself = format!("{base}/rest/api/3/myself");
        assert!(sim.revoke_org_token(
            "o1",
            "gen-0000001",
            RevokeAs::Blocked,
            "usertoken",
            Duration::from_millis(300)
        ));
        let v = bearer(&list, "adminkey").await.json();
        assert_eq!(v["data"][0]["status"], "BLOCKED");
        assert_eq!(
            basic(&myself, EMAIL, "usertoken").await.status,
            200,
            "still works"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            basic(&myself, EMAIL, "usertoken").await.status,
            401,
            "now dead"
        );

        assert!(sim.revoke_org_token(
            "o1",
            "gen-0000002",
            RevokeAs::Deleted,
            "usertoken",
            Duration::ZERO
        ));
        let v = bearer(&list, "adminkey").await.json();
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        assert!(!sim.set_org_token_status("o1", "gen-0000002", "ALLOWED"));
        assert!(sim.set_behaviour("usertoken", Behaviour::Valid));
        assert_eq!(
            basic(&myself, EMAIL, "usertoken").await.status,
            200,
            "revived"
        );
        assert!(!sim.remove_org_api_key("o1", "none"));
    }
}
