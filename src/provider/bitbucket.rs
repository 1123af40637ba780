//! Bitbucket Cloud. `/2.0/user` answers 401 for bad credentials; no anonymous fallback has
//! been reported, but a 200 without any account id is still treated as anonymous.

use super::{get_json, str_field, Answer, ProbeTarget, Verdict};
use crate::http::{FetchError, HttpClient};

pub(super) const USER: &str = "/2.0/user";

pub(super) async fn probe(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
) -> Result<Verdict, FetchError> {
    let json = match get_json(client, target, USER).await? {
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
