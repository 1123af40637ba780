//! Confluence Cloud. With anonymous access enabled, bad credentials get a 200 describing
//! the anonymous user (`type: anonymous`, no `accountId`) instead of an error.

use super::{get_json, str_field, Answer, ProbeTarget, Verdict};
use crate::http::{FetchError, HttpClient};

pub(super) const CURRENT_USER: &str = "/wiki/rest/api/user/current";

pub(super) async fn probe(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
) -> Result<Verdict, FetchError> {
    let json = match get_json(client, target, CURRENT_USER).await? {
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
