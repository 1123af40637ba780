//! Why a probe reached no conclusion: the `reason` label of `apitoken_probe_errors_total`
//! and the error every layer below the state passes up (README "How tokens are
//! classified").

use std::fmt;
use std::time::Duration;

/// Why a probe was inconclusive. An inconclusive probe never changes the token's last
/// conclusive state: an outage must not page "token invalid".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    Timeout,
    Connect,
    Tls,
    RateLimited,
    Http5xx,
    BadResponse,
    CredentialUnavailable,
    /// HTTP 403: the vendor recognised the credential but refused this call (a missing
    /// scope, an IP allowlist, a suspended product access). Not a dead token.
    Forbidden,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 8] = [
        ErrorReason::Timeout,
        ErrorReason::Connect,
        ErrorReason::Tls,
        ErrorReason::RateLimited,
        ErrorReason::Http5xx,
        ErrorReason::BadResponse,
        ErrorReason::CredentialUnavailable,
        ErrorReason::Forbidden,
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
            ErrorReason::Forbidden => "forbidden",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request or probe that reached no conclusion. `detail` is for logs and the status
/// page; it never contains request headers or credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeError {
    pub reason: ErrorReason,
    pub detail: String,
    /// The server asked us to wait this long (`Retry-After`, already clamped).
    pub retry_after: Option<Duration>,
    /// A rate-limited answer's reset time (`X-RateLimit-Reset`, `RateLimit-Reset`), as time
    /// from its arrival (the Admin APIs send it instead of `Retry-After`). The org inventory
    /// waits for it; a token probe only when its provider says the reset is the wait
    /// (`ProviderSpec::waits_for_rate_limit_reset`).
    pub rate_limit_reset: Option<Duration>,
}

impl ProbeError {
    pub fn new(reason: ErrorReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
            retry_after: None,
            rate_limit_reset: None,
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for ProbeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_reason_then_the_detail() {
        let e = ProbeError::new(ErrorReason::Http5xx, "HTTP 503");
        assert_eq!(e.to_string(), "http_5xx: HTTP 503");
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert_eq!(boxed.to_string(), "http_5xx: HTTP 503");
    }

    #[test]
    fn reason_indices_follow_the_label_order() {
        for (i, r) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r}");
        }
    }
}
