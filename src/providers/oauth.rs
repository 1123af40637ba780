//! OAuth 2.0 client credentials, as Atlassian service accounts use them (README "Service
//! accounts"): the configured secret is the *client secret*; a probe first exchanges it
//! at the token endpoint for a short-lived access token (60 minutes at Atlassian), then
//! probes with that token as Bearer.
//!
//! The access token is cached in memory until 60 s before it runs out, so a token probed
//! every 5 minutes costs one exchange an hour. It is a [`Secret`]: zeroed on drop, never
//! printed, never exported. A 401 with a cached token drops it and exchanges once more
//! within the same probe (the vendor may revoke access tokens early); a fresh token that
//! also gets 401 means the service account cannot use the API: `rejected`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use url::Url;

use crate::probe::{ErrorReason, Outcome, ProbeError};
use crate::secret::Secret;
use crate::upstream::HttpClient;

/// Atlassian's token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://auth.atlassian.com/oauth/token";

/// An access token is not used in its last minute: a probe must not race its expiry.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The token endpoint's `error` codes that refuse the client itself (RFC 6749 §5.2).
const REFUSALS: [&str; 3] = ["invalid_client", "unauthorized_client", "invalid_grant"];

/// The configured client (everything but the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Settings {
    pub client_id: String,
    pub token_url: Url,
    pub scopes: Vec<String>,
}

/// One token's OAuth client: its settings and its cached access token.
#[derive(Debug)]
pub struct OAuthClient {
    settings: OAuth2Settings,
    cache: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    token: Secret,
    usable_until: Instant,
}

impl OAuthClient {
    pub fn new(settings: OAuth2Settings) -> Self {
        Self {
            settings,
            cache: Mutex::new(None),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached access token if it is still usable (`false`: not fresh), else a new one
    /// from the token endpoint (`true`). `Err` is the probe's outcome: the exchange
    /// failed or the client was refused.
    pub async fn access_token(
        &self,
        client: &HttpClient,
        client_secret: &Secret,
    ) -> Result<(Secret, bool), Outcome> {
        if let Some(c) = self.cache().as_ref() {
            if Instant::now() < c.usable_until {
                return Ok((c.token.clone(), false));
            }
        }
        self.exchange(client, client_secret)
            .await
            .map(|t| (t, true))
    }

    /// Drops the cached access token (the API refused it).
    pub fn forget(&self) {
        *self.cache() = None;
    }

    /// `POST token_url` with the client-credentials grant; caches what it gets.
    pub async fn exchange(
        &self,
        client: &HttpClient,
        client_secret: &Secret,
    ) -> Result<Secret, Outcome> {
        let s = &self.settings;
        let form = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &s.client_id)
                .append_pair("client_secret", client_secret.expose());
            if !s.scopes.is_empty() {
                form.append_pair("scope", &s.scopes.join(" "));
            }
            form.finish()
        };
        let resp = client
            .post_form(s.token_url.clone(), form)
            .await
            .map_err(|e| {
                Outcome::Error(ProbeError {
                    detail: format!("token endpoint: {}", e.detail),
                    ..e
                })
            })?;
        let status = resp.status.as_u16();
        let json: Option<serde_json::Value> = serde_json::from_slice(&resp.body).ok();
        if resp.status.is_success() {
            let json = json.ok_or_else(|| {
                bad(format!(
                    "token endpoint answered HTTP {status} without JSON"
                ))
            })?;
            let token = json
                .get("access_token")
                .and_then(serde_json::Value::as_str)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "token endpoint answered HTTP {status} without an access_token"
                    ))
                })?;
            let token = Secret::new(token);
            if let Some(secs) = json.get("expires_in").and_then(serde_json::Value::as_u64) {
                let lifetime = Duration::from_secs(secs.min(86_400));
                if lifetime > EXPIRY_MARGIN {
                    *self.cache() = Some(Cached {
                        token: token.clone(),
                        usable_until: Instant::now() + lifetime - EXPIRY_MARGIN,
                    });
                }
            }
            return Ok(token);
        }
        // Only the short `error` code is quoted: `error_description` is free text.
        let code = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(serde_json::Value::as_str)
            .filter(|c| c.len() <= 64 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        match (status, code) {
            (400 | 401, Some(code)) if REFUSALS.contains(&code) => {
                Err(Outcome::Rejected { status })
            }
            (_, Some(code)) => Err(bad(format!(
                "token endpoint answered HTTP {status} (error {code})"
            ))),
            _ => Err(bad(format!(
                "token endpoint answered unexpected HTTP {status}"
            ))),
        }
    }
}

fn bad(detail: String) -> Outcome {
    Outcome::Error(ProbeError::new(ErrorReason::BadResponse, detail))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;
    use crate::providers::atlassian::jira;
    use crate::providers::stub::{reply, serve_requests, Reply, Seen};
    use crate::providers::{probe, AuthKind, ProbeTarget, Probed};

    const CLIENT_SECRET: &str = "client-secret-SHOULD-NEVER-SHOW";
    const ACCESS: &str = "access-token-SHOULD-NEVER-SHOW";

    fn myself_ok() -> Reply {
        reply(
            200,
            &[("x-aaccountid", "sa-1")],
            r#"{"accountId":"sa-1","emailAddress":"sa@serviceaccount.atlassian.com"}"#,
        )
    }

    /// A token endpoint at `/oauth/token` and a gateway Jira at `/ex/jira/c1`; `token`
    /// answers the exchanges (counted), `api` answers the probes.
    async fn vendor(
        token: impl Fn(usize) -> Reply + Send + Sync + 'static,
        api: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> (
        OAuthClient,
        Url,
        Arc<AtomicUsize>,
        Arc<std::sync::Mutex<Vec<Seen>>>,
    ) {
        let exchanges = Arc::new(AtomicUsize::new(0));
        let n = exchanges.clone();
        let (base, seen) = serve_requests(move |r| {
            if r.path == "/oauth/token" {
                token(n.fetch_add(1, Ordering::SeqCst) + 1)
            } else {
                api(r)
            }
        })
        .await;
        let client = OAuthClient::new(OAuth2Settings {
            client_id: "client-1".into(),
            token_url: base.join("/oauth/token").unwrap(),
            scopes: vec!["read:jira-user".into(), "read:jira-work".into()],
        });
        (client, base.join("/ex/jira/c1").unwrap(), exchanges, seen)
    }

    fn issued(n: usize) -> Reply {
        let body =
            format!(r#"{{"access_token":"{ACCESS}-{n}","expires_in":3600,"token_type":"Bearer"}}"#);
        (
            200,
            vec![("content-type", "application/json".to_string())],
            body,
        )
    }

    async fn probe_with(oauth: &OAuthClient, site: &Url) -> Probed {
        let http = HttpClient::new().unwrap();
        let secret = Secret::new(CLIENT_SECRET);
        let target = ProbeTarget {
            provider: jira::PROVIDER,
            site,
            auth: AuthKind::OAuth2,
            email: None,
            expected_account_id: Some("sa-1"),
            secret: &secret,
            oauth: Some(oauth),
        };
        probe(&http, &target).await
    }

    fn bearer(r: &Seen) -> String {
        r.headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    #[tokio::test]
    async fn the_client_secret_is_exchanged_once_and_the_access_token_cached() {
        let (oauth, site, exchanges, seen) = vendor(issued, |r| {
            if bearer(r).ends_with("-1") {
                myself_ok()
            } else {
                reply(401, &[], "{}")
            }
        })
        .await;
        for _ in 0..3 {
            let p = probe_with(&oauth, &site).await;
            assert_eq!(
                p.outcome,
                crate::probe::Outcome::Valid {
                    account_id: Some("sa-1".into())
                }
            );
        }
        assert_eq!(
            exchanges.load(Ordering::SeqCst),
            1,
            "the cached access token is reused"
        );
        let seen = seen.lock().unwrap();
        let form = &seen[0];
        assert_eq!(
            (form.method.as_str(), form.path.as_str()),
            ("POST", "/oauth/token")
        );
        assert_eq!(
            form.body,
            format!("grant_type=client_credentials&client_id=client-1&client_secret={CLIENT_SECRET}&scope=read%3Ajira-user+read%3Ajira-work")
        );
        assert_eq!(bearer(&seen[1]), format!("Bearer {ACCESS}-1"));
        assert_eq!(seen[1].path, "/ex/jira/c1/rest/api/3/myself");
        assert!(seen.iter().skip(1).all(|r| r.path != "/oauth/token"));
    }

    #[tokio::test]
    async fn the_cache_ends_a_margin_before_the_token_and_forget_drops_it() {
        // expires_in 61 s: usable for 1 s (60 s margin), then exchanged again.
        let short = |n: usize| {
            let body = format!(r#"{{"access_token":"{ACCESS}-{n}","expires_in":61}}"#);
            (
                200,
                vec![("content-type", "application/json".to_string())],
                body,
            )
        };
        let (oauth, _, exchanges, _) = vendor(short, |_| myself_ok()).await;
        let http = HttpClient::new().unwrap();
        let secret = Secret::new(CLIENT_SECRET);
        let (t1, fresh) = oauth.access_token(&http, &secret).await.unwrap();
        assert!(fresh);
        let (t2, fresh) = oauth.access_token(&http, &secret).await.unwrap();
        assert!(!fresh, "cached within its lifetime less the margin");
        assert_eq!(t1.expose(), t2.expose());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (t3, fresh) = oauth.access_token(&http, &secret).await.unwrap();
        assert!(fresh, "used past its lifetime less the margin");
        assert_eq!(t3.expose(), format!("{ACCESS}-2"));
        oauth.forget();
        let (_, fresh) = oauth.access_token(&http, &secret).await.unwrap();
        assert!(fresh, "a forgotten token was used again");
        assert_eq!(exchanges.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn only_a_short_lowercase_error_code_is_quoted() {
        use crate::probe::Outcome as O;
        let long = format!(r#"{{"error":"{}"}}"#, "x".repeat(65));
        let cases = [
            (
                r#"{"error":"invalid_scope"}"#.to_string(),
                "token endpoint answered HTTP 400 (error invalid_scope)",
            ),
            (
                r#"{"error":"Invalid scope <b>x</b>"}"#.to_string(),
                "token endpoint answered unexpected HTTP 400",
            ),
            (long, "token endpoint answered unexpected HTTP 400"),
        ];
        for (body, want) in cases {
            let answer = reply(400, &[], &body);
            let (oauth, site, _, _) = vendor(move |_| answer.clone(), |_| myself_ok()).await;
            let p = probe_with(&oauth, &site).await;
            let O::Error(e) = &p.outcome else {
                panic!("{body}: {p:?}")
            };
            assert_eq!(e.detail, want, "{body}");
        }
    }

    #[tokio::test]
    async fn a_401_with_a_cached_token_re_exchanges_once_within_the_probe() {
        // The vendor revoked the first access token early; the second one works.
        let (oauth, site, exchanges, _) = vendor(issued, |r| {
            if bearer(r).ends_with("-2") {
                myself_ok()
            } else {
                reply(401, &[], "{}")
            }
        })
        .await;
        oauth
            .exchange(&HttpClient::new().unwrap(), &Secret::new(CLIENT_SECRET))
            .await
            .unwrap();
        let p = probe_with(&oauth, &site).await;
        assert!(
            matches!(p.outcome, crate::probe::Outcome::Valid { .. }),
            "{p:?}"
        );
        assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_fresh_access_token_refused_too_is_rejected_and_dropped() {
        let (oauth, site, exchanges, seen) = vendor(issued, |_| reply(401, &[], "{}")).await;
        let p = probe_with(&oauth, &site).await;
        assert_eq!(p.outcome, crate::probe::Outcome::Rejected { status: 401 });
        assert_eq!(
            exchanges.load(Ordering::SeqCst),
            1,
            "a fresh token is not retried"
        );
        assert!(
            seen.lock()
                .unwrap()
                .iter()
                .all(|r| !r.path.contains("project/search")),
            "OAuth runs no anonymous side probe"
        );
        // Cached token refused, fresh one refused: two exchanges, then nothing cached.
        oauth
            .exchange(&HttpClient::new().unwrap(), &Secret::new(CLIENT_SECRET))
            .await
            .unwrap();
        let p = probe_with(&oauth, &site).await;
        assert_eq!(p.outcome, crate::probe::Outcome::Rejected { status: 401 });
        assert_eq!(exchanges.load(Ordering::SeqCst), 3);
        probe_with(&oauth, &site).await;
        assert_eq!(
            exchanges.load(Ordering::SeqCst),
            4,
            "the refused token was dropped"
        );
    }

    #[tokio::test]
    async fn token_endpoint_answers_are_classified() {
        use crate::probe::{ErrorReason as R, Outcome as O};
        let cases: Vec<(Reply, Result<O, R>)> = vec![
            (
                reply(
                    401,
                    &[],
                    r#"{"error":"invalid_client","error_description":"bad secret"}"#,
                ),
                Ok(O::Rejected { status: 401 }),
            ),
            (
                reply(400, &[], r#"{"error":"unauthorized_client"}"#),
                Ok(O::Rejected { status: 400 }),
            ),
            (
                reply(400, &[], r#"{"error":"invalid_grant"}"#),
                Ok(O::Rejected { status: 400 }),
            ),
            (
                reply(400, &[], r#"{"error":"invalid_scope"}"#),
                Err(R::BadResponse),
            ),
            (reply(403, &[], "<html>"), Err(R::BadResponse)),
            (
                reply(429, &[("retry-after", "30")], ""),
                Err(R::RateLimited),
            ),
            (reply(503, &[], ""), Err(R::Http5xx)),
            (
                reply(302, &[("location", "https://elsewhere.example/")], ""),
                Err(R::BadResponse),
            ),
            (
                reply(200, &[], r#"{"token_type":"Bearer"}"#),
                Err(R::BadResponse),
            ),
            (reply(200, &[], "not json"), Err(R::BadResponse)),
        ];
        for (answer, want) in cases {
            let status = answer.0;
            let (oauth, site, _, _) = vendor(move |_| answer.clone(), |_| myself_ok()).await;
            let p = probe_with(&oauth, &site).await;
            match (&p.outcome, &want) {
                (O::Error(e), Err(reason)) => {
                    assert_eq!(e.reason, *reason, "HTTP {status}: {e}");
                    assert!(e.detail.starts_with("token endpoint"), "{e}");
                    if *reason == R::RateLimited {
                        assert_eq!(e.retry_after, Some(Duration::from_secs(30)));
                    }
                }
                (got, Ok(o)) => assert_eq!(got, o, "HTTP {status}"),
                (got, Err(_)) => panic!("HTTP {status}: expected an error, got {got:?}"),
            }
            let shown = format!("{p:?} {oauth:?}");
            assert!(
                !shown.contains(CLIENT_SECRET) && !shown.contains("bad secret"),
                "{shown}"
            );
        }
    }

    #[tokio::test]
    async fn neither_secret_appears_in_debug_output_or_errors() {
        let (oauth, site, _, _) = vendor(issued, |_| reply(500, &[], "{}")).await;
        let p = probe_with(&oauth, &site).await;
        let shown = format!("{p:?} {oauth:?}");
        assert!(
            shown.contains("http_5xx") || shown.contains("Http5xx"),
            "{shown}"
        );
        for secret in [CLIENT_SECRET, ACCESS] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
}
