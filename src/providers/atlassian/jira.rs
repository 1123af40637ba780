//! Jira Cloud. `/myself` has no anonymous access, so a dead token gets 401 there; but the
//! same token is served as *anonymous* (200, empty results) by anonymous-capable endpoints,
//! which is what integrations actually hit. We confirm the fallback with a side probe on
//! `/project/search` so the metric says "anonymous fallback", not just "rejected".

use super::{is_rejection, str_field, unexpected_status, SECRET_PREFIXES};
use crate::probe::{ProbeError, Verdict};
use crate::providers::{
    AuthKind, IdentityCheck, InventoryLink, ProbeCtx, ProbeFuture, Provider, ProviderSpec,
};
use crate::upstream::Response;

pub static SPEC: ProviderSpec = ProviderSpec {
    name: "jira",
    default_site: None,
    auth: &[AuthKind::Basic],
    identity: IdentityCheck {
        account_id: true,
        email: true,
    },
    secret_prefixes: SECRET_PREFIXES,
    inventory_link: Some(InventoryLink::ApiToken),
    probe,
};

pub const PROVIDER: Provider = Provider(&SPEC);

pub const MYSELF: &str = "/rest/api/3/myself";
pub const ANONYMOUS_CAPABLE: &str = "/rest/api/3/project/search?maxResults=1";

/// `X-Seraph-LoginReason` values that mean the credentials were not accepted, whatever the
/// status code says.
fn login_failed(resp: &Response) -> bool {
    resp.header("x-seraph-loginreason").is_some_and(|v| {
        v.split(',')
            .any(|p| matches!(p.trim(), "AUTHENTICATED_FAILED" | "AUTHENTICATION_DENIED"))
    })
}

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
    if !(is_rejection(&myself) || login_failed(&myself)) {
        return Err(unexpected_status(&myself));
    }

    // /myself refused the credential. Does the site serve it as anonymous instead?
    let side = cx.get(ANONYMOUS_CAPABLE).await;
    match side {
        Ok(resp)
            if resp.status.is_success()
                && (login_failed(&resp) || resp.header("x-aaccountid").is_none()) =>
        {
            Ok(Verdict::Anonymous(format!(
                "/myself answered {} but /project/search served the credential as anonymous",
                myself.status.as_u16()
            )))
        }
        // The side probe is only for telling anonymous from rejected; /myself already
        // gave an explicit refusal, which stands on its own.
        _ => Ok(Verdict::Rejected(myself.status.as_u16())),
    }
}
