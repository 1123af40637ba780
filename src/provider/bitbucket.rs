//! Bitbucket Cloud. `/2.0/user` answers 401 for bad credentials; no anonymous fallback has
//! been reported, but a 200 without any account id is still treated as anonymous.

use super::{is_rejection, str_field, unexpected_status, ProbeTarget, Verdict};
use crate::http::{FetchError, HttpClient};

pub(super) const USER: &str = "/2.0/user";

pub(super) async fn probe(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
) -> Result<Verdict, FetchError> {
    let resp = target.get(client, USER).await?;
    if is_rejection(&resp) {
        return Ok(Verdict::Rejected(resp.status.as_u16()));
    }
    if !resp.status.is_success() {
        return Err(unexpected_status(&resp));
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
