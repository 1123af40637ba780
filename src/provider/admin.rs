//! Organization admin API keys: a Bearer key is valid when `/admin/v1/orgs` lists the
//! organizations it can manage.

use super::{is_rejection, unexpected_status, ProbeTarget, Verdict};
use crate::http::{FetchError, HttpClient};
use crate::provider::ErrorReason;

pub(super) const ORGS: &str = "/admin/v1/orgs";

pub(super) async fn probe(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
) -> Result<Verdict, FetchError> {
    let resp = target.get(client, ORGS).await?;
    if is_rejection(&resp) {
        return Ok(Verdict::Rejected(resp.status.as_u16()));
    }
    if !resp.status.is_success() {
        return Err(unexpected_status(&resp));
    }
    let json = resp.json()?;
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
