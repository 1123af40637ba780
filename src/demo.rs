//! The `demo` scenario: a simulator with one credential in every state the exporter can
//! report, and the config that watches them. Shown to newcomers and used by the alerting
//! end-to-end test, so token names here are relied upon (see README and tests/e2e).
//!
//! It also has an organization, `demo-org`, whose inventory lists ~300 user API tokens over
//! several pages (some expiring within 14 days, some without an expiry, some unused for
//! more than 90 days, two BLOCKED) and 3 admin API keys (one expiring in 5 days). Its key
//! is watched by the implicit `demo-org-admin-key` token, and `jira-expiring` is linked to
//! its inventory entry by `org_token_id` (`expiry_source="org_inventory"`).
//!
//! `jira-service-account` is a service account's OAuth 2.0 client credentials
//! (`auth: oauth2`) through the simulated API gateway, and `bitbucket-valid` is a scoped
//! Bitbucket API token whose scopes and credential type the vendor reports.
//!
//! `github-valid` (a classic token) and `gitlab-valid` have no expiry in their config: the
//! simulated vendors report it (`expiry_source="provider"`), with their scopes, and GitLab
//! the token's creation and last use too.

use std::collections::BTreeMap;
use std::time::Duration;

use apitoken_sim::{
    Behaviour, Credential, OrgApiKey, OrgToken, RunningSimulator, ScopedToken, Simulator,
    TokenDetails,
};
use url::Url;

use crate::config::{Config, ExpirySource, Global, OrgConfig, TokenConfig};
use crate::providers::oauth::OAuth2Settings;
use crate::providers::{atlassian, github, gitlab, AuthKind, Provider};
use crate::secret::{Secret, SecretSource};
use crate::util::unix_now;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(15);
pub const FIRST_PROBES_WITHIN: Duration = Duration::from_secs(5);
const DAY: i64 = 86_400;
/// How long the demo's OAuth access tokens live (Atlassian: 60 minutes).
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

pub const ORG_NAME: &str = "demo-org";
const ORG_ID: &str = "d3m0a1b2-0000-4000-8000-000000000001";
/// User API tokens the demo organization lists besides the two tied to demo tokens.
const ORG_USER_TOKENS: usize = 300;
/// The demo token whose expiry comes from the organization inventory.
const LINKED_TOKEN: &str = "jira-expiring";
const LINKED_TOKEN_ID: &str = "d3m0-tok-jira-expiring";
/// The account every demo credential authenticates as.
const DEMO_ACCOUNT: &str = "5b10a2844c20165700ede001";

struct DemoToken {
    name: &'static str,
    provider: Provider,
    /// Path prefix on the simulator (`/closed` = no anonymous access) or None = unreachable.
    site: Option<&'static str>,
    behaviour: Behaviour,
    /// The account the simulator authenticates the credential as.
    account: &'static str,
    expected_account: Option<&'static str>,
    expiry: Expiry,
    revoked_hours_ago: Option<i64>,
    /// A service account's OAuth client id: the token is `auth: oauth2` through the
    /// simulated API gateway, its secret the client secret.
    oauth_client: Option<&'static str>,
    /// A scoped API token: the scopes the vendor reports for it.
    scopes: Option<&'static [&'static str]>,
    /// What the vendor itself reports about the token (GitHub, GitLab).
    reported: Option<Reported>,
}

/// A vendor's report on a token, relative to the demo's start.
struct Reported {
    expires_in_days: i64,
    created_days_ago: Option<i64>,
    last_used_hours_ago: Option<i64>,
    scopes: &'static [&'static str],
}

impl Reported {
    fn details(&self, now: i64) -> TokenDetails {
        TokenDetails {
            expires_at: Some(now + self.expires_in_days * DAY),
            created_at: self.created_days_ago.map(|d| now - d * DAY),
            last_used_at: self.last_used_hours_ago.map(|h| now - h * 3600),
            scopes: Some(self.scopes.iter().map(|s| s.to_string()).collect()),
        }
    }
}

/// The simulated API gateway site of the demo's service account (`/ex/jira/{cloudId}`).
const GATEWAY_SITE: &str = "/ex/jira/d3m0c10d-0000-4000-8000-000000000001";

enum Expiry {
    None,
    InDays(i64),
    CreatedDaysAgo(i64),
}

fn scenario() -> Vec<DemoToken> {
    use Behaviour::*;
    let t = |name, provider, site, behaviour, expiry| DemoToken {
        name,
        provider,
        site,
        behaviour,
        account: DEMO_ACCOUNT,
        expected_account: None,
        expiry,
        revoked_hours_ago: None,
        oauth_client: None,
        scopes: None,
        reported: None,
    };
    vec![
        t(
            "jira-valid",
            atlassian::jira::PROVIDER,
            Some(""),
            Valid,
            Expiry::InDays(200),
        ),
        t(
            "jira-expiring",
            atlassian::jira::PROVIDER,
            Some(""),
            Valid,
            Expiry::InDays(5),
        ),
        t(
            "jira-expired",
            atlassian::jira::PROVIDER,
            Some("/closed"),
            Dead,
            Expiry::InDays(-3),
        ),
        DemoToken {
            revoked_hours_ago: Some(1),
            ..t(
                "jira-revoked",
                atlassian::jira::PROVIDER,
                Some(""),
                Valid,
                Expiry::InDays(120),
            )
        },
        t(
            "jira-anonymous",
            atlassian::jira::PROVIDER,
            Some(""),
            Dead,
            Expiry::InDays(40),
        ),
        DemoToken {
            oauth_client: Some("d3m0-service-account-client"),
            account: "712020:d3m0-service-account",
            ..t(
                "jira-service-account",
                atlassian::jira::PROVIDER,
                Some(GATEWAY_SITE),
                Valid,
                Expiry::InDays(180),
            )
        },
        t(
            "confluence-valid",
            atlassian::confluence::PROVIDER,
            Some(""),
            Valid,
            Expiry::CreatedDaysAgo(100),
        ),
        DemoToken {
            account: "712020:0b7a6c8e-other-account",
            expected_account: Some(DEMO_ACCOUNT),
            ..t(
                "confluence-mismatch",
                atlassian::confluence::PROVIDER,
                Some(""),
                Valid,
                Expiry::InDays(90),
            )
        },
        DemoToken {
            scopes: Some(&["read:user:bitbucket", "read:repository:bitbucket"]),
            ..t(
                "bitbucket-valid",
                atlassian::bitbucket::PROVIDER,
                Some(""),
                Valid,
                Expiry::None,
            )
        },
        t(
            "bitbucket-ratelimited",
            atlassian::bitbucket::PROVIDER,
            Some(""),
            RateLimited {
                retry_after: Some("120".into()),
            },
            Expiry::InDays(300),
        ),
        t(
            "admin-valid",
            atlassian::admin_key::PROVIDER,
            Some(""),
            Valid,
            Expiry::InDays(60),
        ),
        t(
            "admin-unreachable",
            atlassian::admin_key::PROVIDER,
            None,
            Valid,
            Expiry::InDays(25),
        ),
        DemoToken {
            account: "583231",
            expected_account: Some("583231"),
            reported: Some(Reported {
                expires_in_days: 80,
                created_days_ago: None,
                last_used_hours_ago: None,
                scopes: &["repo", "read:org"],
            }),
            ..t(
                "github-valid",
                github::PROVIDER,
                Some(""),
                Valid,
                Expiry::None,
            )
        },
        DemoToken {
            account: "1234",
            reported: Some(Reported {
                expires_in_days: 150,
                created_days_ago: Some(30),
                last_used_hours_ago: Some(2),
                scopes: &["read_api", "read_user"],
            }),
            ..t(
                "gitlab-valid",
                gitlab::PROVIDER,
                Some(""),
                Valid,
                Expiry::None,
            )
        },
    ]
}

/// The demo organization's user API tokens: ~300 users' tokens in every state the org
/// metrics and alerts care about, plus the entry `jira-expiring` is linked to. The demo
/// account owns two tokens there, so `confluence-mismatch` (which expects that account but
/// has no `org_token_id`) is not linked: an account links only when it owns exactly one.
fn org_tokens(now: i64, in_days: impl Fn(&str) -> Option<i64>) -> Vec<OrgToken> {
    const LABELS: [&str; 6] = ["ci", "deploy", "backup", "laptop", "reporting", "sync"];
    let mut tokens: Vec<OrgToken> = (0..ORG_USER_TOKENS)
        .map(|i| {
            let n = i as i64;
            let user = i % 60;
            OrgToken {
                id: format!("d3m0-tok-{i:03}"),
                label: format!("{}-{i:03}", LABELS[i % LABELS.len()]),
                status: if matches!(i, 7 | 157) {
                    "BLOCKED"
                } else {
                    "ALLOWED"
                }
                .into(),
                account_id: format!("712020:d3m0-user-{user:02}"),
                user_name: format!("Demo User {user:02}"),
                user_email: format!("demo.user{user:02}@demo.example"),
                created_at: now - (n % 300 + 1) * DAY,
                expires_at: match i % 10 {
                    0 => None,                                    // no expiry known
                    1 => Some(now + (n % 13 + 1) * DAY),          // within 14 days
                    _ => Some(now + (30 + (n * 37) % 330) * DAY), // later
                },
                last_active_at: match i % 7 {
                    0 => Some(now - (91 + n % 200) * DAY), // unused for > 90 days
                    3 => None,                             // never used
                    _ => Some(now - (n % 30) * DAY),
                },
            }
        })
        .collect();
    for (id, label, expires_at) in [
        (LINKED_TOKEN_ID, LINKED_TOKEN, in_days(LINKED_TOKEN)),
        ("d3m0-tok-demo-laptop", "laptop", Some(now + 180 * DAY)),
    ] {
        tokens.push(OrgToken {
            id: id.into(),
            label: label.into(),
            status: "ALLOWED".into(),
            account_id: DEMO_ACCOUNT.into(),
            user_name: "Demo Account".into(),
            user_email: "demo@demo.example".into(),
            // A year-long token: its lifetime keeps the fixed 30 d / 7 d thresholds.
            created_at: now - 360 * DAY,
            expires_at,
            last_active_at: Some(now - 3600),
        });
    }
    tokens
}

fn org_api_keys(now: i64) -> Vec<OrgApiKey> {
    [
        ("d3m0-key-exporter", "apitoken-exporter", 120),
        ("d3m0-key-automation", "automation", 5),
        ("d3m0-key-backup", "backup", 200),
    ]
    .into_iter()
    .map(|(id, label, days)| OrgApiKey {
        id: id.into(),
        label: label.into(),
        created_by_name: "Demo Admin".into(),
        created_by_email: "admin@demo.example".into(),
        // Long-lived keys: a lifetime-aware threshold min(14 d, lifetime/4) stays 14 d.
        created_at: now - 60 * DAY,
        expires_at: Some(now + days * DAY),
    })
    .collect()
}

/// Starts the simulator on 127.0.0.1 and returns the config watching it.
pub async fn start() -> Result<(Config, RunningSimulator), String> {
    let sim = Simulator::new();
    sim.close_site("/closed");
    let now = unix_now() as i64;
    let tokens = scenario();
    let secrets: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| demo_secret(t.provider, i))
        .collect();
    let org_key = demo_secret(atlassian::admin_key::PROVIDER, tokens.len());
    sim.add_credential(
        &org_key,
        Credential {
            account_id: "d3m0-org-admin".into(),
            email: "admin@demo.example".into(),
            username: "demo_admin".into(),
            behaviour: Behaviour::Valid,
        },
    );
    let expiry_in = |name: &str| {
        tokens
            .iter()
            .find(|t| t.name == name)
            .and_then(|t| match t.expiry {
                Expiry::InDays(d) => Some(now + d * DAY),
                Expiry::None | Expiry::CreatedDaysAgo(_) => None,
            })
    };
    sim.add_org_tokens(ORG_ID, org_tokens(now, expiry_in));
    sim.add_org_api_keys(ORG_ID, org_api_keys(now));
    for (t, secret) in tokens.iter().zip(&secrets) {
        let cred = Credential {
            account_id: t.account.into(),
            email: format!("{}@demo.example", t.name),
            username: t.name.replace('-', "_"),
            behaviour: t.behaviour.clone(),
        };
        match t.oauth_client {
            Some(client_id) => sim.add_oauth_client(client_id, secret, cred, ACCESS_TOKEN_LIFETIME),
            None => sim.add_credential(secret, cred),
        }
        if let Some(scopes) = t.scopes {
            sim.set_scoped_token(
                secret,
                ScopedToken {
                    credential_type: "api_token".into(),
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                },
            );
        }
        if let Some(reported) = &t.reported {
            sim.set_token_details(secret, reported.details(now));
        }
    }
    let running = sim
        .start(([127, 0, 0, 1], 0).into())
        .await
        .map_err(|e| format!("cannot start the demo simulator: {e}"))?;
    let unreachable = unused_local_port().await?;
    let global = Global {
        probe_interval: PROBE_INTERVAL,
        probe_timeout: Duration::from_secs(5),
        max_concurrency: 4,
        allow_insecure_http: true,
        ..Global::default()
    };
    let mut config_tokens = Vec::with_capacity(tokens.len());
    for (t, secret) in tokens.into_iter().zip(secrets) {
        let site = match t.site {
            Some(prefix) => format!("{}{prefix}", running.base_url()),
            None => format!("http://127.0.0.1:{unreachable}"),
        };
        let site = Url::parse(&site).map_err(|e| format!("demo site URL: {e}"))?;
        let (expires_at, expiry_source) = match t.expiry {
            Expiry::None => (None, ExpirySource::None),
            Expiry::InDays(d) => (Some(now + d * DAY), ExpirySource::Config),
            Expiry::CreatedDaysAgo(d) => (Some(now - d * DAY + 365 * DAY), ExpirySource::CreatedAt),
        };
        config_tokens.push(TokenConfig {
            name: t.name.into(),
            provider: t.provider,
            site,
            auth: if t.oauth_client.is_some() {
                AuthKind::OAuth2
            } else {
                t.provider.default_auth()
            },
            oauth2: match t.oauth_client {
                Some(client_id) => Some(OAuth2Settings {
                    client_id: client_id.into(),
                    token_url: Url::parse(&format!("{}/oauth/token", running.base_url()))
                        .map_err(|e| format!("demo token URL: {e}"))?,
                    scopes: vec!["read:jira-user".into()],
                }),
                None => None,
            },
            email: (t.provider.default_auth() == AuthKind::Basic && t.oauth_client.is_none())
                .then(|| format!("{}@demo.example", t.name)),
            secret: SecretSource::Static(Secret::new(secret)),
            expires_at,
            expiry_source,
            created_at: match t.expiry {
                Expiry::CreatedDaysAgo(d) => Some(now - d * DAY),
                _ => None,
            },
            expected_account_id: t.expected_account.map(str::to_string),
            revoked_at: t.revoked_hours_ago.map(|h| now - h * 3600),
            org_token_id: (t.name == LINKED_TOKEN).then(|| LINKED_TOKEN_ID.to_string()),
            probe_interval: PROBE_INTERVAL,
            probe_timeout: global.probe_timeout,
            labels: BTreeMap::from([("team".to_string(), "demo".to_string())]),
        });
    }
    let organizations = vec![OrgConfig {
        name: ORG_NAME.into(),
        org_id: ORG_ID.into(),
        api_key: SecretSource::Static(Secret::new(org_key)),
        base_url: Url::parse(&running.base_url()).map_err(|e| format!("demo org URL: {e}"))?,
        probe_interval: PROBE_INTERVAL,
        per_token_series: true,
        max_pages: crate::providers::atlassian::inventory::MAX_PAGES,
    }];
    Ok((
        Config {
            global,
            tokens: config_tokens,
            organizations,
        },
        running,
    ))
}

/// Demo credentials are made up at start and start like the provider's real ones
/// (`ATATT3xDEMO…`, `ghp_3xDEMO…`, `glpat-3xDEMO…`): never shown, whatever redaction
/// looks for.
fn demo_secret(provider: Provider, i: usize) -> String {
    let prefix = provider
        .spec()
        .secret_prefixes
        .first()
        .copied()
        .unwrap_or("");
    format!("{prefix}3xDEMO{i:02}{:016x}", rand::random::<u64>())
}

/// A loopback port with nothing listening on it (bound, then released).
async fn unused_local_port() -> Result<u16, String> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot pick a port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("cannot pick a port: {e}"))
}
