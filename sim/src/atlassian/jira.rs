//! Jira Cloud: `GET {prefix}/rest/api/3/myself`, the probe, and
//! `GET {prefix}/rest/api/3/project/search`, the exporter's anonymous side probe.
//!
//! * `/myself` never allows anonymous access: every failed login is a `401` with
//!   `X-Seraph-LoginReason: AUTHENTICATED_FAILED`.
//! * `/project/search` silently falls back to an anonymous session (`200`, empty list,
//!   `AUTHENTICATED_FAILED`, `_lout` cookie) for failed logins on sites with anonymous
//!   access.
//!
//! That pair is how an expired or revoked Jira token shows up as "anonymous" rather than
//! "rejected" on an open site (README.md, "How tokens are classified").

use axum::http::header::{SET_COOKIE, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{display_name, JIRA_REALM, X_AACCOUNTID, X_SERAPH_LOGINREASON};
use crate::auth::Login;
use crate::respond::{insert_header, json_response};
use crate::Credential;

pub(crate) const MYSELF: &str = "/rest/api/3/myself";
pub(crate) const PROJECT_SEARCH: &str = "/rest/api/3/project/search";

fn unauthorized() -> Response {
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        json!({"message": "Client must be authenticated to access this resource.", "status-code": 401}),
    );
    insert_header(&mut resp, X_SERAPH_LOGINREASON, "AUTHENTICATED_FAILED");
    insert_header(&mut resp, WWW_AUTHENTICATE, JIRA_REALM);
    resp
}

fn authenticated_headers(resp: &mut Response, cred: &Credential) {
    insert_header(resp, X_AACCOUNTID, &cred.account_id);
    insert_header(resp, X_SERAPH_LOGINREASON, "OK");
    insert_header(resp, SET_COOKIE, "atlassian.xsrf.token=SIMXSRF_lin; Path=/");
}

pub(crate) fn myself(login: Login, base: &str) -> Response {
    match login {
        Login::Authenticated(cred) => {
            let mut resp = json_response(
                StatusCode::OK,
                json!({
                    "self": format!("{base}/rest/api/3/user?accountId={}", cred.account_id),
                    "accountId": cred.account_id,
                    "accountType": "atlassian",
                    "emailAddress": cred.email,
                    "displayName": display_name(&cred),
                    "active": true,
                    "timeZone": "UTC",
                    "locale": "en_US",
                }),
            );
            authenticated_headers(&mut resp, &cred);
            resp
        }
        Login::Failed | Login::Mistyped | Login::Anonymous => unauthorized(),
    }
}

fn project_page(base: &str, with_projects: bool) -> Value {
    let self_url = format!("{base}/rest/api/3/project/search?maxResults=1&startAt=0");
    if with_projects {
        json!({
            "self": self_url,
            "nextPage": format!("{base}/rest/api/3/project/search?maxResults=1&startAt=1"),
            "maxResults": 1,
            "startAt": 0,
            "total": 3,
            "isLast": false,
            "values": [{"id": "10000", "key": "OPS", "name": "Operations"}],
        })
    } else {
        json!({
            "self": self_url,
            "maxResults": 1,
            "startAt": 0,
            "total": 0,
            "isLast": true,
            "values": [],
        })
    }
}

pub(crate) fn project_search(login: Login, base: &str, open: bool) -> Response {
    match login {
        Login::Authenticated(cred) => {
            let mut resp = json_response(StatusCode::OK, project_page(base, true));
            authenticated_headers(&mut resp, &cred);
            resp
        }
        Login::Failed if open => {
            let mut resp = json_response(StatusCode::OK, project_page(base, false));
            insert_header(&mut resp, X_SERAPH_LOGINREASON, "AUTHENTICATED_FAILED");
            insert_header(
                &mut resp,
                SET_COOKIE,
                "atlassian.xsrf.token=SIMXSRF_lout; Path=/",
            );
            resp
        }
        Login::Anonymous if open => json_response(StatusCode::OK, project_page(base, false)),
        Login::Failed | Login::Anonymous | Login::Mistyped => unauthorized(),
    }
}

pub(crate) fn myself_without_account_id(base: &str, cred: &Credential) -> Response {
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "self": format!("{base}/rest/api/3/myself"),
            "accountType": "atlassian",
            "emailAddress": cred.email,
            "displayName": display_name(cred),
            "active": true,
            "timeZone": "UTC",
            "locale": "en_US",
        }),
    );
    insert_header(&mut resp, X_SERAPH_LOGINREASON, "OK");
    resp
}

pub(crate) fn project_search_without_account_id(base: &str) -> Response {
    let mut resp = json_response(StatusCode::OK, project_page(base, true));
    insert_header(&mut resp, X_SERAPH_LOGINREASON, "OK");
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    // --- Jira /myself -----------------------------------------------------

    #[tokio::test]
    async fn jira_myself_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-aaccountid").as_deref(), Some(ACCOUNT));
        assert_eq!(r.header("x-seraph-loginreason").as_deref(), Some("OK"));
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let v = r.json();
        assert_eq!(v["accountId"], ACCOUNT);
        assert_eq!(v["emailAddress"], EMAIL);
        assert_eq!(v["accountType"], "atlassian");
        assert_eq!(v["active"], true);
        assert!(v["self"].as_str().unwrap().starts_with(&base));
    }

    #[tokio::test]
    async fn jira_myself_email_is_case_insensitive() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/myself"),
            "ALICE@Example.COM",
            "tok",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["accountId"], ACCOUNT);
    }

    #[tokio::test]
    async fn jira_myself_wrong_email_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/myself"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_username_is_not_accepted() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), USER, "tok").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_dead_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_mistyped_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/myself"), EMAIL, "tok-typo").await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_no_auth_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/rest/api/3/myself")).await;
        assert_jira_401(&r);
    }

    #[tokio::test]
    async fn jira_myself_bearer_or_malformed_auth_is_401() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let url = format!("{base}/rest/api/3/myself");
        assert_jira_401(&bearer(&url, "tok").await);
        let r = send(
            client()
                .get(&url)
                .header("authorization", "Basic !!!not-base64"),
        )
        .await;
        assert_jira_401(&r);
    }

    // --- Jira /project/search ----------------------------------------------

    #[tokio::test]
    async fn project_search_valid() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search?maxResults=1"),
            EMAIL,
            "tok",
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-aaccountid").as_deref(), Some(ACCOUNT));
        assert_eq!(r.header("x-seraph-loginreason").as_deref(), Some("OK"));
        let v = r.json();
        assert_eq!(v["total"], 3);
        assert_eq!(v["isLast"], false);
        assert_eq!(v["values"][0]["key"], "OPS");
    }

    #[tokio::test]
    async fn project_search_dead_on_open_site_falls_back_to_anonymous() {
        let (_r, base) = with("tok", Behaviour::Dead).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search?maxResults=1"),
            EMAIL,
            "tok",
        )
        .await;
        assert_anonymous_project_page(&r);
        assert_eq!(
            r.header("x-seraph-loginreason").as_deref(),
            Some("AUTHENTICATED_FAILED")
        );
        assert!(r.header("set-cookie").unwrap().contains("_lout"));
    }

    #[tokio::test]
    async fn project_search_wrong_email_on_open_site_falls_back_to_anonymous() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(
            &format!("{base}/rest/api/3/project/search"),
            "bob@example.com",
            "tok",
        )
        .await;
        assert_anonymous_project_page(&r);
        assert_eq!(
            r.header("x-seraph-loginreason").as_deref(),
            Some("AUTHENTICATED_FAILED")
        );
    }

    #[tokio::test]
    async fn project_search_no_auth_on_open_site_is_anonymous_without_seraph() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = anon(&format!("{base}/rest/api/3/project/search")).await;
        assert_anonymous_project_page(&r);
        assert!(r.header("x-seraph-loginreason").is_none());
    }

    #[tokio::test]
    async fn project_search_dead_on_closed_site_is_401() {
        let sim = Simulator::new();
        sim.add_credential("tok", cred(Behaviour::Dead));
        sim.close_site("");
        let running = start(&sim).await;
        let url = format!("{}/rest/api/3/project/search", running.base_url());
        assert_jira_401(&basic(&url, EMAIL, "tok").await);
        // No auth on a closed site is rejected too.
        assert_jira_401(&anon(&url).await);
    }

    #[tokio::test]
    async fn project_search_mistyped_is_401_even_on_open_site() {
        let (_r, base) = with("tok", Behaviour::Valid).await;
        let r = basic(&format!("{base}/rest/api/3/project/search"), EMAIL, "nope").await;
        assert_jira_401(&r);
    }
}
