//! Atlassian Cloud: Jira, Confluence and Bitbucket API tokens, organization admin API
//! keys, and the organization inventory (the Admin API's listing of every token and key).
//! What the Atlassian APIs answer, and why the probes look the way they do, is in README
//! "How tokens are classified" and docs/architecture.md.

pub mod admin_key;
pub mod bitbucket;
pub mod confluence;
pub mod inventory;
pub mod jira;

use crate::probe::{ErrorReason, ProbeError};
use crate::upstream::Response;

use super::ProbeCtx;

/// How Atlassian credentials start: user API tokens (`ATATT…`), admin API keys and access
/// tokens (`ATCTT…`), Bitbucket app passwords (`ATBB…`).
pub const SECRET_PREFIXES: &[&str] = &["ATATT", "ATCTT", "ATBB"];

/// What a single-request probe got back, once 3xx/429/5xx were handled by the fetch layer
/// and a 403 became a `forbidden` error.
enum Answer {
    /// 2xx with a JSON body.
    Json(serde_json::Value),
    /// The credential itself was refused (401, or a Seraph login failure).
    Refused(u16),
}

/// GET `path` and sort the answer: a refusal of the credential, a 403 (`forbidden`: the
/// credential is fine but may not make this call; `needs` names what it lacks), any
/// other non-2xx unexpected, a 2xx must carry JSON.
async fn get_json(cx: &ProbeCtx<'_>, path: &str, needs: &str) -> Result<Answer, ProbeError> {
    let resp = cx.get(path).await?;
    sort(&resp, path, needs)?;
    if credential_refused(&resp) {
        return Ok(Answer::Refused(resp.status.as_u16()));
    }
    resp.json().map(Answer::Json)
}

/// Errors for every answer that is neither a 2xx nor a refusal of the credential.
fn sort(resp: &Response, path: &str, needs: &str) -> Result<(), ProbeError> {
    if credential_refused(resp) || resp.status.is_success() {
        Ok(())
    } else if resp.status.as_u16() == 403 {
        Err(forbidden(resp, path, needs))
    } else {
        Err(unexpected_status(resp))
    }
}

fn unexpected_status(resp: &Response) -> ProbeError {
    ProbeError::new(
        ErrorReason::BadResponse,
        format!("unexpected HTTP {}", resp.status.as_u16()),
    )
}

/// A 403 that is not a login failure: inconclusive, and the detail says what to check.
/// Bitbucket names the scopes the endpoint accepts in `x-accepted-oauth-scopes`.
fn forbidden(resp: &Response, path: &str, needs: &str) -> ProbeError {
    let accepted = resp
        .header("x-accepted-oauth-scopes")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| format!(" (the endpoint accepts: {})", crate::util::clip(s, 200)))
        .unwrap_or_default();
    let path = path.split('?').next().unwrap_or(path);
    ProbeError::new(
        ErrorReason::Forbidden,
        format!(
            "HTTP 403 on {path}: the credential was recognised but may not make this call; it needs {needs}{accepted}, or an IP allowlist or product access blocks it"
        ),
    )
}

/// `X-Seraph-LoginReason` values that mean the credentials were not accepted, whatever the
/// status code says (Jira and Confluence).
fn login_failed(resp: &Response) -> bool {
    resp.header("x-seraph-loginreason").is_some_and(|v| {
        v.split(',')
            .any(|p| matches!(p.trim(), "AUTHENTICATED_FAILED" | "AUTHENTICATION_DENIED"))
    })
}

/// The credential itself was refused: a 401, or any answer with a Seraph login failure.
/// A plain 403 is not a refusal of the credential (see [`forbidden`]).
fn credential_refused(resp: &Response) -> bool {
    resp.status.as_u16() == 401 || (!resp.status.is_success() && login_failed(resp))
}

/// A non-empty string field of a JSON object.
fn str_field<'v>(json: &'v serde_json::Value, key: &str) -> Option<&'v str> {
    json.get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Outcome;
    use crate::providers::stub::{probe_once, reply, serve};
    use crate::providers::Provider;

    async fn answer_403(
        provider: Provider,
        headers: &'static [(&'static str, &'static str)],
    ) -> crate::providers::Probed {
        let (site, _) = serve(move |_, _| reply(403, headers, r#"{"message":"no"}"#)).await;
        probe_once(provider, &site).await
    }

    fn forbidden_detail(p: &crate::providers::Probed) -> String {
        match &p.outcome {
            Outcome::Error(e) if e.reason == ErrorReason::Forbidden => e.detail.clone(),
            other => panic!("a plain 403 must be `forbidden`, not {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_plain_403_is_forbidden_for_every_atlassian_provider_and_names_the_scope() {
        for (provider, scope) in [
            (confluence::PROVIDER, "read:confluence-user"),
            (bitbucket::PROVIDER, "read:user:bitbucket"),
            (admin_key::PROVIDER, "read:orgs:admin"),
        ] {
            let p = answer_403(provider, &[]).await;
            let detail = forbidden_detail(&p);
            assert!(detail.contains(scope), "{provider}: {detail}");
        }
    }

    #[tokio::test]
    async fn a_confluence_403_with_a_login_failure_is_rejected() {
        let p = answer_403(
            confluence::PROVIDER,
            &[("x-seraph-loginreason", "AUTHENTICATED_FAILED")],
        )
        .await;
        assert_eq!(p.outcome, Outcome::Rejected { status: 403 });
    }

    #[tokio::test]
    async fn a_bitbucket_403_still_reports_the_credential_type_and_scopes() {
        let p = answer_403(
            bitbucket::PROVIDER,
            &[
                ("x-credential-type", "api_token"),
                (
                    "x-oauth-scopes",
                    "read:repository:bitbucket, write:repository:bitbucket",
                ),
                ("x-accepted-oauth-scopes", "read:user:bitbucket"),
            ],
        )
        .await;
        let detail = forbidden_detail(&p);
        assert!(
            detail.contains("the endpoint accepts: read:user:bitbucket"),
            "{detail}"
        );
        assert_eq!(p.facts.credential_type.as_deref(), Some("api_token"));
        assert_eq!(
            p.facts.scopes.as_deref(),
            Some(
                &[
                    "read:repository:bitbucket".to_string(),
                    "write:repository:bitbucket".to_string()
                ][..]
            )
        );
    }

    #[tokio::test]
    async fn a_401_is_rejected_for_every_atlassian_provider() {
        for provider in [
            confluence::PROVIDER,
            bitbucket::PROVIDER,
            admin_key::PROVIDER,
        ] {
            let (site, _) = serve(|_, _| reply(401, &[], "{}")).await;
            let p = probe_once(provider, &site).await;
            assert_eq!(p.outcome, Outcome::Rejected { status: 401 }, "{provider}");
        }
    }
}
