//! Bitbucket Cloud: `GET {prefix}/2.0/user`, the probe. No anonymous fallback: every
//! failed login is a 401. The basic-auth user may be the account's email or its username
//! (app passwords are used with the username).

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::display_name;
use crate::auth::Login;
use crate::respond::{insert_header, json_response};
use crate::Credential;

pub(crate) const USER: &str = "/2.0/user";
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

pub(crate) fn user(login: Login, base: &str) -> Response {
    match login {
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
