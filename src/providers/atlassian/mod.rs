//! Atlassian Cloud: Jira, Confluence and Bitbucket API tokens, organization admin API
//! keys, and the organization inventory (the Admin API's listing of every token and key).
//! What the Atlassian APIs answer, and why the probes look the way they do, is in README
//! "How tokens are classified" and docs/architecture.md.

pub mod admin_key;
pub mod bitbucket;
pub mod confluence;
pub mod inventory;
pub mod jira;

use crate::probe::{ErrorReason, ProbeError};
use crate::upstream::Response;

use super::ProbeCtx;

/// How Atlassian credentials start: user API tokens (`ATATT…`), admin API keys and access
/// tokens (`ATCTT…`), Bitbucket app passwords (`ATBB…`).
pub const SECRET_PREFIXES: &[&str] = &["ATATT", "ATCTT", "ATBB"];

/// What a single-request probe got back, once 3xx/429/5xx were handled by the fetch layer.
enum Answer {
    /// 2xx with a JSON body.
    Json(serde_json::Value),
    /// An explicit 401/403.
    Refused(u16),
}

/// GET `path` and sort the answer: 401/403 are refusals, other non-2xx are unexpected,
/// a 2xx must carry JSON.
async fn get_json(cx: &ProbeCtx<'_>, path: &str) -> Result<Answer, ProbeError> {
    let resp = cx.get(path).await?;
    if is_rejection(&resp) {
        return Ok(Answer::Refused(resp.status.as_u16()));
    }
    if !resp.status.is_success() {
        return Err(unexpected_status(&resp));
    }
    resp.json().map(Answer::Json)
}

fn unexpected_status(resp: &Response) -> ProbeError {
    ProbeError::new(
        ErrorReason::BadResponse,
        format!("unexpected HTTP {}", resp.status.as_u16()),
    )
}

fn is_rejection(resp: &Response) -> bool {
    matches!(resp.status.as_u16(), 401 | 403)
}

/// A non-empty string field of a JSON object.
fn str_field<'v>(json: &'v serde_json::Value, key: &str) -> Option<&'v str> {
    json.get(key)
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
}
