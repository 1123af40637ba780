//! Jira Cloud. `/myself` has no anonymous access, so a dead token gets 401 there; but the
//! same token is served as *anonymous* (200, empty results) by anonymous-capable endpoints,
//! which is what integrations actually hit. We confirm the fallback with a side probe on
//! `/project/search` so the metric says "anonymous fallback", not just "rejected".

use super::{login_failed, sort, str_field, SECRET_PREFIXES};
use crate::probe::{ErrorReason, ProbeError, Verdict};
use crate::providers::{
    AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider, ProviderSpec,
};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "jira",
    default_site: None,
    // Bearer: a scoped service-account API token; OAuth2: service-account client
    // credentials. Both only through the API gateway site.
    auth: &[AuthKind::Basic, AuthKind::Bearer, AuthKind::OAuth2],
    auth_header: "",
    oauth_site_path: Some("/ex/jira/"),
    identity: IdentityCheck {
        account_id: true,
        email: true,
    },
    secret_prefixes: SECRET_PREFIXES,
    inventory_link: Some(InventoryLink::ApiToken),
    waits_for_rate_limit_reset: false,
    probe,
    site_warning: crate::providers::any_site,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const MYSELF: &str = "/rest/api/3/myself";
pub const ANONYMOUS_CAPABLE: &str = "/rest/api/3/project/search?maxResults=1";

/// What `/myself` needs of a scoped token (classic: `read:jira-user`; granular:
/// `read:user:jira`).
const MYSELF_NEEDS: &str = "the read:jira-user (or read:user:jira) scope";

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let myself = cx.get(MYSELF).await?;
    if myself.status.is_success() && !login_failed(&myself) {
        let json = myself.json()?;
        return Ok(match str_field(&json, "accountId") {
            Some(id) => Verdict::Authenticated {
                account_id: Some(id.to_string()),
                email: str_field(&json, "emailAddress").map(str::to_string),
            },
            None => Verdict::Anonymous("/myself answered 200 without an accountId".into()),
        });
    }
    // A plain 403 is `forbidden` and runs no side probe; other statuses are unexpected.
    sort(&myself, MYSELF, MYSELF_NEEDS)?;
    let refused = myself.status.as_u16();
    if cx.target.auth == AuthKind::OAuth2 {
        // OAuth access tokens only work through the API gateway, which has no anonymous
        // fallback: a refusal stands on its own.
        return Ok(Verdict::Rejected(refused));
    }

    // /myself refused the credential. Does the site serve it as anonymous instead? The
    // side probe's answer decides; when it fails, the probe fails with its reason (and
    // its Retry-After): a dead token on an anonymous site must never alternate between
    // "anonymous" and "rejected" because the side probe was rate-limited.
    let side = cx.get(ANONYMOUS_CAPABLE).await?;
    let status = side.status.as_u16();
    if side.status.is_success() {
        if login_failed(&side) || side.header("x-aaccountid").is_none() {
            return Ok(Verdict::Anonymous(format!(
                "/myself answered {refused} but /project/search served the credential as anonymous"
            )));
        }
        return Err(ProbeError::new(
            ErrorReason::BadResponse,
            format!(
                "/myself answered {refused} but /project/search authenticated the same credential"
            ),
        ));
    }
    if matches!(status, 401 | 403) {
        return Ok(Verdict::Rejected(refused));
    }
    Err(ProbeError::new(
        ErrorReason::BadResponse,
        format!(
            "/myself answered {refused}; the anonymous side probe got unexpected HTTP {status}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;
    use crate::providers::stub::{paths, probe_once, reply, serve};

    const FAILED: (&str, &str) = ("x-seraph-loginreason", "AUTHENTICATED_FAILED");

    /// /myself refuses with `myself`; the side probe answers `side`.
    async fn dead_token(
        myself: u16,
        side: crate::providers::stub::Reply,
    ) -> (crate::providers::Probed, Vec<String>) {
        let (site, seen) = serve(move |path, _| {
            if path.starts_with(MYSELF) {
                reply(myself, &[FAILED], "{}")
            } else {
                side.clone()
            }
        })
        .await;
        let probed = probe_once(PROVIDER, &site).await;
        (probed, paths(&seen))
    }

    fn reason(p: &crate::providers::Probed) -> Option<ErrorReason> {
        match &p.outcome {
            Outcome::Error(e) => Some(e.reason),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_side_probe_decides_anonymous_or_rejected() {
        let anonymous = reply(200, &[FAILED], r#"{"values":[]}"#);
        let (p, seen) = dead_token(401, anonymous).await;
        assert!(matches!(p.outcome, Outcome::Anonymous { .. }), "{p:?}");
        assert_eq!(seen, [MYSELF, ANONYMOUS_CAPABLE]);
        let (p, _) = dead_token(401, reply(401, &[FAILED], "{}")).await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 401 });
        let (p, _) = dead_token(401, reply(403, &[], "{}")).await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 401 });
    }

    #[tokio::test]
    async fn a_failing_side_probe_is_an_error_with_its_reason_never_rejected() {
        let (p, _) = dead_token(401, reply(429, &[("retry-after", "120")], "")).await;
        let Outcome::Error(e) = &p.outcome else {
            panic!("a rate-limited side probe must not conclude: {p:?}");
        };
        assert_eq!(e.reason, ErrorReason::RateLimited);
        assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(120)));
        let (p, _) = dead_token(401, reply(503, &[], "")).await;
        assert_eq!(reason(&p), Some(ErrorReason::Http5xx), "{p:?}");
        let (p, _) = dead_token(401, reply(302, &[("location", "/login")], "")).await;
        assert_eq!(reason(&p), Some(ErrorReason::BadResponse), "{p:?}");
        let (p, _) = dead_token(401, reply(404, &[], "")).await;
        assert_eq!(reason(&p), Some(ErrorReason::BadResponse), "{p:?}");
        // An authenticated side probe contradicts /myself: inconclusive, not rejected.
        let (p, _) = dead_token(401, reply(200, &[("x-aaccountid", "a1")], "{}")).await;
        assert_eq!(reason(&p), Some(ErrorReason::BadResponse), "{p:?}");
    }

    #[tokio::test]
    async fn a_plain_403_on_myself_is_forbidden_and_runs_no_side_probe() {
        let (site, seen) = serve(|_, _| reply(403, &[], r#"{"errorMessages":["no"]}"#)).await;
        let p = probe_once(PROVIDER, &site).await;
        let Outcome::Error(e) = &p.outcome else {
            panic!("403 must be inconclusive: {p:?}");
        };
        assert_eq!(e.reason, ErrorReason::Forbidden);
        assert!(e.detail.contains("read:jira-user"), "{}", e.detail);
        assert_eq!(paths(&seen), [MYSELF]);
        // A 403 with a Seraph login failure is a refusal of the credential.
        let (p, _) = dead_token(403, reply(401, &[], "{}")).await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 403 });
    }

    #[tokio::test]
    async fn either_sign_of_anonymity_on_the_side_probe_is_enough() {
        // A 200 without an account header is anonymous, even without a Seraph failure.
        let (p, _) = dead_token(401, reply(200, &[], r#"{"values":[]}"#)).await;
        assert!(matches!(p.outcome, Outcome::Anonymous { .. }), "{p:?}");
        // A Seraph login failure is anonymous, even next to an account header.
        let both = reply(200, &[FAILED, ("x-aaccountid", "a1")], r#"{"values":[]}"#);
        let (p, _) = dead_token(401, both).await;
        assert!(matches!(p.outcome, Outcome::Anonymous { .. }), "{p:?}");
    }
}
