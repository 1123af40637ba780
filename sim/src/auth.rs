//! `Authorization` (and GitLab's `PRIVATE-TOKEN`) headers as the simulated APIs read them,
//! and the login decisions the products share: a failed basic login (right secret, wrong
//! user, or a dead secret) is what Atlassian silently serves as anonymous where the
//! endpoint and site allow it, while a mistyped secret or a malformed header is rejected
//! everywhere. GitHub and GitLab take the secret alone ([`token_login`]).

use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use base64::Engine as _;

use crate::{Behaviour, Credential};

/// A request's `Authorization` header, parsed.
pub(crate) enum AuthHeader {
    None,
    Basic {
        user: String,
        secret: String,
    },
    Bearer {
        secret: String,
    },
    /// GitLab's `PRIVATE-TOKEN: <secret>` (read when there is no `Authorization`).
    PrivateToken {
        secret: String,
    },
    /// Present but unparseable (unknown scheme, bad base64, no colon, ...).
    Malformed,
}

impl AuthHeader {
    pub(crate) fn secret(&self) -> Option<&str> {
        match self {
            AuthHeader::Basic { secret, .. }
            | AuthHeader::Bearer { secret }
            | AuthHeader::PrivateToken { secret } => Some(secret),
            AuthHeader::None | AuthHeader::Malformed => None,
        }
    }
}

pub(crate) fn parse_auth(headers: &HeaderMap) -> AuthHeader {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return match headers.get("private-token").map(|v| v.to_str()) {
            None => AuthHeader::None,
            Some(Ok(secret)) if !secret.trim().is_empty() => AuthHeader::PrivateToken {
                secret: secret.trim().to_string(),
            },
            Some(_) => AuthHeader::Malformed,
        };
    };
    let Ok(value) = value.to_str() else {
        return AuthHeader::Malformed;
    };
    let value = value.trim();
    let (scheme, rest) = match value.split_once(' ') {
        Some((s, r)) => (s, r.trim()),
        None => return AuthHeader::Malformed,
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest));
        let Ok(decoded) = decoded else {
            return AuthHeader::Malformed;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return AuthHeader::Malformed;
        };
        match decoded.split_once(':') {
            Some((user, secret)) => AuthHeader::Basic {
                user: user.to_string(),
                secret: secret.to_string(),
            },
            None => AuthHeader::Malformed,
        }
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        AuthHeader::Bearer {
            secret: rest.to_string(),
        }
    } else {
        AuthHeader::Malformed
    }
}

/// Result of checking basic-auth credentials against the simulated site.
pub(crate) enum Login {
    Authenticated(Credential),
    /// Known secret with the wrong user, or a Dead secret: Atlassian silently
    /// treats these as anonymous where anonymous access is possible.
    Failed,
    /// Unknown secret, wrong scheme or malformed header: rejected everywhere.
    Mistyped,
    /// No `Authorization` header.
    Anonymous,
}

pub(crate) fn basic_login(
    auth: &AuthHeader,
    cred: Option<&Credential>,
    allow_username: bool,
) -> Login {
    match auth {
        AuthHeader::None => Login::Anonymous,
        AuthHeader::Malformed | AuthHeader::Bearer { .. } | AuthHeader::PrivateToken { .. } => {
            Login::Mistyped
        }
        AuthHeader::Basic { user, .. } => match cred {
            None => Login::Mistyped,
            Some(cred) => {
                if matches!(cred.behaviour, Behaviour::Dead | Behaviour::Inactive { .. }) {
                    return Login::Failed;
                }
                let user_ok = user.eq_ignore_ascii_case(&cred.email)
                    || (allow_username
                        && !cred.username.is_empty()
                        && user.eq_ignore_ascii_case(&cred.username));
                if user_ok {
                    Login::Authenticated(cred.clone())
                } else {
                    Login::Failed
                }
            }
        },
    }
}

/// A Bearer login on the API gateway: a known, live credential authenticates; a dead one
/// fails (the gateway has no anonymous fallback, so the endpoints answer 401 either way).
pub(crate) fn bearer_login(cred: Option<&Credential>) -> Login {
    match cred {
        None => Login::Mistyped,
        Some(c) if matches!(c.behaviour, Behaviour::Dead) => Login::Failed,
        Some(c) => Login::Authenticated(c.clone()),
    }
}

/// Whether a Bearer admin API key is accepted: a known secret that authenticates (`Valid`,
/// or `Slow`, which answers as `Valid` once it has slept). Dead keys have no anonymous
/// fallback on the Admin API.
pub(crate) fn admin_key_accepted(auth: &AuthHeader, cred: Option<&Credential>) -> bool {
    matches!(auth, AuthHeader::Bearer { .. })
        && cred.is_some_and(|c| matches!(c.behaviour, Behaviour::Valid | Behaviour::Slow { .. }))
}

/// Result of a login with the secret alone (GitHub, GitLab).
pub(crate) enum TokenLogin<'a> {
    Accepted(&'a Credential),
    /// Known, but expired or deactivated ([`Behaviour::Inactive`]).
    Inactive {
        cred: &'a Credential,
        revoked: bool,
    },
    /// Unknown, dead, no secret, or not sent the way the vendor reads it.
    Refused,
}

/// Checks a secret sent as Bearer (or, where `private_token` is true, in `PRIVATE-TOKEN`).
pub(crate) fn token_login<'a>(
    auth: &AuthHeader,
    cred: Option<&'a Credential>,
    private_token: bool,
) -> TokenLogin<'a> {
    let sent_right = match auth {
        AuthHeader::Bearer { .. } => true,
        AuthHeader::PrivateToken { .. } => private_token,
        AuthHeader::None | AuthHeader::Basic { .. } | AuthHeader::Malformed => false,
    };
    match cred {
        Some(cred) if sent_right => match cred.behaviour {
            Behaviour::Dead => TokenLogin::Refused,
            Behaviour::Inactive { revoked } => TokenLogin::Inactive { cred, revoked },
            _ => TokenLogin::Accepted(cred),
        },
        _ => TokenLogin::Refused,
    }
}
