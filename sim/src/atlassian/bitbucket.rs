//! Bitbucket Cloud: `GET {prefix}/2.0/user`, the probe. No anonymous fallback: every
//! failed login is a 401. The basic-auth user may be the account's email or its username
//! (app passwords are used with the username).

use axum::http::header::{HeaderName, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::display_name;
use crate::auth::Login;
use crate::respond::{insert_header, json_response};
use crate::{Credential, ScopedToken};

pub(crate) const USER: &str = "/2.0/user";
const READ_USER: &str = "read:user:bitbucket";
const X_CREDENTIAL_TYPE: HeaderName = HeaderName::from_static("x-credential-type");
const X_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-oauth-scopes");
const X_ACCEPTED_OAUTH_SCOPES: HeaderName = HeaderName::from_static("x-accepted-oauth-scopes");
const BITBUCKET_REALM: &str = "Basic realm=\"Bitbucket.org HTTP\"";

/// Deterministic Bitbucket-style `{uuid}` derived from the account id (FNV-1a).
fn bitbucket_uuid(account_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in account_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{{{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}}}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 20) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// `/2.0/user`. A scoped API token also gets `x-credential-type` and `x-oauth-scopes` on
/// every answer, and a 403 (with `x-accepted-oauth-scopes`) when it lacks
/// `read:user:bitbucket`, though it works for what its scopes allow.
pub(crate) fn user(login: Login, base: &str, scoped: Option<&ScopedToken>) -> Response {
    let mut resp = user_answer(login, base, scoped);
    if let Some(t) = scoped {
        insert_header(&mut resp, X_CREDENTIAL_TYPE, &t.credential_type);
        insert_header(&mut resp, X_OAUTH_SCOPES, &t.scopes.join(", "));
    }
    resp
}

fn user_answer(login: Login, base: &str, scoped: Option<&ScopedToken>) -> Response {
    let lacks_read_user = scoped.is_some_and(|t| !t.scopes.iter().any(|s| s == READ_USER));
    match login {
        Login::Authenticated(_) if lacks_read_user => {
            let mut resp = json_response(
                StatusCode::FORBIDDEN,
                json!({
                    "type": "error",
                    "error": {"message": "Your credentials lack one or more required privilege scopes.", "detail": {"required": [READ_USER]}},
                }),
            );
            insert_header(&mut resp, X_ACCEPTED_OAUTH_SCOPES, READ_USER);
            resp
        }
        Login::Authenticated(cred) => {
            let uuid = bitbucket_uuid(&cred.account_id);
            json_response(
                StatusCode::OK,
                json!({
                    "type": "user",
                    "uuid": uuid,
                    "account_id": cred.account_id,
                    "display_name": display_name(&cred),
                    "nickname": cred.username,
                    "username": cred.username,
                    "account_status": "active",
                    "created_on": "2020-01-01T00:00:00.000000+00:00",
                    "links": {
                        "self": {"href": format!("{base}/2.0/users/{uuid}")},
                        "avatar": {"href": format!("{base}/account/{}/avatar", cred.username)},
                        "html": {"href": format!("{base}/{uuid}/")},
                    },
                }),
            )
        }
        Login::Failed | Login::Mistyped | Login::Anonymous => {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                json!({
                    "type": "error",
                    "error": {"message": "Token is invalid, expired, or not supported for this endpoint."},
                }),
            );
            insert_header(&mut resp, WWW_AUTHENTICATE, BITBUCKET_REALM);
            resp
        }
    }
}

pub(crate) fn user_without_account_id(cred: &Credential) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "type": "user",
            "display_name": display_name(cred),
            "username": cred.username,
            "account_status": "active",
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    fn assert_bitbucket_401(r: &Resp) {
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("www-authenticate").as_deref(),
            Some("Basic realm=\"Bitbucket.org HTTP\"")
        );
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(
            v["error"]["message"],
            "Token is invalid, expired, or not supported for this endpoint."
        );
    }

    // --- Bitbucket ---------------------------------------------------------------

    #[tokio::test]
    async fn bitbucket_valid_with_email_and_with_username() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let url = format!("{base}/2.0/user");
        for user in [EMAIL, USER] {
            let r = basic(&url, user, "tok").await;
            assert_eq!(r.status, 200, "user {user}");
            let v = r.json();
            assert_eq!(v["type"], "user");
            assert_eq!(v["account_id"], ACCOUNT);
            assert_eq!(v["username"], USER);
            assert_eq!(v["account_status"], "active");
            let uuid = v["uuid"].as_str().unwrap();
            assert!(uuid.starts_with('{') && uuid.ends_with('}') && uuid.len() == 38);
            assert!(v["links"]["self"]["href"].is_string());
        }
    }

    #[tokio::test]
    async fn bitbucket_failures_are_401_without_anonymous_fallback() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.add_credential("dead", cred(Behaviour::Dead));
        let running = start(&sim).await;
        let url = format!("{}/2.0/user", running.base_url());
        assert_bitbucket_401(&basic(&url, "someone-else", "tok").await);
        assert_bitbucket_401(&basic(&url, EMAIL, "dead").await);
        assert_bitbucket_401(&basic(&url, EMAIL, "typo").await);
        assert_bitbucket_401(&anon(&url).await);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod scoped_tests {
    use crate::test_support::*;
    use crate::{Behaviour, ScopedToken, Simulator};

    #[tokio::test]
    async fn a_scoped_api_token_names_its_type_and_scopes_and_needs_read_user() {
        let sim = Simulator::new();
        sim.add_credential("with", cred(Behaviour::Valid));
        sim.add_credential("without", cred(Behaviour::Valid));
        let scoped = |scopes: &[&str]| ScopedToken {
            credential_type: "api_token".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        };
        sim.set_scoped_token(
            "with",
            scoped(&["read:user:bitbucket", "read:repository:bitbucket"]),
        );
        sim.set_scoped_token("without", scoped(&["read:repository:bitbucket"]));
        let running = start(&sim).await;
        let url = format!("{}/2.0/user", running.base_url());
        let ok = basic(&url, EMAIL, "with").await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("x-credential-type").as_deref(), Some("api_token"));
        assert_eq!(
            ok.header("x-oauth-scopes").as_deref(),
            Some("read:user:bitbucket, read:repository:bitbucket")
        );
        let forbidden = basic(&url, EMAIL, "without").await;
        assert_eq!(forbidden.status, 403);
        assert_eq!(
            forbidden.header("x-accepted-oauth-scopes").as_deref(),
            Some("read:user:bitbucket")
        );
        assert_eq!(
            forbidden.header("x-oauth-scopes").as_deref(),
            Some("read:repository:bitbucket")
        );
        // A wrong secret stays a 401, scoped or not.
        assert_eq!(basic(&url, EMAIL, "nope").await.status, 401);
    }
}
