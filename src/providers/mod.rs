//! Providers as registered units. Each provider is one module that declares, in one
//! [`ProviderSpec`], everything the rest of the exporter needs to know about it: its kind
//! name (the `provider:` config value and metric label), its default site, the auth kinds
//! it accepts, the identity its probe can check, the prefixes its secrets start with (for
//! redaction) and which organization inventory list can link to it, plus its probe.
//!
//! Config validation, linking and redaction ask the spec, never a `match` on the kind.
//! Adding a vendor is one module with a `SPEC`, one line in [`REGISTRY`], its simulator
//! module and docs (docs/architecture.md "Adding a provider").
//!
//! Providers do no bookkeeping and no scheduling: a probe turns the vendor's answers into
//! a [`Verdict`] (plus the [`Facts`] the vendor reported), and [`probe`] applies the
//! vendor-neutral identity check to produce the [`Outcome`].

pub mod atlassian;
pub mod github;
pub mod gitlab;
pub mod oauth;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::probe::{ErrorReason, Expected, Facts, Outcome, ProbeError, Verdict};
use crate::secret::Secret;
use crate::upstream::{rate_limit_wait, Auth, HttpClient, Response};
use crate::util::{clip, MAX_UPSTREAM_LABEL};

use self::oauth::OAuthClient;

/// Every provider the exporter knows, one line each.
pub static REGISTRY: &[&ProviderSpec] = &[
    &atlassian::jira::SPEC,
    &atlassian::confluence::SPEC,
    &atlassian::bitbucket::SPEC,
    &atlassian::admin_key::SPEC,
    &github::SPEC,
    &gitlab::SPEC,
];

/// How a provider's requests authenticate (the `auth:` config value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthKind {
    /// HTTP basic auth: the configured `email` (or user name) and the secret.
    Basic,
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// OAuth 2.0 client credentials: the secret is the client secret, exchanged for a
    /// short-lived access token that is then sent as Bearer.
    OAuth2,
    /// The secret alone in the provider's own header ([`ProviderSpec::auth_header`]).
    Header,
}

impl AuthKind {
    pub const ALL: [AuthKind; 4] = [
        AuthKind::Basic,
        AuthKind::Bearer,
        AuthKind::OAuth2,
        AuthKind::Header,
    ];
    pub const NAMES: [&'static str; 4] = ["basic", "bearer", "oauth2", "header"];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

impl<'de> Deserialize<'de> for AuthKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AuthKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, &AuthKind::NAMES))
    }
}

/// What identity a provider's probe learns, and so what the config may ask it to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentityCheck {
    /// The probe returns an account id (`expected_account_id` can be checked; the id
    /// feeds the `account_id` label).
    pub account_id: bool,
    /// The probe may return the account's e-mail address (compared with `email`).
    pub email: bool,
}

/// Which organization inventory list a configured token of this provider is linked to by
/// its `org_token_id` (README "Organization inventory").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InventoryLink {
    /// A user API token (`…/api-tokens`).
    ApiToken,
    /// An organization admin API key (`…/api-keys`).
    ApiKey,
}

/// The future a provider's probe returns. Boxed: the request future is large, and an
/// unboxed one would be part of every idle token task's state.
pub type ProbeFuture<'c> = Pin<Box<dyn Future<Output = Result<Verdict, ProbeError>> + Send + 'c>>;

/// Everything one provider declares about itself.
pub struct ProviderSpec {
    /// The `provider:` value in the config and the `provider` metric label.
    pub name: &'static str,
    /// Used when a token has no `site`; `None` makes `site` required.
    pub default_site: Option<&'static str>,
    /// The auth kinds it accepts; the first is the default.
    pub auth: &'static [AuthKind],
    /// The header that carries the secret with [`AuthKind::Header`] ("" when unused).
    pub auth_header: &'static str,
    /// With [`AuthKind::OAuth2`], the path the site must start with (the API gateway
    /// form, e.g. `/ex/jira/` followed by the cloudId); `None` when OAuth is not accepted.
    pub oauth_site_path: Option<&'static str>,
    pub identity: IdentityCheck,
    /// How its secrets start: a value with one of these prefixes written where a variable
    /// name or path belongs is never echoed in an error.
    pub secret_prefixes: &'static [&'static str],
    /// The inventory list its tokens link to, if any.
    pub inventory_link: Option<InventoryLink>,
    /// Whether a rate-limited answer without `Retry-After` makes the token's next probe
    /// wait for the answer's rate-limit reset (`x-ratelimit-reset`, `ratelimit-reset`):
    /// true where the limit is the credential's own and the reset says when it lifts
    /// (GitHub, GitLab); false where the reset describes a shared window the token probe
    /// need not wait out (Atlassian: the probe keeps its interval).
    pub waits_for_rate_limit_reset: bool,
    /// One probe of one credential; the caller applies the probe timeout around it.
    pub probe: for<'c, 't> fn(&'c mut ProbeCtx<'t>) -> ProbeFuture<'c>,
    /// A `site` that is valid but most likely wrong for this vendor (e.g. a GitHub
    /// Enterprise Server host without `/api/v3`), said as a `--config.check` and start-up
    /// warning; [`any_site`] for none.
    pub site_warning: fn(&url::Url) -> Option<String>,
}

/// [`ProviderSpec::site_warning`] for providers that take any site.
pub fn any_site(_: &url::Url) -> Option<String> {
    None
}

/// A provider, by its registered spec. Cheap to copy and compare.
#[derive(Clone, Copy)]
pub struct Provider(&'static ProviderSpec);

impl Provider {
    /// The registered provider of that kind name.
    pub fn by_name(name: &str) -> Option<Provider> {
        REGISTRY
            .iter()
            .find(|s| s.name == name)
            .map(|s| Provider(s))
    }

    pub fn spec(self) -> &'static ProviderSpec {
        self.0
    }

    pub fn as_str(self) -> &'static str {
        self.0.name
    }

    pub fn default_site(self) -> Option<&'static str> {
        self.0.default_site
    }

    /// The auth kind used when the config names none.
    pub fn default_auth(self) -> AuthKind {
        self.0.auth.first().copied().unwrap_or(AuthKind::Bearer)
    }

    /// The registered kind names, in registry order (for error messages).
    pub fn names() -> &'static [&'static str] {
        static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
        NAMES.get_or_init(|| REGISTRY.iter().map(|s| s.name).collect())
    }

    /// Every secret prefix any provider declares.
    pub fn all_secret_prefixes() -> impl Iterator<Item = &'static str> {
        REGISTRY
            .iter()
            .flat_map(|s| s.secret_prefixes.iter().copied())
    }
}

impl PartialEq for Provider {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.0, other.0)
    }
}

impl Eq for Provider {}

impl std::hash::Hash for Provider {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Provider::by_name(&s)
            .ok_or_else(|| serde::de::Error::unknown_variant(&s, Provider::names()))
    }
}

/// Everything a probe needs about the credential.
#[derive(Clone, Copy)]
pub struct ProbeTarget<'a> {
    pub provider: Provider,
    pub site: &'a Url,
    pub auth: AuthKind,
    pub email: Option<&'a str>,
    pub expected_account_id: Option<&'a str>,
    /// The secret sent to the vendor; with [`AuthKind::OAuth2`], the client secret, which
    /// [`probe`] exchanges for an access token first.
    pub secret: &'a Secret,
    /// The token's OAuth client (with its cached access token) for [`AuthKind::OAuth2`].
    pub oauth: Option<&'a OAuthClient>,
}

impl ProbeTarget<'_> {
    fn wire_auth(&self) -> Auth<'_> {
        match (self.auth, self.email) {
            (AuthKind::Basic, Some(user)) => Auth::Basic {
                user,
                secret: self.secret,
            },
            (AuthKind::Header, _) => Auth::Header {
                name: self.provider.spec().auth_header,
                secret: self.secret,
            },
            _ => Auth::Bearer(self.secret),
        }
    }

    /// `{site}{path}`: the site may carry a path prefix (the API gateway form
    /// `https://api.atlassian.com/ex/jira/{cloudId}`), so paths are appended, not joined.
    fn url(&self, path_and_query: &str) -> Result<Url, ProbeError> {
        let base = self.site.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path_and_query}")).map_err(|e| {
            ProbeError::new(
                ErrorReason::BadResponse,
                format!("cannot build probe URL: {e}"),
            )
        })
    }
}

/// What a provider's probe works with: the shared client, the credential, and the facts
/// the vendor reports along the way.
pub struct ProbeCtx<'t> {
    client: &'t HttpClient,
    pub target: &'t ProbeTarget<'t>,
    pub facts: Facts,
}

impl ProbeCtx<'_> {
    /// GET `{site}{path}` with the credential. 3xx, 429 and 5xx are already errors.
    pub async fn get(&self, path: &str) -> Result<Response, ProbeError> {
        self.client
            .get(self.target.url(path)?, self.target.wire_auth())
            .await
    }
}

/// One probe's result: the outcome and what the vendor reported about the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    pub outcome: Outcome,
    pub facts: Facts,
}

impl From<Outcome> for Probed {
    /// A result the exporter reached without the vendor's help (timeout, no credential).
    fn from(outcome: Outcome) -> Self {
        Probed {
            outcome,
            facts: Facts::default(),
        }
    }
}

/// Probes one credential once. The caller applies the probe timeout around this. With
/// OAuth client credentials the probe runs with an access token: the cached one, or a
/// fresh one; a 401 with a cached token drops it and tries once more with a fresh one.
pub async fn probe(client: &HttpClient, target: &ProbeTarget<'_>) -> Probed {
    let Some(oauth) = target.oauth.filter(|_| target.auth == AuthKind::OAuth2) else {
        return probe_as(client, target).await;
    };
    let refused = |p: &Probed| p.outcome == Outcome::Rejected { status: 401 };
    let (token, fresh) = match oauth.access_token(client, target.secret).await {
        Ok(t) => t,
        Err(outcome) => return Probed::from(outcome),
    };
    let probed = probe_as(
        client,
        &ProbeTarget {
            secret: &token,
            ..*target
        },
    )
    .await;
    if !refused(&probed) {
        return probed;
    }
    oauth.forget();
    if fresh {
        return probed;
    }
    let token = match oauth.exchange(client, target.secret).await {
        Ok(t) => t,
        Err(outcome) => return Probed::from(outcome),
    };
    let probed = probe_as(
        client,
        &ProbeTarget {
            secret: &token,
            ..*target
        },
    )
    .await;
    if refused(&probed) {
        oauth.forget();
    }
    probed
}

async fn probe_as(client: &HttpClient, target: &ProbeTarget<'_>) -> Probed {
    let mut cx = ProbeCtx {
        client,
        target,
        facts: Facts::default(),
    };
    let verdict = (target.provider.spec().probe)(&mut cx).await;
    let expected = Expected {
        account_id: target.expected_account_id,
        email: target.email,
    };
    Probed {
        outcome: match verdict {
            Ok(v) => v.judge(expected),
            Err(mut e) => {
                if target.provider.spec().waits_for_rate_limit_reset && e.retry_after.is_none() {
                    e.retry_after = rate_limit_wait(&e);
                }
                Outcome::Error(e)
            }
        },
        facts: cx.facts,
    }
}

/// A comma-separated scope list (`x-oauth-scopes`) as a [`scope_list`].
pub(crate) fn split_scopes(list: &str) -> Vec<String> {
    scope_list(list.split([',', ' ']))
}

/// The scopes a vendor reported, trimmed, without empties or duplicates, each clipped, at
/// most 100 (a broken server must not blow up the series).
pub(crate) fn scope_list<'a>(scopes: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in scopes.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        let s = clip(s, MAX_UPSTREAM_LABEL).to_string();
        if !out.contains(&s) && out.len() < 100 {
            out.push(s);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_provider_is_found_by_its_unique_name() {
        let mut seen = std::collections::HashSet::new();
        for spec in REGISTRY {
            assert!(seen.insert(spec.name), "{} registered twice", spec.name);
            let p = Provider::by_name(spec.name).unwrap();
            assert!(std::ptr::eq(p.spec(), *spec));
            assert!(!spec.auth.is_empty(), "{} accepts no auth kind", spec.name);
            assert_eq!(
                spec.auth.contains(&AuthKind::Header),
                !spec.auth_header.is_empty(),
                "{}: a header auth needs its header name",
                spec.name
            );
        }
        assert!(Provider::by_name("gitlab-ce").is_none());
        assert_eq!(Provider::names().len(), REGISTRY.len());
    }

    #[test]
    fn unknown_provider_names_the_known_ones() {
        #[derive(Debug, Deserialize)]
        struct T {
            #[allow(dead_code)]
            provider: Provider,
        }
        let e = serde_yaml::from_str::<T>("provider: nope").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("unknown variant `nope`"), "{msg}");
        for name in Provider::names() {
            assert!(msg.contains(name), "{msg}");
        }
    }

    #[test]
    fn scopes_are_split_trimmed_and_deduplicated() {
        assert_eq!(
            split_scopes(" repository, account ,repository,,pullrequest:write"),
            ["repository", "account", "pullrequest:write"]
        );
        assert!(split_scopes("").is_empty());
    }

    #[test]
    fn a_scope_list_keeps_at_most_100_scopes_each_clipped() {
        let many: Vec<String> = (0..150).map(|i| format!("scope{i}")).collect();
        let kept = scope_list(many.iter().map(String::as_str));
        assert_eq!(kept.len(), 100);
        assert_eq!((kept[0].as_str(), kept[99].as_str()), ("scope0", "scope99"));
        let long = "s".repeat(MAX_UPSTREAM_LABEL * 2);
        let clipped = scope_list([long.as_str()]);
        assert_eq!(clipped[0].len(), MAX_UPSTREAM_LABEL);
    }

    #[tokio::test]
    async fn a_rate_limit_reset_is_the_wait_only_where_the_provider_says_so() {
        let reset = stub::epoch_in(1200);
        let (site, _) =
            stub::serve(move |_, _| stub::reply(429, &[("x-ratelimit-reset", reset.as_str())], ""))
                .await;
        for spec in REGISTRY {
            let p = stub::probe_once(Provider(spec), &site).await;
            let Outcome::Error(e) = &p.outcome else {
                panic!("{}: a 429 must be an error: {p:?}", spec.name);
            };
            assert_eq!(e.reason, ErrorReason::RateLimited, "{}", spec.name);
            assert!(e.rate_limit_reset.is_some(), "{}", spec.name);
            assert_eq!(
                e.retry_after.is_some(),
                spec.waits_for_rate_limit_reset,
                "{}: {e:?}",
                spec.name
            );
        }
    }

    #[test]
    fn providers_are_equal_hash_and_print_by_their_registration() {
        use std::hash::BuildHasher;
        let h = std::collections::hash_map::RandomState::new();
        for a in REGISTRY {
            let pa = Provider(a);
            assert_eq!(format!("{pa:?}"), a.name);
            assert_eq!(pa.to_string(), a.name);
            for b in REGISTRY {
                let pb = Provider(b);
                assert_eq!(pa == pb, std::ptr::eq(*a, *b), "{} vs {}", a.name, b.name);
                // Equal providers hash alike; different ones (almost surely) not.
                assert_eq!(h.hash_one(pa) == h.hash_one(pb), pa == pb);
            }
        }
    }

    #[test]
    fn auth_kinds_have_their_config_names() {
        let names: Vec<_> = AuthKind::ALL.map(AuthKind::as_str).into();
        assert_eq!(names, ["basic", "bearer", "oauth2", "header"]);
    }

    #[tokio::test]
    async fn each_auth_kind_sends_the_secret_the_way_its_vendor_expects() {
        use base64::Engine;
        let (site, seen) = stub::serve(|_, _| stub::reply(401, &[], "")).await;
        let basic = base64::engine::general_purpose::STANDARD.encode("e@x:ATATT3xSTUBSECRET");
        for (provider, header, want) in [
            (
                atlassian::jira::PROVIDER,
                "authorization",
                format!("Basic {basic}"),
            ),
            (
                atlassian::admin_key::PROVIDER,
                "authorization",
                "Bearer ATATT3xSTUBSECRET".to_string(),
            ),
            (
                gitlab::PROVIDER,
                "private-token",
                "ATATT3xSTUBSECRET".to_string(),
            ),
        ] {
            seen.lock().unwrap().clear();
            stub::probe_once(provider, &site).await;
            let seen = seen.lock().unwrap();
            let first = &seen.first().expect("one request").headers;
            let got = first.get(header).and_then(|v| v.to_str().ok());
            assert_eq!(got, Some(want.as_str()), "{provider}");
            if header != "authorization" {
                assert!(first.get("authorization").is_none(), "{provider}");
            }
        }
        // Basic without an email has no user to send: the secret goes as a Bearer token.
        let secret = Secret::new("ATATT3xSTUBSECRET");
        let t = ProbeTarget {
            provider: atlassian::jira::PROVIDER,
            site: &site,
            auth: AuthKind::Basic,
            email: None,
            expected_account_id: None,
            secret: &secret,
            oauth: None,
        };
        assert!(matches!(t.wire_auth(), Auth::Bearer(_)));
    }

    #[test]
    fn probe_url_keeps_the_site_path_prefix() {
        let site = Url::parse("https://api.atlassian.com/ex/jira/abc-123").unwrap();
        let s = Secret::new("s");
        let t = ProbeTarget {
            provider: atlassian::jira::PROVIDER,
            site: &site,
            auth: AuthKind::Basic,
            email: Some("e"),
            expected_account_id: None,
            secret: &s,
            oauth: None,
        };
        assert_eq!(
            t.url("/rest/api/3/myself").unwrap().as_str(),
            "https://api.atlassian.com/ex/jira/abc-123/rest/api/3/myself"
        );
    }
}

/// A stand-in vendor for the providers' unit tests: every request is answered by a
/// closure of the path (with query) and the request's headers, on 127.0.0.1.
#[cfg(test)]
pub(crate) mod stub {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::{HeaderMap, Request, Response, StatusCode};

    use super::*;

    pub type Reply = (u16, Vec<(&'static str, String)>, String);

    /// A reply: status, headers, body.
    pub fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let headers = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        (status, headers, body.to_string())
    }

    /// What the stand-in saw of one request.
    pub struct Seen {
        pub method: String,
        /// Path with query.
        pub path: String,
        pub headers: HeaderMap,
        pub body: String,
    }

    /// Serves `answer` (by path and headers) and returns its base URL and the requests.
    pub async fn serve(
        answer: impl Fn(&str, &HeaderMap) -> Reply + Send + Sync + 'static,
    ) -> (Url, Arc<Mutex<Vec<Seen>>>) {
        serve_requests(move |r| answer(&r.path, &r.headers)).await
    }

    /// The paths requested, in order.
    pub fn paths(seen: &Mutex<Vec<Seen>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }

    /// Serves `answer` and returns its base URL and every request it saw, in order.
    pub async fn serve_requests(
        answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> (Url, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let answer = Arc::new(answer);
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let (answer, log) = (answer.clone(), log.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20)
                    .await
                    .unwrap_or_default();
                let r = Seen {
                    method: parts.method.to_string(),
                    path: parts
                        .uri
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_string(),
                    headers: parts.headers,
                    body: String::from_utf8_lossy(&body).into_owned(),
                };
                let (status, headers, body) = answer(&r);
                log.lock().unwrap().push(r);
                let mut resp = Response::new(Body::from(body));
                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                for (k, v) in headers {
                    resp.headers_mut().insert(k, v.parse().unwrap());
                }
                resp
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    /// One probe of `provider` against a vendor that gives every request `reply`.
    pub async fn probe_answered(provider: Provider, reply: Reply) -> Probed {
        let (site, _) = serve(move |_, _| reply.clone()).await;
        probe_once(provider, &site).await
    }

    /// The error of an inconclusive probe (panics on a conclusive one).
    pub fn error_of(p: &Probed) -> &ProbeError {
        match &p.outcome {
            Outcome::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    /// Unix seconds `secs` from now, as a rate-limit reset header writes them.
    pub fn epoch_in(secs: u64) -> String {
        (std::time::SystemTime::now() + std::time::Duration::from_secs(secs))
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .to_string()
    }

    /// One probe of `provider` against `site` with basic auth `e@x` (or Bearer).
    pub async fn probe_once(provider: Provider, site: &Url) -> Probed {
        let client = HttpClient::new().unwrap();
        let secret = Secret::new("ATATT3xSTUBSECRET");
        let target = ProbeTarget {
            provider,
            site,
            auth: provider.default_auth(),
            email: Some("e@x"),
            expected_account_id: None,
            secret: &secret,
            oauth: None,
        };
        probe(&client, &target).await
    }
}
