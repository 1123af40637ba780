//! Providers: one module per Atlassian product, each turning HTTP answers into a
//! [`Verdict`]; this module turns verdicts into [`Outcome`]s (identity check) and owns the
//! names the metrics use. Providers do no bookkeeping and no scheduling.

mod admin;
mod bitbucket;
mod confluence;
mod jira;

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::http::{Auth, FetchError, HttpClient, Response};
use crate::secret::{CredentialError, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Jira,
    Confluence,
    Bitbucket,
    AtlassianAdmin,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Jira => "jira",
            Provider::Confluence => "confluence",
            Provider::Bitbucket => "bitbucket",
            Provider::AtlassianAdmin => "atlassian_admin",
        }
    }

    pub fn default_site(self) -> Option<&'static str> {
        match self {
            Provider::Bitbucket => Some("https://api.bitbucket.org"),
            Provider::AtlassianAdmin => Some("https://api.atlassian.com"),
            Provider::Jira | Provider::Confluence => None,
        }
    }

    /// Jira, Confluence and Bitbucket take `email:token` basic auth; admin keys are Bearer.
    pub fn uses_basic_auth(self) -> bool {
        !matches!(self, Provider::AtlassianAdmin)
    }
}

/// Why a probe was inconclusive (the `reason` label of `apitoken_probe_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Connect,
    Tls,
    RateLimited,
    Http5xx,
    BadResponse,
    CredentialUnavailable,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 7] = [
        ErrorReason::Timeout,
        ErrorReason::Connect,
        ErrorReason::Tls,
        ErrorReason::RateLimited,
        ErrorReason::Http5xx,
        ErrorReason::BadResponse,
        ErrorReason::CredentialUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "timeout",
            ErrorReason::Connect => "connect",
            ErrorReason::Tls => "tls",
            ErrorReason::RateLimited => "rate_limited",
            ErrorReason::Http5xx => "http_5xx",
            ErrorReason::BadResponse => "bad_response",
            ErrorReason::CredentialUnavailable => "credential_unavailable",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The result of one probe: exactly one per probe (SPEC §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as the expected identity.
    Valid { account_id: Option<String> },
    /// Authenticated, but as a different account than configured.
    Mismatch { account_id: String },
    /// The site silently served the credential as anonymous.
    Anonymous { detail: String },
    /// Explicitly refused (401/403) with no anonymous fallback.
    Rejected { status: u16 },
    /// No conclusion: the last conclusive state must be kept.
    Error(FetchError),
}

/// The `result` label values of `apitoken_probes_total`, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    Valid,
    Mismatch,
    Anonymous,
    Rejected,
    Error,
}

impl OutcomeKind {
    pub const ALL: [OutcomeKind; 5] = [
        OutcomeKind::Valid,
        OutcomeKind::Mismatch,
        OutcomeKind::Anonymous,
        OutcomeKind::Rejected,
        OutcomeKind::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Valid => "valid",
            OutcomeKind::Mismatch => "mismatch",
            OutcomeKind::Anonymous => "anonymous",
            OutcomeKind::Rejected => "rejected",
            OutcomeKind::Error => "error",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl Outcome {
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Outcome::Valid { .. } => OutcomeKind::Valid,
            Outcome::Mismatch { .. } => OutcomeKind::Mismatch,
            Outcome::Anonymous { .. } => OutcomeKind::Anonymous,
            Outcome::Rejected { .. } => OutcomeKind::Rejected,
            Outcome::Error(_) => OutcomeKind::Error,
        }
    }

    pub fn account_id(&self) -> Option<&str> {
        match self {
            Outcome::Valid { account_id } => account_id.as_deref(),
            Outcome::Mismatch { account_id } => Some(account_id),
            _ => None,
        }
    }

    /// How long until the next probe: the interval, or longer when the server asked for
    /// it (`Retry-After`, already clamped). Never shorter than the interval.
    pub fn next_delay(&self, interval: Duration) -> Duration {
        match self {
            Outcome::Error(e) => e.retry_after.map_or(interval, |ra| ra.max(interval)),
            _ => interval,
        }
    }

    pub fn timeout(after: Duration) -> Outcome {
        Outcome::Error(FetchError::new(
            ErrorReason::Timeout,
            format!(
                "no conclusive answer within {}",
                humantime::format_duration(after)
            ),
        ))
    }

    pub fn credential_unavailable(e: &CredentialError) -> Outcome {
        Outcome::Error(FetchError::new(
            ErrorReason::CredentialUnavailable,
            e.to_string(),
        ))
    }
}

/// What a provider concluded before the identity check.
#[derive(Debug)]
enum Verdict {
    Authenticated {
        account_id: Option<String>,
        email: Option<String>,
    },
    Anonymous(String),
    Rejected(u16),
}

/// Everything a probe needs about the credential.
pub struct ProbeTarget<'a> {
    pub provider: Provider,
    pub site: &'a Url,
    pub email: Option<&'a str>,
    pub expected_account_id: Option<&'a str>,
    pub secret: &'a Secret,
}

impl ProbeTarget<'_> {
    fn auth(&self) -> Auth<'_> {
        match self.email {
            Some(user) if self.provider.uses_basic_auth() => Auth::Basic {
                user,
                secret: self.secret,
            },
            _ => Auth::Bearer(self.secret),
        }
    }

    /// `{site}{path}`: the site may carry a path prefix (the API gateway form
    /// `https://api.atlassian.com/ex/jira/{cloudId}`), so paths are appended, not joined.
    fn url(&self, path_and_query: &str) -> Result<Url, FetchError> {
        let base = self.site.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}")).map_err(|e| {
            FetchError::new(
                ErrorReason::BadResponse,
                format!("cannot build probe URL: {e}"),
            )
        })
    }

    async fn get(&self, client: &HttpClient, path: &str) -> Result<Response, FetchError> {
        client.get(self.url(path)?, self.auth()).await
    }
}

/// Probes one credential once. The caller applies the probe timeout around this.
pub async fn probe(client: &HttpClient, target: &ProbeTarget<'_>) -> Outcome {
    let verdict = match target.provider {
        Provider::Jira => jira::probe(client, target).await,
        Provider::Confluence => confluence::probe(client, target).await,
        Provider::Bitbucket => bitbucket::probe(client, target).await,
        Provider::AtlassianAdmin => admin::probe(client, target).await,
    };
    match verdict {
        Ok(v) => check_identity(v, target),
        Err(e) => Outcome::Error(e),
    }
}

/// `expected_account_id` wins; otherwise the configured email is compared with the one the
/// API returned, case-insensitively, when it returned one (privacy settings may hide it).
fn check_identity(verdict: Verdict, target: &ProbeTarget<'_>) -> Outcome {
    match verdict {
        Verdict::Anonymous(detail) => Outcome::Anonymous { detail },
        Verdict::Rejected(status) => Outcome::Rejected { status },
        Verdict::Authenticated { account_id, email } => {
            let mismatch = match (target.expected_account_id, account_id.as_deref()) {
                (Some(expected), Some(actual)) => expected != actual,
                (Some(_), None) => false,
                (None, _) => match (target.email, email.as_deref()) {
                    (Some(want), Some(got)) if !got.is_empty() => !want.eq_ignore_ascii_case(got),
                    _ => false,
                },
            };
            match account_id {
                Some(account_id) if mismatch => Outcome::Mismatch { account_id },
                account_id => Outcome::Valid { account_id },
            }
        }
    }
}

/// What a single-request probe got back, once 3xx/429/5xx were handled by the fetch layer.
enum Answer {
    /// 2xx with a JSON body.
    Json(serde_json::Value),
    /// An explicit 401/403.
    Refused(u16),
}

/// GET `path` and sort the answer: 401/403 are refusals, other non-2xx are unexpected,
/// a 2xx must carry JSON.
async fn get_json(
    client: &HttpClient,
    target: &ProbeTarget<'_>,
    path: &str,
) -> Result<Answer, FetchError> {
    let resp = target.get(client, path).await?;
    if is_rejection(&resp) {
        return Ok(Answer::Refused(resp.status.as_u16()));
    }
    if !resp.status.is_success() {
        return Err(unexpected_status(&resp));
    }
    resp.json().map(Answer::Json)
}

fn unexpected_status(resp: &Response) -> FetchError {
    FetchError::new(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(
        email: Option<&'a str>,
        expected: Option<&'a str>,
        site: &'a Url,
        secret: &'a Secret,
    ) -> ProbeTarget<'a> {
        ProbeTarget {
            provider: Provider::Jira,
            site,
            email,
            expected_account_id: expected,
            secret,
        }
    }

    fn authenticated(id: &str, email: Option<&str>) -> Verdict {
        Verdict::Authenticated {
            account_id: Some(id.into()),
            email: email.map(Into::into),
        }
    }

    #[test]
    fn identity_rules() {
        let site = Url::parse("https://x").unwrap();
        let s = Secret::new("s");
        let t = target(Some("Mia@Example.com"), None, &site, &s);
        assert!(matches!(
            check_identity(authenticated("a1", Some("mia@example.com")), &t),
            Outcome::Valid { .. }
        ));
        assert!(matches!(
            check_identity(authenticated("a1", Some("bob@example.com")), &t),
            Outcome::Mismatch { .. }
        ));
        // hidden email (privacy setting): nothing to compare, so not a mismatch
        assert!(matches!(
            check_identity(authenticated("a1", None), &t),
            Outcome::Valid { .. }
        ));
        let t = target(Some("bob@example.com"), Some("a1"), &site, &s);
        assert!(matches!(
            check_identity(authenticated("a1", Some("other@example.com")), &t),
            Outcome::Valid { .. }
        ));
        assert_eq!(
            check_identity(authenticated("a2", None), &t),
            Outcome::Mismatch {
                account_id: "a2".into()
            }
        );
    }

    #[test]
    fn probe_url_keeps_the_site_path_prefix() {
        let site = Url::parse("https://api.atlassian.com/ex/jira/abc-123").unwrap();
        let s = Secret::new("s");
        let t = target(Some("e"), None, &site, &s);
        assert_eq!(
            t.url("/rest/api/3/myself").unwrap().as_str(),
            "https://api.atlassian.com/ex/jira/abc-123/rest/api/3/myself"
        );
    }
}
