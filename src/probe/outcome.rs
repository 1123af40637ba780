//! The result of one probe, exactly one per probe (README "How tokens are classified").

use std::time::Duration;

use super::{ErrorReason, ProbeError};
use crate::secret::CredentialError;

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as the expected identity.
    Valid { account_id: Option<String> },
    /// Authenticated, but as a different account than configured.
    Mismatch { account_id: String },
    /// The site silently served the credential as anonymous.
    Anonymous { detail: String },
    /// Explicitly refused with no anonymous fallback.
    Rejected { status: u16 },
    /// No conclusion: the last conclusive state must be kept.
    Error(ProbeError),
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
        Outcome::Error(ProbeError::new(
            ErrorReason::Timeout,
            format!(
                "no conclusive answer within {}",
                humantime::format_duration(after)
            ),
        ))
    }

    pub fn credential_unavailable(e: &CredentialError) -> Outcome {
        Outcome::Error(ProbeError::new(
            ErrorReason::CredentialUnavailable,
            e.to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_extends_but_never_shortens_the_interval() {
        let interval = Duration::from_secs(60);
        let mut e = ProbeError::new(ErrorReason::RateLimited, "HTTP 429");
        e.retry_after = Some(Duration::from_secs(600));
        assert_eq!(
            Outcome::Error(e.clone()).next_delay(interval),
            Duration::from_secs(600)
        );
        e.retry_after = Some(Duration::from_secs(5));
        assert_eq!(Outcome::Error(e).next_delay(interval), interval);
        assert_eq!(
            Outcome::Rejected { status: 401 }.next_delay(interval),
            interval
        );
    }

    #[test]
    fn only_authenticated_outcomes_name_an_account() {
        let valid = Outcome::Valid {
            account_id: Some("acc-1".into()),
        };
        assert_eq!(valid.account_id(), Some("acc-1"));
        let mismatch = Outcome::Mismatch {
            account_id: "acc-2".into(),
        };
        assert_eq!(mismatch.account_id(), Some("acc-2"));
        assert_eq!(Outcome::Valid { account_id: None }.account_id(), None);
        assert_eq!(
            Outcome::Anonymous {
                detail: "anonymous".into()
            }
            .account_id(),
            None
        );
        assert_eq!(Outcome::Rejected { status: 401 }.account_id(), None);
    }
}
