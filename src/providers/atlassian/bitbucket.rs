//! Bitbucket Cloud. `/2.0/user` answers 401 for bad credentials; no anonymous fallback has
//! been reported, but a 200 without any account id is still treated as anonymous.

use super::{credential_refused, sort, str_field, SECRET_PREFIXES};
use crate::probe::{Facts, ProbeError, Verdict};
use crate::providers::{
    split_scopes, AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider,
    ProviderSpec,
};
use crate::upstream::Response;
use crate::util::{clip, MAX_UPSTREAM_LABEL};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "bitbucket",
    default_site: Some("https://api.bitbucket.org"),
    auth: &[AuthKind::Basic],
    auth_header: "",
    oauth_site_path: None,
    identity: IdentityCheck {
        account_id: true,
        email: false,
    },
    secret_prefixes: SECRET_PREFIXES,
    inventory_link: Some(InventoryLink::ApiToken),
    waits_for_rate_limit_reset: false,
    probe,
    site_warning: crate::providers::any_site,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const USER: &str = "/2.0/user";

/// What `/2.0/user` needs of an API token.
const NEEDS: &str = "the read:user:bitbucket scope";

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &mut ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let resp = cx.get(USER).await?;
    // Bitbucket names the credential's kind and scopes on every answer, a 403 included:
    // an API token without `read:user:bitbucket` still shows what it may do.
    read_credential_headers(&resp, &mut cx.facts);
    sort(&resp, USER, NEEDS)?;
    if credential_refused(&resp) {
        return Ok(Verdict::Rejected(resp.status.as_u16()));
    }
    let json = resp.json()?;
    // `account_id` is the Atlassian account; `uuid` the Bitbucket one (older accounts).
    match str_field(&json, "account_id").or_else(|| str_field(&json, "uuid")) {
        Some(id) => Ok(Verdict::Authenticated {
            account_id: Some(id.to_string()),
            // /2.0/user does not return an email; the configured user may be a username.
            email: None,
        }),
        None => Ok(Verdict::Anonymous(
            "/2.0/user answered 200 without uuid or account_id".into(),
        )),
    }
}

/// `x-credential-type` (`api_token`, `repo_access_token`, …) and `x-oauth-scopes`
/// (comma-separated), each clipped: they become label values.
fn read_credential_headers(resp: &Response, facts: &mut Facts) {
    if let Some(kind) = resp.header("x-credential-type").map(str::trim) {
        if !kind.is_empty() {
            facts.credential_type = Some(clip(kind, MAX_UPSTREAM_LABEL).to_string());
        }
    }
    if let Some(scopes) = resp.header("x-oauth-scopes") {
        facts.scopes = Some(split_scopes(scopes));
    }
}
