//! GitHub (github.com, and GitHub Enterprise Server with `site: https://HOST/api/v3`):
//! personal access tokens, classic and fine-grained, and the other token kinds `/user`
//! accepts (OAuth and GitHub App user tokens), sent as Bearer.
//!
//! `GET /user` answers 200 with the account (numeric `id`) or 401. GitHub tells the token's
//! expiry on every answer, in the `GitHub-Authentication-Token-Expiration` header
//! (`2026-03-02 01:46:21 UTC`; an offset like `-0800` has been seen too), and a classic
//! token's scopes in `x-oauth-scopes` (fine-grained tokens have permissions instead and
//! send no such header). `/user` needs no scope or permission beyond the token itself.
//!
//! Rate limits answer 403 *or* 429, with `x-ratelimit-remaining: 0` (the primary, hourly
//! limit; `x-ratelimit-reset` in epoch seconds) or a `retry-after` (secondary limits); any
//! other 403 is a refusal of this call, not of the token (an installation token, an IP
//! allow list, an administrative block). README "GitHub and GitLab".

use super::{split_scopes, AuthKind, IdentityCheck, ProbeCtx, ProbeFuture, Provider, ProviderSpec};
use crate::probe::{ErrorReason, Facts, ProbeError, Verdict};
use crate::upstream::{rate_limited, Response};
use crate::util::clip;

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "github",
    default_site: Some("https://api.github.com"),
    auth: &[AuthKind::Bearer],
    auth_header: "",
    oauth_site_path: None,
    identity: IdentityCheck {
        account_id: true,
        email: false,
    },
    // Classic and fine-grained personal access tokens, OAuth, GitHub App user-to-server,
    // installation (server-to-server) and refresh tokens.
    secret_prefixes: &["ghp_", "github_pat_", "gho_", "ghu_", "ghs_", "ghr_"],
    inventory_link: None,
    waits_for_rate_limit_reset: true,
    probe,
    site_warning,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const USER: &str = "/user";

pub const EXPIRATION_HEADER: &str = "github-authentication-token-expiration";

/// GitHub Enterprise Server serves its REST API under `/api/v3`; a site on another host
/// without it reaches the web UI, and every probe would be a `bad_response`.
fn site_warning(site: &url::Url) -> Option<String> {
    if site.host_str() == Some("api.github.com")
        || site.path().trim_end_matches('/').ends_with("/api/v3")
    {
        return None;
    }
    Some(format!(
        "{site} is not api.github.com and does not end in /api/v3: GitHub Enterprise Server's \
         REST API is at https://HOST/api/v3, and {USER} elsewhere answers with the web UI"
    ))
}

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &mut ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let resp = cx.get(USER).await?;
    match resp.status.as_u16() {
        200 => {}
        401 => return Ok(Verdict::Rejected(401)),
        403 if is_rate_limited(&resp) => {
            let mut e = rate_limited(resp.status, &resp.headers);
            e.detail = "HTTP 403: GitHub rate limit exceeded".into();
            return Err(e);
        }
        403 => return Err(forbidden(&resp)),
        status => {
            return Err(ProbeError::new(
                ErrorReason::BadResponse,
                format!("unexpected HTTP {status} on {USER}"),
            ))
        }
    }
    let Some(id) = resp.json()?.get("id").and_then(serde_json::Value::as_u64) else {
        return Err(ProbeError::new(
            ErrorReason::BadResponse,
            format!("{USER} answered 200 without a numeric id"),
        ));
    };
    // Facts only from an answer that authenticated the token: a refusal keeps the last.
    cx.facts = facts(&resp);
    Ok(Verdict::Authenticated {
        account_id: Some(id.to_string()),
        email: None,
    })
}

/// GitHub's primary and secondary rate limits, when answered with 403.
fn is_rate_limited(resp: &Response) -> bool {
    resp.header("x-ratelimit-remaining").map(str::trim) == Some("0")
        || resp.headers.contains_key("retry-after")
}

/// A 403 that is no rate limit: inconclusive, and the detail says what to check.
fn forbidden(resp: &Response) -> ProbeError {
    let said = resp
        .json()
        .ok()
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(|m| format!(" (GitHub: {:?})", clip(m.trim(), 200)))
        .unwrap_or_default();
    ProbeError::new(
        ErrorReason::Forbidden,
        format!(
            "HTTP 403 on {USER}{said}: the token was recognised but may not read its own account; \
             /user needs no scope, so check the token kind (an app installation token cannot \
             call /user), an IP allow list, or a block by the organization or enterprise"
        ),
    )
}

/// The expiry and the classic token's scopes from the answer's headers.
fn facts(resp: &Response) -> Facts {
    Facts {
        expires_at: resp.header(EXPIRATION_HEADER).and_then(parse_expiration),
        scopes: resp.header("x-oauth-scopes").map(split_scopes),
        ..Facts::default()
    }
}

/// `2026-03-02 01:46:21 UTC` or `2026-03-02 01:46:21 -0800` as Unix seconds. An unreadable
/// value is no expiry (the config's then applies), not a failed probe.
pub fn parse_expiration(value: &str) -> Option<i64> {
    let v = value.trim();
    if let Some(utc) = v.strip_suffix("UTC") {
        return chrono::NaiveDateTime::parse_from_str(utc.trim_end(), "%Y-%m-%d %H:%M:%S")
            .ok()
            .map(|t| t.and_utc().timestamp());
    }
    chrono::DateTime::parse_from_str(v, "%Y-%m-%d %H:%M:%S %z")
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::Outcome;
    use crate::providers::stub::{
        epoch_in, error_of, paths, probe_answered, probe_once, reply, serve, Reply,
    };
    use crate::providers::Probed;

    async fn answer(reply: Reply) -> Probed {
        probe_answered(PROVIDER, reply).await
    }

    #[test]
    fn expiration_header_forms() {
        // 2026-03-02T01:46:21Z
        assert_eq!(
            parse_expiration("2026-03-02 01:46:21 UTC"),
            Some(1_772_415_981)
        );
        assert_eq!(
            parse_expiration(" 2026-03-02 01:46:21 UTC "),
            Some(1_772_415_981)
        );
        assert_eq!(
            parse_expiration("2026-03-02 01:46:21 +0000"),
            Some(1_772_415_981)
        );
        assert_eq!(
            parse_expiration("2026-03-01 17:46:21 -0800"),
            Some(1_772_415_981)
        );
        assert_eq!(parse_expiration("2026-03-02"), None);
        assert_eq!(parse_expiration("never"), None);
        assert_eq!(parse_expiration(""), None);
    }

    #[tokio::test]
    async fn a_200_with_a_numeric_id_is_valid_with_expiry_and_scopes() {
        let (site, seen) = serve(|_, headers| {
            assert_eq!(
                headers.get("authorization").unwrap(),
                "Bearer ATATT3xSTUBSECRET"
            );
            assert!(headers
                .get("user-agent")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("apitoken-exporter/"));
            reply(
                200,
                &[
                    (EXPIRATION_HEADER, "2026-03-02 01:46:21 UTC"),
                    ("x-oauth-scopes", "repo, read:org,  gist"),
                ],
                r#"{"login":"octocat","id":583231}"#,
            )
        })
        .await;
        let p = probe_once(PROVIDER, &site).await;
        assert_eq!(
            p.outcome,
            Outcome::Valid {
                account_id: Some("583231".into())
            }
        );
        assert_eq!(p.facts.expires_at, Some(1_772_415_981));
        assert_eq!(
            p.facts.scopes.as_deref(),
            Some(&["repo".to_string(), "read:org".into(), "gist".into()][..])
        );
        assert_eq!(paths(&seen), [USER]);
    }

    #[tokio::test]
    async fn a_fine_grained_token_reports_no_scopes_and_may_have_no_expiry() {
        let p = answer(reply(200, &[], r#"{"id":1}"#)).await;
        assert!(matches!(p.outcome, Outcome::Valid { .. }), "{p:?}");
        assert!(p.facts.is_empty(), "{:?}", p.facts);
        // A classic token without any scope still says so (an empty list).
        let p = answer(reply(200, &[("x-oauth-scopes", "")], r#"{"id":1}"#)).await;
        assert_eq!(p.facts.scopes, Some(vec![]));
    }

    #[tokio::test]
    async fn the_ghes_path_prefix_is_kept() {
        let (base, seen) = serve(|_, _| reply(200, &[], r#"{"id":7}"#)).await;
        let site = base.join("/api/v3").unwrap();
        let p = probe_once(PROVIDER, &site).await;
        assert!(matches!(p.outcome, Outcome::Valid { .. }), "{p:?}");
        assert_eq!(paths(&seen), ["/api/v3/user"]);
    }

    #[tokio::test]
    async fn a_401_is_rejected() {
        let p = answer(reply(401, &[], r#"{"message":"Bad credentials"}"#)).await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 401 });
    }

    #[tokio::test]
    async fn a_200_without_a_numeric_id_is_a_bad_response() {
        for body in [r#"{"login":"x"}"#, r#"{"id":"583231"}"#, "[]"] {
            let p = answer(reply(200, &[], body)).await;
            assert_eq!(error_of(&p).reason, ErrorReason::BadResponse, "{body}");
        }
    }

    #[tokio::test]
    async fn a_403_with_remaining_zero_is_rate_limited_until_the_reset() {
        let reset = epoch_in(900);
        let p = answer(reply(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        ))
        .await;
        let e = error_of(&p);
        assert_eq!(e.reason, ErrorReason::RateLimited);
        let wait = e.retry_after.expect("the reset is the wait");
        assert!(
            wait > Duration::from_secs(880) && wait <= Duration::from_secs(900),
            "{wait:?}"
        );
        assert_eq!(
            p.outcome.next_delay(Duration::from_secs(60)),
            wait,
            "the scheduler waits for the reset"
        );
    }

    #[tokio::test]
    async fn a_403_or_429_with_retry_after_waits_for_it_not_the_reset() {
        for status in [403, 429] {
            let reset = epoch_in(3000);
            let p = answer(reply(
                status,
                &[
                    ("retry-after", "60"),
                    ("x-ratelimit-remaining", "12"),
                    ("x-ratelimit-reset", &reset),
                ],
                r#"{"message":"You have exceeded a secondary rate limit"}"#,
            ))
            .await;
            let e = error_of(&p);
            assert_eq!(e.reason, ErrorReason::RateLimited, "{status}");
            assert_eq!(e.retry_after, Some(Duration::from_secs(60)), "{status}");
        }
    }

    #[tokio::test]
    async fn a_429_with_only_a_reset_waits_for_it_clamped() {
        let p = answer(reply(
            429,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &epoch_in(86_400)),
            ],
            "",
        ))
        .await;
        assert_eq!(
            error_of(&p).retry_after,
            Some(crate::upstream::RETRY_AFTER_MAX)
        );
        // Already past: the minimum, which never shortens the interval.
        let p = answer(reply(
            429,
            &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")],
            "",
        ))
        .await;
        assert_eq!(
            error_of(&p).retry_after,
            Some(crate::upstream::RETRY_AFTER_MIN)
        );
    }

    #[tokio::test]
    async fn any_other_403_is_forbidden_and_quotes_github() {
        let p = answer(reply(
            403,
            &[("x-ratelimit-remaining", "4999")],
            r#"{"message":"Resource not accessible by integration"}"#,
        ))
        .await;
        let e = error_of(&p);
        assert_eq!(e.reason, ErrorReason::Forbidden);
        assert!(
            e.detail.contains("Resource not accessible by integration"),
            "{}",
            e.detail
        );
        assert!(e.detail.contains("installation token"), "{}", e.detail);
        // The facts of a refusal are not taken (the last ones are kept by the state).
        let p = answer(reply(
            403,
            &[(EXPIRATION_HEADER, "2026-03-02 01:46:21 UTC")],
            "not json",
        ))
        .await;
        assert_eq!(error_of(&p).reason, ErrorReason::Forbidden);
        assert!(p.facts.is_empty());
    }

    #[tokio::test]
    async fn other_statuses_are_bad_responses() {
        for status in [400, 404] {
            let p = answer(reply(status, &[], "{}")).await;
            assert_eq!(error_of(&p).reason, ErrorReason::BadResponse, "{status}");
        }
    }
}
