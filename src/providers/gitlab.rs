//! GitLab (gitlab.com, and self-managed instances by `site`): personal, project and group
//! access tokens (all three are personal access tokens of a user or bot user), sent in the
//! `PRIVATE-TOKEN` header (or as Bearer).
//!
//! `GET /api/v4/personal_access_tokens/self` describes the token that calls it: `active`,
//! `revoked`, `user_id`, `scopes`, `created_at`, `last_used_at` and `expires_at` (a date,
//! the token stops working at midnight UTC; `null` when it never expires). GitLab allows
//! the endpoint with *any* scope ("any token regardless of scope should be able to view
//! itself"), so the probe needs nothing the token does not already have. Expired and
//! revoked tokens get 401; a 200 with `active: false` or `revoked: true` is a refusal as
//! well. Tokens that are not personal access tokens (OAuth, CI job, deploy tokens) get
//! 400. Rate limits answer 429 with `Retry-After` and `RateLimit-Reset` (epoch seconds).
//! README "GitHub and GitLab".

use serde_json::Value;

use super::{scope_list, AuthKind, IdentityCheck, ProbeCtx, ProbeFuture, Provider, ProviderSpec};
use crate::probe::{ErrorReason, Facts, ProbeError, Verdict};
use crate::upstream::Response;
use crate::util::{clip, parse_timestamp};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "gitlab",
    default_site: Some("https://gitlab.com"),
    auth: &[AuthKind::Header, AuthKind::Bearer],
    auth_header: "PRIVATE-TOKEN",
    oauth_site_path: None,
    identity: IdentityCheck {
        account_id: true,
        email: false,
    },
    // GitLab's documented token prefixes (docs.gitlab.com "Token prefixes"): personal,
    // project and group access tokens, OAuth application secrets, deploy, runner, CI/CD
    // job, trigger, feed, incoming mail, agent, workspace, SCIM and feature flag tokens.
    // Self-managed instances may change the personal access token prefix.
    secret_prefixes: &[
        "glpat-", "gloas-", "gldt-", "glrt-", "glrtr-", "glcbt-", "glptt-", "glft-", "glimt-",
        "glagent-", "glwt-", "glsoat-", "glffct-",
    ],
    inventory_link: None,
    waits_for_rate_limit_reset: true,
    probe,
    site_warning,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const SELF: &str = "/api/v4/personal_access_tokens/self";

/// The site is the instance root; the probe appends `/api/v4/…` itself.
fn site_warning(site: &url::Url) -> Option<String> {
    site.path().contains("/api/v4").then(|| {
        format!(
            "{site} contains /api/v4: give the instance root (e.g. https://gitlab.com); \
             the probe appends {SELF} itself"
        )
    })
}

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &mut ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let resp = cx.get(SELF).await?;
    match resp.status.as_u16() {
        200 => {}
        401 => return Ok(Verdict::Rejected(401)),
        403 => {
            return Err(ProbeError::new(
                ErrorReason::Forbidden,
                format!(
                    "HTTP 403 on {SELF}{}: the token was recognised but refused; any scope may read \
                     this endpoint, so check whether its user is blocked or an IP restriction or \
                     policy applies",
                    gitlab_said(&resp)
                ),
            ))
        }
        400 => {
            return Err(ProbeError::new(
                ErrorReason::BadResponse,
                format!(
                    "HTTP 400 on {SELF}{}: only personal, project and group access tokens can be probed",
                    gitlab_said(&resp)
                ),
            ))
        }
        status => {
            return Err(ProbeError::new(
                ErrorReason::BadResponse,
                format!("unexpected HTTP {status} on {SELF}{}", gitlab_said(&resp)),
            ))
        }
    }
    let json = resp.json()?;
    let flag = |key: &str| json.get(key).and_then(Value::as_bool);
    let (Some(active), Some(revoked)) = (flag("active"), flag("revoked")) else {
        return Err(bad_body("without the booleans active and revoked"));
    };
    // An inactive or revoked token's dates still say why (e.g. an expiry in the past).
    let facts = facts(&json);
    if !active || revoked {
        cx.facts = facts;
        return Ok(Verdict::Rejected(200));
    }
    let Some(user_id) = json.get("user_id").and_then(Value::as_u64) else {
        return Err(bad_body("without a numeric user_id"));
    };
    cx.facts = facts;
    Ok(Verdict::Authenticated {
        account_id: Some(user_id.to_string()),
        email: None,
    })
}

fn bad_body(what: &str) -> ProbeError {
    ProbeError::new(
        ErrorReason::BadResponse,
        format!("{SELF} answered 200 {what}"),
    )
}

/// GitLab's own words from an error body (`message`, or OAuth's `error_description` /
/// `error`), clipped, for the detail.
fn gitlab_said(resp: &Response) -> String {
    let Ok(json) = resp.json() else {
        return String::new();
    };
    ["message", "error_description", "error"]
        .iter()
        .find_map(|k| json.get(*k).and_then(Value::as_str))
        .map(|m| format!(" (GitLab: {:?})", clip(m.trim(), 200)))
        .unwrap_or_default()
}

/// What the token's description says about it. Dates GitLab cannot have meant (an
/// unparseable value) are left out rather than failing the probe.
fn facts(json: &Value) -> Facts {
    let time = |key: &str| {
        json.get(key)
            .and_then(Value::as_str)
            .and_then(|s| parse_timestamp(s).ok())
    };
    Facts {
        expires_at: time("expires_at"),
        created_at: time("created_at"),
        last_used_at: time("last_used_at"),
        scopes: json
            .get("scopes")
            .and_then(Value::as_array)
            .map(|a| scope_list(a.iter().filter_map(Value::as_str))),
        credential_type: None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::probe::Outcome;
    use crate::providers::stub::{
        epoch_in, error_of, paths, probe_answered, probe_once, reply, serve, Reply,
    };
    use crate::providers::{probe, ProbeTarget, Probed};
    use crate::secret::Secret;
    use crate::upstream::HttpClient;

    const TOKEN: &str = r#"{"id":4,"name":"ci","revoked":false,"created_at":"2026-01-10T08:30:00.000Z",
        "description":"","scopes":["read_api","read_user"],"user_id":1234,
        "last_used_at":"2026-02-01T12:00:00.123Z","active":true,"expires_at":"2026-04-10"}"#;

    async fn answer(reply: Reply) -> Probed {
        probe_answered(PROVIDER, reply).await
    }

    fn token(replace: &[(&str, &str)]) -> String {
        replace
            .iter()
            .fold(TOKEN.to_string(), |t, (from, to)| t.replace(from, to))
    }

    #[tokio::test]
    async fn an_active_token_is_valid_with_every_fact_in_the_private_token_header() {
        let (site, seen) = serve(|_, headers| {
            assert_eq!(headers.get("private-token").unwrap(), "ATATT3xSTUBSECRET");
            assert!(headers.get("authorization").is_none());
            reply(200, &[], TOKEN)
        })
        .await;
        let p = probe_once(PROVIDER, &site).await;
        assert_eq!(
            p.outcome,
            Outcome::Valid {
                account_id: Some("1234".into())
            }
        );
        assert_eq!(
            p.facts,
            Facts {
                expires_at: Some(1_775_779_200),   // 2026-04-10T00:00:00Z
                created_at: Some(1_768_033_800),   // 2026-01-10T08:30:00Z
                last_used_at: Some(1_769_947_200), // 2026-02-01T12:00:00Z
                scopes: Some(vec!["read_api".into(), "read_user".into()]),
                credential_type: None,
            }
        );
        assert_eq!(paths(&seen), [SELF]);
    }

    #[tokio::test]
    async fn bearer_auth_sends_the_token_as_bearer() {
        let (site, _) = serve(|_, headers| {
            assert_eq!(
                headers.get("authorization").unwrap(),
                "Bearer glpat-STUBSECRET"
            );
            assert!(headers.get("private-token").is_none());
            reply(200, &[], TOKEN)
        })
        .await;
        let secret = Secret::new("glpat-STUBSECRET");
        let target = ProbeTarget {
            provider: PROVIDER,
            site: &site,
            auth: AuthKind::Bearer,
            email: None,
            expected_account_id: Some("1234"),
            secret: &secret,
            oauth: None,
        };
        let p = probe(&HttpClient::new().unwrap(), &target).await;
        assert!(matches!(p.outcome, Outcome::Valid { .. }), "{p:?}");
    }

    #[tokio::test]
    async fn a_token_without_expiry_or_last_use_reports_none() {
        let p = answer(reply(
            200,
            &[],
            &token(&[
                (r#""2026-04-10""#, "null"),
                (r#""2026-02-01T12:00:00.123Z""#, "null"),
            ]),
        ))
        .await;
        assert!(matches!(p.outcome, Outcome::Valid { .. }), "{p:?}");
        assert_eq!((p.facts.expires_at, p.facts.last_used_at), (None, None));
        assert_eq!(p.facts.created_at, Some(1_768_033_800));
    }

    #[tokio::test]
    async fn inactive_or_revoked_is_rejected_and_still_reports_its_dates() {
        for change in [
            [(r#""active":true"#, r#""active":false"#)],
            [(r#""revoked":false"#, r#""revoked":true"#)],
        ] {
            let p = answer(reply(200, &[], &token(&change))).await;
            assert_eq!(p.outcome, Outcome::Rejected { status: 200 }, "{change:?}");
            assert_eq!(p.facts.expires_at, Some(1_775_779_200));
        }
    }

    #[tokio::test]
    async fn a_401_is_rejected_and_a_403_forbidden() {
        let p = answer(reply(401, &[], r#"{"message":"401 Unauthorized"}"#)).await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 401 });
        let p = answer(reply(
            403,
            &[],
            r#"{"error":"insufficient_scope","error_description":"The request requires higher privileges"}"#,
        ))
        .await;
        let e = error_of(&p);
        assert_eq!(e.reason, ErrorReason::Forbidden);
        assert!(
            e.detail.contains("requires higher privileges"),
            "{}",
            e.detail
        );
        assert!(p.facts.is_empty());
    }

    #[tokio::test]
    async fn a_429_waits_for_retry_after_else_the_ratelimit_reset() {
        let p = answer(reply(
            429,
            &[("retry-after", "30"), ("ratelimit-reset", "1")],
            "",
        ))
        .await;
        assert_eq!(error_of(&p).reason, ErrorReason::RateLimited);
        assert_eq!(error_of(&p).retry_after, Some(Duration::from_secs(30)));
        let reset = epoch_in(300);
        let p = answer(reply(429, &[("ratelimit-reset", &reset)], "")).await;
        let wait = error_of(&p).retry_after.expect("the reset is the wait");
        assert!(
            wait > Duration::from_secs(280) && wait <= Duration::from_secs(300),
            "{wait:?}"
        );
    }

    #[tokio::test]
    async fn answers_that_say_nothing_usable_are_bad_responses() {
        let cases = [
            reply(200, &[], r#"{"user_id":1}"#),
            reply(
                200,
                &[],
                &token(&[(r#""user_id":1234"#, r#""user_id":"1234""#)]),
            ),
            reply(200, &[], "<html>"),
            reply(
                400,
                &[],
                r#"{"message":"400 Bad request - This endpoint requires token type to be a personal access token"}"#,
            ),
            reply(404, &[], r#"{"message":"404 Not Found"}"#),
        ];
        for r in cases {
            let p = answer(r.clone()).await;
            assert_eq!(error_of(&p).reason, ErrorReason::BadResponse, "{r:?}");
        }
        let p = answer(reply(400, &[], r#"{"message":"400 Bad request - This endpoint requires token type to be a personal access token"}"#)).await;
        assert!(error_of(&p)
            .detail
            .contains("only personal, project and group access tokens"));
    }
}
