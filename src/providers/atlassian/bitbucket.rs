//! Bitbucket Cloud. `/2.0/user` answers 401 for bad credentials; no anonymous fallback has
//! been reported, but a 200 without any account id is still treated as anonymous.

use super::{get_json, str_field, Answer, SECRET_PREFIXES};
use crate::probe::{ProbeError, Verdict};
use crate::providers::{
    AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider, ProviderSpec,
};

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "bitbucket",
    default_site: Some("https://api.bitbucket.org"),
    auth: &[AuthKind::Basic],
    identity: IdentityCheck {
        account_id: true,
        email: false,
    },
    secret_prefixes: SECRET_PREFIXES,
    inventory_link: Some(InventoryLink::ApiToken),
    probe,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const USER: &str = "/2.0/user";

fn probe<'c>(cx: &'c mut ProbeCtx<'_>) -> ProbeFuture<'c> {
    Box::pin(check(cx))
}

async fn check(cx: &ProbeCtx<'_>) -> Result<Verdict, ProbeError> {
    let json = match get_json(cx, USER).await? {
        Answer::Refused(status) => return Ok(Verdict::Rejected(status)),
        Answer::Json(json) => json,
    };
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
