//! Fault injection: what a credential's [`Behaviour`] other than `Valid`/`Dead` forces on
//! every request that carries it, whatever the endpoint — a 429 with `Retry-After` and
//! Atlassian's `X-RateLimit-*` headers, a 5xx, an HTML page, a redirect, a body too large
//! to read, a slow answer, or a 200 without the account id. They exist so that the
//! exporter's tests can prove each upstream failure gives an inconclusive `error` with the
//! right reason instead of a false "invalid" (README.md, "How tokens are classified").
//!
//! Also the redirect target: it answers like a valid credential and counts the
//! `Authorization` headers that reach it, so a test can prove no redirect is followed.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::atlassian::{
    X_AACCOUNTID, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET, X_SERAPH_LOGINREASON,
};
use crate::respond::{base_url_from, insert_header, json_response};
use crate::{lock, Behaviour, Credential, Endpoint, Incoming, Simulator};

const REDIRECT_TARGET: &str = "/redirect-target";
const RATELIMIT_REASON: HeaderName = HeaderName::from_static("ratelimit-reason");
const HUGE_BODY_PREFIX: &[u8] = br#"{"accountId":"x","pad":""#;
const HUGE_BODY_CHUNK: usize = 64 * 1024;

/// The answer the credential's behaviour forces, if any; `endpoint` is the endpoint the
/// request asks for, whose vendor may answer the fault its own way. A `Slow` credential
/// sleeps here, then is answered as `Valid`.
pub(crate) async fn forced_answer(
    cred: &Credential,
    endpoint: Option<Endpoint>,
    req: Incoming<'_>,
) -> Option<Response> {
    let behaviour = &cred.behaviour;
    match behaviour {
        Behaviour::Valid | Behaviour::Dead | Behaviour::Inactive { .. } => return None,
        Behaviour::Slow { delay } => {
            tokio::time::sleep(*delay).await;
            return None;
        }
        _ => {}
    }
    if let Some(resp) = endpoint.and_then(|ep| ep.fault(req, behaviour)) {
        return Some(resp);
    }
    match behaviour {
        Behaviour::RateLimited { retry_after } => Some(rate_limited(retry_after.as_deref())),
        Behaviour::ServerError { status } => Some(server_error(*status)),
        Behaviour::NonJson => Some(non_json()),
        Behaviour::Redirect { location } => Some(redirect(location)),
        Behaviour::HugeBody { bytes } => Some(huge_body(*bytes)),
        Behaviour::Forbidden => Some(json_response(
            StatusCode::FORBIDDEN,
            json!({"message": "Forbidden (simulator)"}),
        )),
        // Only an endpoint knows its account id field(s); unrouted paths answer normally.
        Behaviour::NoAccountId
        | Behaviour::Valid
        | Behaviour::Dead
        | Behaviour::Inactive { .. }
        | Behaviour::Slow { .. } => None,
    }
}

/// `/redirect-target` or a path below it.
pub(crate) fn is_redirect_target(path: &str) -> bool {
    path == REDIRECT_TARGET || path.starts_with("/redirect-target/")
}

pub(crate) fn redirect_target(sim: &Simulator, headers: &HeaderMap) -> Response {
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

pub(crate) fn server_error(status: u16) -> Response {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::Value;

    use super::*;
    use crate::test_support::*;

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
    async fn forbidden_is_a_plain_403_and_inactive_is_dead_on_atlassian() {
        let (_r, base) = with("tok", Behaviour::Forbidden).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 403);
        assert!(r.header("x-seraph-loginreason").is_none());
        let r = bearer(&format!("{base}/admin/v1/orgs"), "tok").await;
        assert_eq!(r.status, 403);
        let (_r, base) = with("tok", Behaviour::Inactive { revoked: true }).await;
        assert_jira_401(&basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await);
        assert_eq!(
            bearer(&format!("{base}/admin/v1/orgs"), "tok").await.status,
            401
        );
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
}

/// An endpoint that fails on every nth request (e.g. Jira's anonymous side probe under
/// Atlassian's API-token rate limits), whatever the credential.
pub(crate) struct Flaky {
    suffix: String,
    every: u64,
    status: u16,
    retry_after: Option<String>,
    seen: u64,
}

impl Flaky {
    pub(crate) fn new(suffix: &str, every: u64, status: u16, retry_after: Option<&str>) -> Self {
        Self {
            suffix: suffix.to_string(),
            every: every.max(1),
            status,
            retry_after: retry_after.map(str::to_string),
            seen: 0,
        }
    }
}

/// The failure a [`Flaky`] endpoint owes this request, if any.
pub(crate) fn flaky_answer(sim: &Simulator, path: &str) -> Option<Response> {
    let mut flaky = lock(&sim.inner.flaky);
    let f = flaky.iter_mut().find(|f| path.ends_with(&f.suffix))?;
    f.seen += 1;
    if f.seen % f.every != 0 {
        return None;
    }
    Some(match f.status {
        429 => rate_limited(f.retry_after.as_deref()),
        300..=399 => redirect("/login"),
        status => server_error(status),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod flaky_tests {
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    #[tokio::test]
    async fn a_flaky_endpoint_fails_every_nth_request_only() {
        let sim = Simulator::new();
        sim.add_credential("dead", cred(Behaviour::Dead));
        sim.flaky_endpoint("/rest/api/3/project/search", 2, 429, Some("7"));
        let running = start(&sim).await;
        let base = running.base_url();
        let search = format!("{base}/rest/api/3/project/search");
        let first = basic(&search, EMAIL, "dead").await;
        assert_anonymous_project_page(&first);
        let second = basic(&search, EMAIL, "dead").await;
        assert_eq!(second.status, 429);
        assert_eq!(second.header("retry-after").as_deref(), Some("7"));
        assert_anonymous_project_page(&basic(&search, EMAIL, "dead").await);
        // Other endpoints are untouched.
        for _ in 0..3 {
            assert_jira_401(&basic(&format!("{base}/rest/api/3/myself"), EMAIL, "dead").await);
        }
    }
}
