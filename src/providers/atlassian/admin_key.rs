//! Organization admin API keys: a Bearer key is valid when `/admin/v1/orgs` lists the
//! organizations it can manage.

use super::{get_json, Answer, SECRET_PREFIXES};
use crate::probe::{ErrorReason, ProbeError, Verdict};
use crate::providers::{
    AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider, ProviderSpec,
};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "atlassian_admin",
    default_site: Some("https://api.atlassian.com"),
    auth: &[AuthKind::Bearer],
    auth_header: "",
    oauth_site_path: None,
    identity: IdentityCheck {
        account_id: false,
        email: false,
    },
    secret_prefixes: SECRET_PREFIXES,
    inventory_link: Some(InventoryLink::ApiKey),
    waits_for_rate_limit_reset: false,
    probe,
    site_warning: crate::providers::any_site,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const ORGS: &str = "/admin/v1/orgs";

/// What `/admin/v1/orgs` needs of a scoped admin key.
const NEEDS: &str = "the read:orgs:admin scope";

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let json = match get_json(cx, ORGS, NEEDS).await? {
        Answer::Refused(status) => return Ok(Verdict::Rejected(status)),
        Answer::Json(json) => json,
    };
    if json.get("data").is_some_and(serde_json::Value::is_array) {
        Ok(Verdict::Authenticated {
            account_id: None,
            email: None,
        })
    } else {
        Err(ProbeError::new(
            ErrorReason::BadResponse,
            "/admin/v1/orgs answered 200 without a data array",
        ))
    }
}
