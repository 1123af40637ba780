//! Organization admin API keys: a Bearer key is valid when `/admin/v1/orgs` lists the
//! organizations it can manage.

use super::{get_json, Answer, ProbeTarget, Verdict};
use crate::http::{FetchError, HttpClient};
use crate::provider::ErrorReason;

pub(super) const ORGS: &str = "/admin/v1/orgs";

pub(super) async fn probe(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
) -> Result<Verdict, FetchError> {
    let json = match get_json(client, target, ORGS).await? {
        Answer::Refused(status) => return Ok(Verdict::Rejected(status)),
        Answer::Json(json) => json,
    };
    if json.get("data").is_some_and(serde_json::Value::is_array) {
        Ok(Verdict::Authenticated {
            account_id: None,
            email: None,
        })
    } else {
        Err(FetchError::new(
            ErrorReason::BadResponse,
            "/admin/v1/orgs answered 200 without a data array",
        ))
    }
}
