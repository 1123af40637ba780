//! GitLab's `GET {prefix}/api/v4/personal_access_tokens/self`: the token that calls it
//! describes itself (personal, project and group access tokens alike), whatever its
//! scopes. The token is read from `PRIVATE-TOKEN` or `Authorization: Bearer`. Expired,
//! revoked and unknown tokens get 401; an [`Behaviour::Inactive`] one a 200 with
//! `active: false`. Rate limits are a plain-text 429 with GitLab's `RateLimit-*` headers
//! (`RateLimit-Reset` in epoch seconds) and `Retry-After` when the behaviour names one.

use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::auth::{token_login, TokenLogin};
use crate::respond::{insert_header, json_response, unix_now, utc};
use crate::{Behaviour, Credential, Incoming};

pub(crate) const SELF: &str = "/api/v4/personal_access_tokens/self";
/// Seconds until the simulated rate limit resets.
pub(crate) const RESET_IN: i64 = 60;

const RATELIMIT_NAME: HeaderName = HeaderName::from_static("ratelimit-name");
const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_OBSERVED: HeaderName = HeaderName::from_static("ratelimit-observed");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The site prefix of a `…/personal_access_tokens/self` path.
pub(crate) fn route(path: &str) -> Option<&str> {
    path.strip_suffix(SELF)
}

pub(crate) fn answer(req: Incoming<'_>) -> Response {
    match token_login(req.auth, req.cred, true) {
        TokenLogin::Accepted(cred) => json_response(StatusCode::OK, token(req, cred, true, false)),
        TokenLogin::Inactive { cred, revoked } => {
            json_response(StatusCode::OK, token(req, cred, false, revoked))
        }
        TokenLogin::Refused => json_response(
            StatusCode::UNAUTHORIZED,
            json!({"message": "401 Unauthorized"}),
        ),
    }
}

/// GitLab's own answers to the fault behaviours it has them for.
pub(crate) fn fault(req: Incoming<'_>, behaviour: &Behaviour) -> Option<Response> {
    Some(match behaviour {
        Behaviour::RateLimited { retry_after } => rate_limited(retry_after.as_deref()),
        Behaviour::Forbidden => {
            json_response(StatusCode::FORBIDDEN, json!({"message": "403 Forbidden"}))
        }
        Behaviour::NoAccountId => {
            let mut body = token(req, req.cred?, true, false);
            body.as_object_mut()?.remove("user_id");
            json_response(StatusCode::OK, body)
        }
        _ => return None,
    })
}

/// The token's description: `TokenDetails` where registered, else a token created when
/// the simulator started, with the `api` scope, never used, never expiring.
fn token(req: Incoming<'_>, cred: &Credential, active: bool, revoked: bool) -> Value {
    let details = req.details.cloned().unwrap_or_default();
    let iso = |t: i64| utc(t, "%Y-%m-%dT%H:%M:%S%.3fZ");
    let user_id = cred
        .account_id
        .parse::<u64>()
        .map_or_else(|_| json!(cred.account_id), |n| json!(n));
    json!({
        "id": 1,
        "name": cred.username,
        "description": "",
        "revoked": revoked,
        "created_at": iso(details.created_at.unwrap_or(req.started)),
        "scopes": details.scopes.unwrap_or_else(|| vec!["api".to_string()]),
        "user_id": user_id,
        "last_used_at": details.last_used_at.map(iso),
        "active": active,
        "expires_at": details.expires_at.map(|t| utc(t, "%Y-%m-%d")),
    })
}

fn rate_limited(retry_after: Option<&str>) -> Response {
    let mut resp = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    insert_header(&mut resp, RATELIMIT_NAME, "throttle_authenticated_api");
    insert_header(&mut resp, RATELIMIT_LIMIT, "2000");
    insert_header(&mut resp, RATELIMIT_OBSERVED, "2001");
    insert_header(&mut resp, RATELIMIT_REMAINING, "0");
    insert_header(
        &mut resp,
        RATELIMIT_RESET,
        &(unix_now() + RESET_IN).to_string(),
    );
    if let Some(ra) = retry_after {
        insert_header(&mut resp, RETRY_AFTER, ra);
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::TokenDetails;

    async fn private_token(url: &str, secret: &str) -> Resp {
        send(client().get(url).header("PRIVATE-TOKEN", secret)).await
    }

    #[tokio::test]
    async fn a_token_describes_itself_by_private_token_or_bearer() {
        let details = TokenDetails {
            expires_at: Some(1_775_779_200),
            created_at: Some(1_768_033_800),
            last_used_at: Some(1_769_947_200),
            scopes: Some(vec!["read_api".into()]),
        };
        let (_r, base) =
            with_tokens("1234", &[("glpat-tok", Behaviour::Valid, Some(details))]).await;
        let url = format!("{base}/gitlab/api/v4/personal_access_tokens/self");
        for r in [
            private_token(&url, "glpat-tok").await,
            bearer(&url, "glpat-tok").await,
        ] {
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.json();
            assert_eq!(v["active"], true);
            assert_eq!(v["revoked"], false);
            assert_eq!(v["user_id"], 1234);
            assert_eq!(v["expires_at"], "2026-04-10");
            assert_eq!(v["created_at"], "2026-01-10T08:30:00.000Z");
            assert_eq!(v["last_used_at"], "2026-02-01T12:00:00.000Z");
            assert_eq!(v["scopes"], json!(["read_api"]));
        }
        assert_eq!(basic(&url, EMAIL, "glpat-tok").await.status, 401);
    }

    #[tokio::test]
    async fn without_details_a_token_never_expires_and_was_never_used() {
        let (_r, base) = with_tokens("1234", &[("glpat-tok", Behaviour::Valid, None)]).await;
        let r = private_token(&format!("{base}{SELF}"), "glpat-tok").await;
        let v = r.json();
        assert!(
            v["expires_at"].is_null() && v["last_used_at"].is_null(),
            "{v}"
        );
        assert_eq!(v["scopes"], json!(["api"]));
        assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn inactive_tokens_say_so_and_dead_ones_get_401() {
        let (_r, base) = with_tokens(
            "1234",
            &[
                (
                    "glpat-expired",
                    Behaviour::Inactive { revoked: false },
                    None,
                ),
                ("glpat-revoked", Behaviour::Inactive { revoked: true }, None),
                ("glpat-dead", Behaviour::Dead, None),
            ],
        )
        .await;
        let url = format!("{base}{SELF}");
        let v = private_token(&url, "glpat-expired").await.json();
        assert_eq!(
            (v["active"].as_bool(), v["revoked"].as_bool()),
            (Some(false), Some(false))
        );
        let v = private_token(&url, "glpat-revoked").await.json();
        assert_eq!(
            (v["active"].as_bool(), v["revoked"].as_bool()),
            (Some(false), Some(true))
        );
        for secret in ["glpat-dead", "glpat-unknown"] {
            let r = private_token(&url, secret).await;
            assert_eq!(r.status, 401, "{secret}");
            assert_eq!(r.json()["message"], "401 Unauthorized");
        }
        assert_eq!(anon(&url).await.status, 401);
    }

    #[tokio::test]
    async fn rate_limits_forbidden_and_no_account_id() {
        let (_r, base) = with_tokens(
            "1234",
            &[
                (
                    "glpat-rl",
                    Behaviour::RateLimited { retry_after: None },
                    None,
                ),
                (
                    "glpat-rl-ra",
                    Behaviour::RateLimited {
                        retry_after: Some("30".into()),
                    },
                    None,
                ),
                ("glpat-forbidden", Behaviour::Forbidden, None),
                ("glpat-noid", Behaviour::NoAccountId, None),
            ],
        )
        .await;
        let url = format!("{base}{SELF}");
        let r = private_token(&url, "glpat-rl").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.body, "Retry later\n");
        assert!(r.header("retry-after").is_none());
        let reset: i64 = r.header("ratelimit-reset").unwrap().parse().unwrap();
        assert!((RESET_IN - 5..=RESET_IN).contains(&(reset - unix_now())));
        let r = private_token(&url, "glpat-rl-ra").await;
        assert_eq!(r.header("retry-after").as_deref(), Some("30"));
        let r = private_token(&url, "glpat-forbidden").await;
        assert_eq!(
            (r.status, r.json()["message"].as_str()),
            (403, Some("403 Forbidden"))
        );
        let r = private_token(&url, "glpat-noid").await;
        assert_eq!(r.status, 200);
        assert!(r.json().get("user_id").is_none());
        assert_eq!(r.json()["active"], true);
    }
}
