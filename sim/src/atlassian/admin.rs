//! The Atlassian Admin API's `GET {prefix}/admin/v1/orgs` with a Bearer admin API key:
//! the validity probe of an admin key. No anonymous fallback: a dead, unknown or
//! non-Bearer key is a 401. (The organization inventory is in `inventory`.)

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::auth::{admin_key_accepted, AuthHeader};
use crate::respond::json_response;
use crate::Credential;

pub(crate) const ORGS: &str = "/admin/v1/orgs";

pub(crate) fn orgs(auth: &AuthHeader, cred: Option<&Credential>, base: &str) -> Response {
    if admin_key_accepted(auth, cred) {
        json_response(
            StatusCode::OK,
            json!({
                "data": [{
                    "id": "sim-org-1",
                    "type": "orgs",
                    "attributes": {"name": "Simulated Org"},
                    "links": {"self": format!("{base}/admin/v1/orgs/sim-org-1")},
                }],
                "links": {"self": format!("{base}/admin/v1/orgs")},
            }),
        )
    } else {
        json_response(
            StatusCode::UNAUTHORIZED,
            json!({"code": 401, "message": "Unauthorized"}),
        )
    }
}

pub(crate) fn orgs_without_account_id(base: &str) -> Response {
    json_response(
        StatusCode::OK,
        json!({"links": {"self": format!("{base}/admin/v1/orgs")}}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    fn assert_admin_401(r: &Resp) {
        assert_eq!(r.status, 401);
        let v = r.json();
        assert_eq!(v["code"], 401);
        assert_eq!(v["message"], "Unauthorized");
        assert!(v.get("data").is_none());
    }

    // --- Admin ---------------------------------------------------------------------

    #[tokio::test]
    async fn admin_valid_key() {
        let (_r, base) = with("adminkey", Behaviour::Valid).await;
        let r = bearer(&format!("{base}/admin/v1/orgs"), "adminkey").await;
        assert_eq!(r.status, 200);
        let v = r.json();
        assert_eq!(v["data"][0]["id"], "sim-org-1");
        assert_eq!(v["data"][0]["type"], "orgs");
        assert_eq!(v["data"][0]["attributes"]["name"], "Simulated Org");
        assert!(v["links"]["self"].is_string());
    }

    #[tokio::test]
    async fn admin_invalid_keys_are_401() {
        let sim = Simulator::new();
        sim.add_credential("adminkey", cred(Behaviour::Valid));
        sim.add_credential("deadkey", cred(Behaviour::Dead));
        let running = start(&sim).await;
        let url = format!("{}/admin/v1/orgs", running.base_url());
        assert_admin_401(&bearer(&url, "unknown").await);
        assert_admin_401(&bearer(&url, "deadkey").await);
        assert_admin_401(&basic(&url, EMAIL, "adminkey").await);
        assert_admin_401(&anon(&url).await);
    }
}
