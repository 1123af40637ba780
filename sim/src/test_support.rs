//! Helpers of the unit tests: a served simulator with one credential, requests with each
//! kind of `Authorization`, and the 401/anonymous answers several products' tests check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::header::HeaderMap as RHeaderMap;
use serde_json::Value;

use crate::{Behaviour, Credential, RunningSimulator, Simulator, TokenDetails};

pub(crate) const EMAIL: &str = "alice@example.com";
pub(crate) const USER: &str = "alice";
pub(crate) const ACCOUNT: &str = "5b10a2844c20165700ede21g";

pub(crate) fn cred(behaviour: Behaviour) -> Credential {
    Credential {
        account_id: ACCOUNT.to_string(),
        email: EMAIL.to_string(),
        username: USER.to_string(),
        behaviour,
    }
}

pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) async fn start(sim: &Simulator) -> RunningSimulator {
    sim.clone()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A simulator with one credential, served; returns (running, base_url).
pub(crate) async fn with(secret: &str, behaviour: Behaviour) -> (RunningSimulator, String) {
    let sim = Simulator::new();
    sim.add_credential(secret, cred(behaviour));
    let running = start(&sim).await;
    let base = running.base_url();
    (running, base)
}

/// A simulator with GitHub or GitLab tokens of `account`: (secret, behaviour, what the
/// vendor reports), served; returns (running, base_url).
pub(crate) async fn with_tokens(
    account: &str,
    creds: &[(&str, Behaviour, Option<TokenDetails>)],
) -> (RunningSimulator, String) {
    let sim = Simulator::new();
    for (secret, behaviour, details) in creds {
        let mut c = cred(behaviour.clone());
        c.account_id = account.into();
        sim.add_credential(secret, c);
        if let Some(d) = details {
            sim.set_token_details(secret, d.clone());
        }
    }
    let running = start(&sim).await;
    let base = running.base_url();
    (running, base)
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: RHeaderMap,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }
}

pub(crate) async fn send(req: reqwest::RequestBuilder) -> Resp {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.text().await.unwrap();
    Resp {
        status,
        headers,
        body,
    }
}

pub(crate) async fn basic(url: &str, user: &str, secret: &str) -> Resp {
    send(client().get(url).basic_auth(user, Some(secret))).await
}

pub(crate) async fn bearer(url: &str, secret: &str) -> Resp {
    send(client().get(url).bearer_auth(secret)).await
}

pub(crate) async fn anon(url: &str) -> Resp {
    send(client().get(url)).await
}

pub(crate) fn assert_jira_401(r: &Resp) {
    assert_eq!(r.status, 401, "body: {}", r.body);
    assert_eq!(
        r.header("x-seraph-loginreason").as_deref(),
        Some("AUTHENTICATED_FAILED")
    );
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic "));
    assert!(r.header("x-aaccountid").is_none());
    let v = r.json();
    assert_eq!(
        v["message"],
        "Client must be authenticated to access this resource."
    );
    assert_eq!(v["status-code"], 401);
}

pub(crate) fn assert_anonymous_project_page(r: &Resp) {
    assert_eq!(r.status, 200);
    assert!(r.header("x-aaccountid").is_none());
    let v = r.json();
    assert_eq!(v["total"], 0);
    assert_eq!(v["isLast"], true);
    assert_eq!(v["values"].as_array().unwrap().len(), 0);
}

pub(crate) fn assert_confluence_401(r: &Resp) {
    assert_eq!(r.status, 401);
    let v = r.json();
    assert_eq!(v["statusCode"], 401);
    assert_eq!(v["data"]["authorized"], false);
    assert_eq!(v["data"]["successful"], false);
    assert_eq!(v["message"], "Unauthorized");
}
