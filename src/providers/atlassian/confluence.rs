//! Confluence Cloud. With anonymous access enabled, bad credentials get a 200 describing
//! the anonymous user (`type: anonymous`, no `accountId`) instead of an error.

use super::{get_json, str_field, Answer, SECRET_PREFIXES};
use crate::probe::{ProbeError, Verdict};
use crate::providers::{
    AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider, ProviderSpec,
};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "confluence",
    default_site: None,
    // Bearer: a scoped service-account API token; OAuth2: service-account client
    // credentials. Both only through the API gateway site.
    auth: &[AuthKind::Basic, AuthKind::Bearer, AuthKind::OAuth2],
    auth_header: "",
    oauth_site_path: Some("/ex/confluence/"),
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

pub const CURRENT_USER: &str = "/wiki/rest/api/user/current";

/// What `/user/current` needs of a scoped token.
const NEEDS: &str = "the read:confluence-user scope and the 'Can use' Confluence permission";

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let json = match get_json(cx, CURRENT_USER, NEEDS).await? {
        Answer::Refused(status) => return Ok(Verdict::Rejected(status)),
        Answer::Json(json) => json,
    };
    let kind = str_field(&json, "type").unwrap_or("");
    match (kind, str_field(&json, "accountId")) {
        ("known" | "user", Some(id)) => Ok(Verdict::Authenticated {
            account_id: Some(id.to_string()),
            email: str_field(&json, "email").map(str::to_string),
        }),
        (kind, _) => Ok(Verdict::Anonymous(format!(
            "current user is type {:?} without an accountId",
            if kind.is_empty() { "(none)" } else { kind }
        ))),
    }
}
