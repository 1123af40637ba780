//! Confluence Cloud: `GET {prefix}/wiki/rest/api/user/current`, the probe. For a failed
//! login on a site with anonymous access it answers `200 {"type":"anonymous"}` instead of
//! a 401: the way a dead Confluence token shows up (README.md, "How tokens are
//! classified"). On a closed site, and for a mistyped secret everywhere, it is a 401.

use axum::http::header::WWW_AUTHENTICATE;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{display_name, JIRA_REALM};
use crate::auth::Login;
use crate::respond::{insert_header, json_response};
use crate::Credential;

pub(crate) const CURRENT_USER: &str = "/wiki/rest/api/user/current";

pub(crate) fn current_user(login: Login, base: &str, open: bool) -> Response {
    match login {
        Login::Authenticated(cred) => json_response(
            StatusCode::OK,
            json!({
                "type": "known",
                "accountId": cred.account_id,
                "accountType": "atlassian",
                "email": cred.email,
                "publicName": display_name(&cred),
                "displayName": display_name(&cred),
                "profilePicture": {
                    "path": "/wiki/aa-avatar/default.png",
                    "width": 48,
                    "height": 48,
                    "isDefault": true,
                },
                "_links": {
                    "self": format!("{base}/wiki/rest/api/user?accountId={}", cred.account_id),
                    "base": format!("{base}/wiki"),
                },
            }),
        ),
        Login::Failed | Login::Anonymous if open => json_response(
            StatusCode::OK,
            json!({
                "type": "anonymous",
                "displayName": "Anonymous",
                "profilePicture": {
                    "path": "/wiki/s/-1/_/images/icons/profilepics/anonymous.svg",
                    "width": 48,
                    "height": 48,
                    "isDefault": true,
                },
                "_links": {"base": format!("{base}/wiki")},
            }),
        ),
        Login::Failed | Login::Anonymous | Login::Mistyped => {
            let mut resp = json_response(
                StatusCode::UNAUTHORIZED,
                json!({
                    "statusCode": 401,
                    "data": {"authorized": false, "valid": true, "errors": [], "successful": false},
                    "message": "Unauthorized",
                }),
            );
            insert_header(&mut resp, WWW_AUTHENTICATE, JIRA_REALM);
            resp
        }
    }
}

pub(crate) fn current_user_without_account_id(cred: &Credential) -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "type": "known",
            "accountType": "atlassian",
            "email": cred.email,
            "publicName": display_name(cred),
            "displayName": display_name(cred),
        }),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    fn assert_confluence_anonymous(r: &Resp) {
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "anonymous");
        assert_eq!(v["displayName"], "Anonymous");
        assert!(v.get("accountId").is_none());
        assert!(v["profilePicture"].is_object());
    }

    // --- Confluence --------------------------------------------------------------

    #[tokio::test]
    async fn confluence_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["type"], "known");
        assert_eq!(v["accountId"], ACCOUNT);
        assert_eq!(v["email"], EMAIL);
        assert_eq!(v["accountType"], "atlassian");
    }

    #[tokio::test]
    async fn confluence_dead_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "tok").await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_wrong_email_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/wiki/rest/api/user/current"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_no_auth_on_open_site_is_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/wiki/rest/api/user/current")).await;
        assert_confluence_anonymous(&r);
    }

    #[tokio::test]
    async fn confluence_failed_login_on_closed_site_is_401() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Valid));
        sim.close_site("/wiki-closed");
        let running = start(&sim).await;
        let url = format!(
            "{}/wiki-closed/wiki/rest/api/user/current",
            running.base_url()
        );
        assert_confluence_401(&basic(&url, "bob@example.com", "tok").await);
        assert_confluence_401(&anon(&url).await);
        // Correct credentials still work on a closed site.
        let ok = basic(&url, EMAIL, "tok").await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["accountId"], ACCOUNT);
    }

    #[tokio::test]
    async fn confluence_mistyped_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/wiki/rest/api/user/current"), EMAIL, "typo").await;
        assert_confluence_401(&r);
    }
}
