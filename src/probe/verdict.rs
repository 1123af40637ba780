//! What a provider concludes from the vendor's answer, and the vendor-neutral identity
//! check that turns it into an [`Outcome`].

use super::Outcome;

/// A provider's conclusion, before the identity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The vendor accepted the credential as this account (either may be unknown).
    Authenticated {
        account_id: Option<String>,
        email: Option<String>,
    },
    /// The vendor silently served the credential as anonymous.
    Anonymous(String),
    /// The vendor refused the credential outright.
    Rejected(u16),
}

/// What the vendor itself told about the credential, alongside the verdict (or an error:
/// a refusal may still name the credential's scopes). Unix seconds throughout. Providers
/// fill in what their API reports; everything else stays `None`, and the state and
/// metrics treat every vendor alike.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    pub expires_at: Option<i64>,
    pub created_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub scopes: Option<Vec<String>>,
    pub credential_type: Option<String>,
}

impl Facts {
    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }
}

/// Who the configured credential is expected to belong to.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    pub account_id: Option<&'a str>,
    pub email: Option<&'a str>,
}

impl Verdict {
    /// `expected.account_id` wins; otherwise the expected email is compared with the one
    /// the API returned, case-insensitively, when it returned one (privacy settings may
    /// hide it).
    pub fn judge(self, expected: Expected<'_>) -> Outcome {
        match self {
            Verdict::Anonymous(detail) => Outcome::Anonymous { detail },
            Verdict::Rejected(status) => Outcome::Rejected { status },
            Verdict::Authenticated { account_id, email } => {
                let mismatch = match (expected.account_id, account_id.as_deref()) {
                    (Some(want), Some(got)) => want != got,
                    (Some(_), None) => false,
                    (None, _) => match (expected.email, email.as_deref()) {
                        (Some(want), Some(got)) if !got.is_empty() => {
                            !want.eq_ignore_ascii_case(got)
                        }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticated(id: &str, email: Option<&str>) -> Verdict {
        Verdict::Authenticated {
            account_id: Some(id.into()),
            email: email.map(Into::into),
        }
    }

    #[test]
    fn identity_rules() {
        let by_email = Expected {
            account_id: None,
            email: Some("Mia@Example.com"),
        };
        assert!(matches!(
            authenticated("a1", Some("mia@example.com")).judge(by_email),
            Outcome::Valid { .. }
        ));
        assert!(matches!(
            authenticated("a1", Some("bob@example.com")).judge(by_email),
            Outcome::Mismatch { .. }
        ));
        // hidden email (privacy setting): nothing to compare, so not a mismatch
        assert!(matches!(
            authenticated("a1", None).judge(by_email),
            Outcome::Valid { .. }
        ));
        let by_id = Expected {
            account_id: Some("a1"),
            email: Some("bob@example.com"),
        };
        assert!(matches!(
            authenticated("a1", Some("other@example.com")).judge(by_id),
            Outcome::Valid { .. }
        ));
        assert_eq!(
            authenticated("a2", None).judge(by_id),
            Outcome::Mismatch {
                account_id: "a2".into()
            }
        );
        assert_eq!(
            Verdict::Rejected(401).judge(by_id),
            Outcome::Rejected { status: 401 }
        );
    }

    #[test]
    fn facts_are_empty_until_a_vendor_reports_one() {
        assert!(Facts::default().is_empty());
        let f = Facts {
            scopes: Some(vec![]),
            ..Facts::default()
        };
        assert!(!f.is_empty(), "an empty scope list is still a report");
    }

    #[test]
    fn an_empty_email_from_the_api_is_hidden_not_a_mismatch() {
        let by_email = Expected {
            account_id: None,
            email: Some("mia@example.com"),
        };
        assert_eq!(
            authenticated("a1", Some("")).judge(by_email),
            Outcome::Valid {
                account_id: Some("a1".into())
            }
        );
    }
}
