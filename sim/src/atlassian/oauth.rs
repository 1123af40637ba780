//! Atlassian's OAuth 2.0 token endpoint for service accounts, `POST {prefix}/oauth/token`
//! (`auth.atlassian.com` in production): the client-credentials grant exchanges a client
//! id and secret for an access token valid for `expires_in` seconds (3,600 at Atlassian),
//! which the API gateway (`/ex/jira/{cloudId}`, `/ex/confluence/{cloudId}`) then accepts as
//! Bearer. A wrong client or secret is `401 {"error":"invalid_client"}`, a grant other
//! than `client_credentials` `400 {"error":"unsupported_grant_type"}`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::respond::json_response;
use crate::Credential;

pub(crate) const TOKEN: &str = "/oauth/token";

/// A registered client: its secret, the service account it authenticates as, and the
/// lifetime of the access tokens it gets.
struct Client {
    secret: String,
    account: Credential,
    expires_in: Duration,
}

/// Clients, the access tokens issued to them, and how often each exchanged.
#[derive(Default)]
pub(crate) struct OAuthState {
    clients: HashMap<String, Client>,
    tokens: HashMap<String, (Credential, Instant)>,
    exchanges: HashMap<String, u64>,
    issued: u64,
}

impl OAuthState {
    pub(crate) fn add_client(
        &mut self,
        client_id: &str,
        secret: &str,
        account: Credential,
        expires_in: Duration,
    ) {
        self.clients.insert(
            client_id.to_string(),
            Client {
                secret: secret.to_string(),
                account,
                expires_in,
            },
        );
    }

    pub(crate) fn exchanges(&self, client_id: &str) -> u64 {
        self.exchanges.get(client_id).copied().unwrap_or(0)
    }

    /// Every access token issued so far stops working (as if they had expired early).
    pub(crate) fn expire_all(&mut self) {
        self.tokens.clear();
    }

    /// The service account a live access token belongs to.
    pub(crate) fn account(&self, token: &str) -> Option<Credential> {
        self.tokens
            .get(token)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(c, _)| c.clone())
    }

    /// Answers one token request (the form body as sent).
    pub(crate) fn exchange(&mut self, form: &str) -> Response {
        let fields: HashMap<String, String> = url::form_urlencoded::parse(form.as_bytes())
            .into_owned()
            .collect();
        let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        if field("grant_type") != "client_credentials" {
            return error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
        }
        let id = field("client_id");
        *self.exchanges.entry(id.to_string()).or_default() += 1;
        let Some(client) = self
            .clients
            .get(id)
            .filter(|c| c.secret == field("client_secret"))
        else {
            return error(StatusCode::UNAUTHORIZED, "invalid_client");
        };
        self.issued += 1;
        let token = format!("sim-access-{id}-{}", self.issued);
        let (account, lifetime) = (client.account.clone(), client.expires_in);
        self.tokens
            .insert(token.clone(), (account, Instant::now() + lifetime));
        json_response(
            StatusCode::OK,
            json!({
                "access_token": token,
                "expires_in": lifetime.as_secs(),
                "token_type": "Bearer",
                "scope": field("scope"),
            }),
        )
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    json_response(
        status,
        json!({"error": code, "error_description": "the simulated token endpoint refused the request"}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::test_support::*;
    use crate::{Behaviour, Simulator};

    async fn token(base: &str, form: &str) -> (u16, serde_json::Value) {
        let resp = client()
            .post(format!("{base}/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (
            status,
            serde_json::from_str(&resp.text().await.unwrap()).unwrap(),
        )
    }

    async fn myself(base: &str, bearer: &str) -> u16 {
        client()
            .get(format!("{base}/ex/jira/c1/rest/api/3/myself"))
            .header("authorization", format!("Bearer {bearer}"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn client_credentials_give_a_bearer_token_for_the_gateway_until_it_expires() {
        let sim = Simulator::new();
        sim.add_oauth_client(
            "cid",
            "csecret",
            cred(Behaviour::Valid),
            Duration::from_secs(3600),
        );
        let running = start(&sim).await;
        let base = running.base_url();
        let (status, body) = token(
            &base,
            "grant_type=client_credentials&client_id=cid&client_secret=csecret",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["expires_in"], 3600);
        let access = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(myself(&base, &access).await, 200);
        // Not on a site URL: the access token works only through the gateway.
        let site = client()
            .get(format!("{base}/rest/api/3/myself"))
            .header("authorization", format!("Bearer {access}"))
            .send()
            .await
            .unwrap();
        assert_eq!(site.status().as_u16(), 401);
        sim.expire_access_tokens();
        assert_eq!(myself(&base, &access).await, 401);
        assert_eq!(sim.oauth_exchanges("cid"), 1);
    }

    #[tokio::test]
    async fn a_wrong_secret_or_grant_is_refused_like_atlassian() {
        let sim = Simulator::new();
        sim.add_oauth_client(
            "cid",
            "csecret",
            cred(Behaviour::Valid),
            Duration::from_secs(60),
        );
        let running = start(&sim).await;
        let base = running.base_url();
        let (status, body) = token(
            &base,
            "grant_type=client_credentials&client_id=cid&client_secret=nope",
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client"))
        );
        let (status, body) = token(
            &base,
            "grant_type=password&client_id=cid&client_secret=csecret",
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("unsupported_grant_type"))
        );
        assert_eq!(
            sim.oauth_exchanges("cid"),
            1,
            "the refused secret counts, the bad grant never named a client"
        );
    }
}
