//! The `demo` scenario: a simulator with one credential in every state the exporter can
//! report, and the config that watches them. Shown to newcomers and used by the alerting
//! end-to-end test, so token names here are relied upon (see README and tests/e2e).

use std::collections::BTreeMap;
use std::time::Duration;

use url::Url;

use crate::config::{Config, ExpirySource, Global, TokenConfig};
use crate::provider::Provider;
use crate::secret::{Secret, SecretSource};
use crate::simulator::{Behaviour, Credential, RunningSimulator, Simulator};
use crate::state::unix_now;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(15);
pub const FIRST_PROBES_WITHIN: Duration = Duration::from_secs(5);
const DAY: i64 = 86_400;

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
}

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
        account: "5b10a2844c20165700ede001",
        expected_account: None,
        expiry,
        revoked_hours_ago: None,
    };
    vec![
        t(
            "jira-valid",
            Provider::Jira,
            Some(""),
            Valid,
            Expiry::InDays(200),
        ),
        t(
            "jira-expiring",
            Provider::Jira,
            Some(""),
            Valid,
            Expiry::InDays(5),
        ),
        t(
            "jira-expired",
            Provider::Jira,
            Some("/closed"),
            Dead,
            Expiry::InDays(-3),
        ),
        DemoToken {
            revoked_hours_ago: Some(1),
            ..t(
                "jira-revoked",
                Provider::Jira,
                Some(""),
                Valid,
                Expiry::InDays(120),
            )
        },
        t(
            "jira-anonymous",
            Provider::Jira,
            Some(""),
            Dead,
            Expiry::InDays(40),
        ),
        t(
            "confluence-valid",
            Provider::Confluence,
            Some(""),
            Valid,
            Expiry::CreatedDaysAgo(100),
        ),
        DemoToken {
            account: "712020:0b7a6c8e-other-account",
            expected_account: Some("5b10a2844c20165700ede001"),
            ..t(
                "confluence-mismatch",
                Provider::Confluence,
                Some(""),
                Valid,
                Expiry::InDays(90),
            )
        },
        t(
            "bitbucket-valid",
            Provider::Bitbucket,
            Some(""),
            Valid,
            Expiry::None,
        ),
        t(
            "bitbucket-ratelimited",
            Provider::Bitbucket,
            Some(""),
            RateLimited {
                retry_after: Some("120".into()),
            },
            Expiry::InDays(300),
        ),
        t(
            "admin-valid",
            Provider::AtlassianAdmin,
            Some(""),
            Valid,
            Expiry::InDays(60),
        ),
        t(
            "admin-unreachable",
            Provider::AtlassianAdmin,
            None,
            Valid,
            Expiry::InDays(25),
        ),
    ]
}

/// Starts the simulator on 127.0.0.1 and returns the config watching it.
pub async fn start() -> Result<(Config, RunningSimulator), String> {
    let sim = Simulator::new();
    sim.close_site("/closed");
    let now = unix_now() as i64;
    let tokens = scenario();
    let secrets: Vec<String> = (0..tokens.len()).map(demo_secret).collect();
    for (t, secret) in tokens.iter().zip(&secrets) {
        sim.add_credential(
            secret,
            Credential {
                account_id: t.account.into(),
                email: format!("{}@demo.example", t.name),
                username: t.name.replace('-', "_"),
                behaviour: t.behaviour.clone(),
            },
        );
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
            email: t
                .provider
                .uses_basic_auth()
                .then(|| format!("{}@demo.example", t.name)),
            secret: SecretSource::Static(Secret::new(secret)),
            expires_at,
            expiry_source,
            expected_account_id: t.expected_account.map(str::to_string),
            revoked_at: t.revoked_hours_ago.map(|h| now - h * 3600),
            org_token_id: None,
            probe_interval: PROBE_INTERVAL,
            probe_timeout: global.probe_timeout,
            labels: BTreeMap::from([("team".to_string(), "demo".to_string())]),
        });
    }
    Ok((
        Config {
            global,
            tokens: config_tokens,
            organizations: Vec::new(),
        },
        running,
    ))
}

/// Demo credentials are made up at start and look like Atlassian tokens.
fn demo_secret(i: usize) -> String {
    format!("ATATT3xDEMO{i:02}{:016x}", rand::random::<u64>())
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
