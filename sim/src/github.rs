//! GitHub's `GET {prefix}/user`, the probe of a GitHub token: github.com at the root, a
//! GitHub Enterprise Server under `/api/v3`, any other prefix is a 404. A token is sent as
//! `Authorization: Bearer`; requests without a `User-Agent` are refused with 403, as
//! api.github.com does.
//!
//! Every answer to a token with an expiry carries `GitHub-Authentication-Token-Expiration`
//! (`YYYY-MM-DD HH:MM:SS UTC`); a classic token's answers carry `x-oauth-scopes`, a
//! fine-grained token's none ([`TokenDetails::scopes`]). Rate limits come both ways: the
//! primary limit is a 403 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (epoch
//! seconds), a secondary limit a 429 with `retry-after`.

use axum::http::header::{HeaderName, RETRY_AFTER, USER_AGENT};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use crate::auth::{token_login, TokenLogin};
use crate::respond::{insert_header, json_response, unix_now, utc};
use crate::{Behaviour, Credential, Incoming, TokenDetails};

pub(crate) const USER: &str = "/user";
/// Where a GitHub Enterprise Server serves its REST API.
pub(crate) const GHES_PREFIX: &str = "/api/v3";
/// Seconds until the simulated primary rate limit resets.
pub(crate) const RESET_IN: i64 = 900;

const DOCS: &str = "https://docs.github.com/rest";
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const X_RATELIMIT_USED: HeaderName = HeaderName::from_static("x-ratelimit-used");
const X_RATELIMIT_RESOURCE: HeaderName = HeaderName::from_static("x-ratelimit-resource");
const X_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-oauth-scopes");
const X_ACCEPTED_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-accepted-oauth-scopes");
const EXPIRATION: HeaderName = HeaderName::from_static("github-authentication-token-expiration");
const X_GITHUB_ENTERPRISE_VERSION: HeaderName =
    HeaderName::from_static("x-github-enterprise-version");

/// The site prefix of a `/user` path.
pub(crate) fn route(path: &str) -> Option<&str> {
    path.strip_suffix(USER)
}

pub(crate) fn answer(req: Incoming<'_>) -> Response {
    if !(req.prefix.is_empty() || req.prefix.ends_with(GHES_PREFIX)) {
        return answer_with(req, StatusCode::NOT_FOUND, message("Not Found"), 4999);
    }
    if !req.headers.contains_key(USER_AGENT) {
        return answer_with(
            req,
            StatusCode::FORBIDDEN,
            message("Request forbidden by administrative rules. Please make sure your request has a User-Agent header"),
            4999,
        );
    }
    match token_login(req.auth, req.cred, false) {
        TokenLogin::Accepted(cred) => user(req, cred, true),
        TokenLogin::Inactive { .. } | TokenLogin::Refused => answer_with(
            req,
            StatusCode::UNAUTHORIZED,
            message("Bad credentials"),
            59,
        ),
    }
}

/// GitHub's own answers to the fault behaviours it has them for.
pub(crate) fn fault(req: Incoming<'_>, behaviour: &Behaviour) -> Option<Response> {
    Some(match behaviour {
        Behaviour::RateLimited { retry_after: None } => answer_with(
            req,
            StatusCode::FORBIDDEN,
            message("API rate limit exceeded for user. If you reach out to GitHub Support for help, please include the request ID."),
            0,
        ),
        Behaviour::RateLimited {
            retry_after: Some(ra),
        } => {
            let mut resp = answer_with(
                req,
                StatusCode::TOO_MANY_REQUESTS,
                message("You have exceeded a secondary rate limit. Please wait a few minutes before you try again."),
                4990,
            );
            insert_header(&mut resp, RETRY_AFTER, ra);
            resp
        }
        Behaviour::Forbidden => answer_with(
            req,
            StatusCode::FORBIDDEN,
            message("Resource not accessible by personal access token"),
            4999,
        ),
        Behaviour::NoAccountId => user(req, req.cred?, false),
        _ => return None,
    })
}

fn message(text: &str) -> Value {
    json!({"message": text, "documentation_url": DOCS})
}

/// The authenticated user, with the token's headers (and its numeric `id` unless not).
fn user(req: Incoming<'_>, cred: &Credential, with_id: bool) -> Response {
    // GitHub ids are numbers; an account id that is none is served as the string it is.
    let id = cred
        .account_id
        .parse::<u64>()
        .map_or_else(|_| json!(cred.account_id), |n| json!(n));
    let mut body = json!({
        "login": cred.username,
        "type": "User",
        "site_admin": false,
        "name": cred.username,
        "email": null,
        "url": format!("{}/users/{}", req.base, cred.username),
    });
    if with_id {
        body["id"] = id;
    }
    let mut resp = answer_with(req, StatusCode::OK, body, 4999);
    if let Some(TokenDetails {
        expires_at, scopes, ..
    }) = req.details
    {
        if let Some(t) = expires_at {
            insert_header(&mut resp, EXPIRATION, &utc(*t, "%Y-%m-%d %H:%M:%S UTC"));
        }
        if let Some(scopes) = scopes {
            insert_header(&mut resp, X_OAUTH_SCOPES, &scopes.join(", "));
            insert_header(&mut resp, X_ACCEPTED_OAUTH_SCOPES, "");
        }
    }
    resp
}

/// A JSON answer with GitHub's rate-limit headers (`remaining` requests left).
fn answer_with(req: Incoming<'_>, status: StatusCode, body: Value, remaining: u32) -> Response {
    let mut resp = json_response(status, body);
    insert_header(&mut resp, X_RATELIMIT_LIMIT, "5000");
    insert_header(&mut resp, X_RATELIMIT_REMAINING, &remaining.to_string());
    insert_header(
        &mut resp,
        X_RATELIMIT_RESET,
        &(unix_now() + RESET_IN).to_string(),
    );
    insert_header(&mut resp, X_RATELIMIT_USED, &(5000 - remaining).to_string());
    insert_header(&mut resp, X_RATELIMIT_RESOURCE, "core");
    if req.prefix.ends_with(GHES_PREFIX) {
        insert_header(&mut resp, X_GITHUB_ENTERPRISE_VERSION, "3.15.0");
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::*;

    const ID: &str = "583231";

    /// A GitHub request: Bearer, with a User-Agent.
    async fn get(url: &str, secret: &str) -> Resp {
        send(
            client()
                .get(url)
                .bearer_auth(secret)
                .header("user-agent", "t/1"),
        )
        .await
    }

    #[tokio::test]
    async fn a_classic_token_with_an_expiry_reports_both_in_headers() {
        let details = TokenDetails {
            expires_at: Some(1_772_415_981),
            scopes: Some(vec!["repo".into(), "read:org".into()]),
            ..TokenDetails::default()
        };
        let (_r, base) = with_tokens(ID, &[("ghp_tok", Behaviour::Valid, Some(details))]).await;
        let r = get(&format!("{base}/user"), "ghp_tok").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["id"], 583_231);
        assert_eq!(r.json()["login"], crate::test_support::USER);
        assert_eq!(
            r.header("github-authentication-token-expiration")
                .as_deref(),
            Some("2026-03-02 01:46:21 UTC")
        );
        assert_eq!(
            r.header("x-oauth-scopes").as_deref(),
            Some("repo, read:org")
        );
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("4999"));
        assert!(r.header("x-github-enterprise-version").is_none());
    }

    #[tokio::test]
    async fn a_fine_grained_token_without_expiry_sends_neither_header() {
        let (_r, base) = with_tokens(ID, &[("github_pat_tok", Behaviour::Valid, None)]).await;
        let r = get(&format!("{base}/user"), "github_pat_tok").await;
        assert_eq!(r.status, 200);
        assert!(r.header("github-authentication-token-expiration").is_none());
        assert!(r.header("x-oauth-scopes").is_none());
    }

    #[tokio::test]
    async fn enterprise_server_answers_under_api_v3_and_nowhere_else() {
        let (_r, base) = with_tokens(ID, &[("ghp_tok", Behaviour::Valid, None)]).await;
        let r = get(&format!("{base}/api/v3/user"), "ghp_tok").await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("x-github-enterprise-version").as_deref(),
            Some("3.15.0")
        );
        let r = get(&format!("{base}/ghes/api/v3/user"), "ghp_tok").await;
        assert_eq!(r.status, 200);
        let r = get(&format!("{base}/api/v4/user"), "ghp_tok").await;
        assert_eq!(r.status, 404);
        // Bitbucket's /2.0/user is still Bitbucket's.
        let r = basic(&format!("{base}/2.0/user"), EMAIL, "ghp_tok").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["type"], "user");
    }

    #[tokio::test]
    async fn refusals_are_401_and_no_user_agent_is_403() {
        let (_r, base) = with_tokens(
            ID,
            &[
                ("ghp_ok", Behaviour::Valid, None),
                ("ghp_dead", Behaviour::Dead, None),
                ("ghp_inactive", Behaviour::Inactive { revoked: true }, None),
            ],
        )
        .await;
        let url = format!("{base}/user");
        for secret in ["ghp_dead", "ghp_inactive", "ghp_unknown"] {
            let r = get(&url, secret).await;
            assert_eq!(r.status, 401, "{secret}");
            assert_eq!(r.json()["message"], "Bad credentials");
        }
        let r = send(
            client()
                .get(&url)
                .header("private-token", "ghp_ok")
                .header("user-agent", "t"),
        )
        .await;
        assert_eq!(r.status, 401, "GitHub does not read PRIVATE-TOKEN");
        let r = send(client().get(&url).bearer_auth("ghp_ok")).await;
        assert_eq!(r.status, 403);
        assert!(r.json()["message"].as_str().unwrap().contains("User-Agent"));
    }

    #[tokio::test]
    async fn rate_limits_come_as_403_with_a_reset_or_429_with_retry_after() {
        let (_r, base) = with_tokens(
            ID,
            &[
                (
                    "ghp_primary",
                    Behaviour::RateLimited { retry_after: None },
                    None,
                ),
                (
                    "ghp_secondary",
                    Behaviour::RateLimited {
                        retry_after: Some("60".into()),
                    },
                    None,
                ),
            ],
        )
        .await;
        let r = get(&format!("{base}/user"), "ghp_primary").await;
        assert_eq!(r.status, 403);
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
        assert!(r.header("retry-after").is_none());
        let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
        let left = reset - unix_now();
        assert!((RESET_IN - 5..=RESET_IN).contains(&left), "{left}");
        let r = get(&format!("{base}/user"), "ghp_secondary").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after").as_deref(), Some("60"));
        assert_ne!(r.header("x-ratelimit-remaining").as_deref(), Some("0"));
    }

    #[tokio::test]
    async fn forbidden_is_a_403_within_the_rate_limit_and_no_account_id_drops_the_id() {
        let (_r, base) = with_tokens(
            ID,
            &[
                ("ghp_forbidden", Behaviour::Forbidden, None),
                ("ghp_noid", Behaviour::NoAccountId, None),
            ],
        )
        .await;
        let r = get(&format!("{base}/user"), "ghp_forbidden").await;
        assert_eq!(r.status, 403);
        assert_eq!(r.header("x-ratelimit-remaining").as_deref(), Some("4999"));
        assert_eq!(
            r.json()["message"],
            "Resource not accessible by personal access token"
        );
        let r = get(&format!("{base}/user"), "ghp_noid").await;
        assert_eq!(r.status, 200);
        assert!(r.json().get("id").is_none());
        assert_eq!(r.json()["login"], crate::test_support::USER);
    }
}
