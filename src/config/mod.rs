//! Configuration: the YAML schema of README "Configuration", its validation, and the
//! resolved types the scheduler and state use.
//!
//! Parsing happens in two passes. serde ([`raw`], with `deny_unknown_fields` and the
//! field types of [`fields`] for durations, timestamps, names and URLs) rejects malformed
//! input with the YAML path, line and column; [`guards`] bound what a hostile file can
//! cost first. A second pass ([`validate`]) checks rules that span fields (duplicates,
//! `https://`, exactly-one-of, what the provider accepts) and reports *every* problem at
//! once, each prefixed with its location.

mod fields;
mod guards;
mod raw;
mod validate;

pub use fields::parse_site;
pub use guards::MAX_CONFIG_BYTES;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::providers::atlassian::admin_key;
use crate::providers::oauth::OAuth2Settings;
use crate::providers::{AuthKind, Provider};
use crate::secret::SecretSource;
use crate::upstream::ClientOptions;

/// A fully validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub tokens: Vec<TokenConfig>,
    pub organizations: Vec<OrgConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub max_concurrency: usize,
    pub default_token_lifetime: Duration,
    pub allow_insecure_http: bool,
    /// `global.tls` and `global.proxy_url`: how the outbound client reaches the vendors.
    pub client: ClientOptions,
}

impl Default for Global {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(10),
            max_concurrency: 16,
            default_token_lifetime: Duration::from_secs(365 * 86_400),
            allow_insecure_http: false,
            client: ClientOptions::default(),
        }
    }
}

/// Where a token's expiry date came from (the `expiry_source` label of `apitoken_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    /// The provider itself reported it (wins over everything else).
    Provider,
    OrgInventory,
    Config,
    CreatedAt,
    None,
}

impl ExpirySource {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpirySource::Provider => "provider",
            ExpirySource::Config => "config",
            ExpirySource::CreatedAt => "created_at",
            ExpirySource::OrgInventory => "org_inventory",
            ExpirySource::None => "none",
        }
    }
}

/// One watched credential, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub name: String,
    pub provider: Provider,
    pub site: Url,
    /// How requests authenticate (the provider's default unless the config says otherwise).
    pub auth: AuthKind,
    /// The OAuth client, with `auth: oauth2`.
    pub oauth2: Option<OAuth2Settings>,
    pub email: Option<String>,
    pub secret: SecretSource,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub expiry_source: ExpirySource,
    /// Unix seconds: when the token was created (`created_at`), if the config says.
    pub created_at: Option<i64>,
    pub expected_account_id: Option<String>,
    /// Unix seconds.
    pub revoked_at: Option<i64>,
    pub org_token_id: Option<String>,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub labels: BTreeMap<String, String>,
}

/// The fields that decide *how* a token is probed. When a reload leaves them unchanged the
/// token keeps its schedule and state; labels or expiry dates alone do not restart probing.
/// When only the interval or timeout changed ([`ProbeSettings::same_credential`]), the
/// token keeps its state and counters and only its probe loop restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings<'a> {
    provider: Provider,
    site: &'a Url,
    auth: AuthKind,
    oauth2: Option<&'a OAuth2Settings>,
    email: Option<&'a str>,
    secret: &'a SecretSource,
    expected_account_id: Option<&'a str>,
    probe_interval: Duration,
    probe_timeout: Duration,
}

impl ProbeSettings<'_> {
    /// Whether both probe the same credential the same way, whatever their schedule: the
    /// state learned about one is true of the other.
    pub fn same_credential(&self, other: &ProbeSettings<'_>) -> bool {
        ProbeSettings {
            probe_interval: other.probe_interval,
            probe_timeout: other.probe_timeout,
            ..self.clone()
        } == *other
    }
}

impl TokenConfig {
    /// A token with every optional field unset and the global defaults, for unit tests
    /// that build state without YAML.
    #[cfg(test)]
    pub(crate) fn for_tests(name: &str, provider: Provider) -> TokenConfig {
        let global = Global::default();
        TokenConfig {
            name: name.to_string(),
            provider,
            site: provider
                .default_site()
                .and_then(|s| Url::parse(s).ok())
                .unwrap_or_else(|| Url::parse("https://example.invalid").expect("a valid URL")),
            auth: provider.default_auth(),
            oauth2: None,
            email: None,
            secret: SecretSource::Env(format!(
                "{}_TOKEN",
                name.to_uppercase().replace(['-', '.'], "_")
            )),
            expires_at: None,
            expiry_source: ExpirySource::None,
            created_at: None,
            expected_account_id: None,
            revoked_at: None,
            org_token_id: None,
            probe_interval: global.probe_interval,
            probe_timeout: global.probe_timeout,
            labels: BTreeMap::new(),
        }
    }

    pub fn probe_settings(&self) -> ProbeSettings<'_> {
        ProbeSettings {
            provider: self.provider,
            site: &self.site,
            auth: self.auth,
            oauth2: self.oauth2.as_ref(),
            email: self.email.as_deref(),
            secret: &self.secret,
            expected_account_id: self.expected_account_id.as_deref(),
            probe_interval: self.probe_interval,
            probe_timeout: self.probe_timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrgConfig {
    pub name: String,
    pub org_id: String,
    pub api_key: SecretSource,
    pub base_url: Url,
    pub probe_interval: Duration,
    /// Export one series per listed token and key (default); false: only the aggregates
    /// and the list health (linking and revocation still work).
    pub per_token_series: bool,
    /// Pages each list may take per run (`pageSize=100`).
    pub max_pages: usize,
}

/// The implicit token that watches an organization's admin API key is named
/// `{org}-admin-key` (see [`Config::implicit_admin_tokens`]).
pub const ADMIN_KEY_TOKEN_SUFFIX: &str = "-admin-key";

impl OrgConfig {
    /// Whether `other` lists the organization the same way (everything but what only
    /// changes the export): a reload that changes only `per_token_series` keeps the
    /// inventory loop and the last listings.
    pub fn same_listing(&self, other: &OrgConfig) -> bool {
        OrgConfig {
            per_token_series: other.per_token_series,
            ..self.clone()
        } == *other
    }

    /// The name of the implicit token that watches this organization's API key.
    pub fn admin_key_token_name(&self) -> String {
        format!("{}{ADMIN_KEY_TOKEN_SUFFIX}", self.name)
    }

    /// The token that probes this organization's API key for validity, unless a configured
    /// `atlassian_admin` token already reads the same secret source (then that one does).
    /// It carries the custom label `org` so it can be joined to the inventory metrics.
    pub(crate) fn implicit_admin_token(
        &self,
        global: &Global,
        tokens: &[TokenConfig],
    ) -> Option<TokenConfig> {
        let watched = tokens
            .iter()
            .any(|t| t.provider == admin_key::PROVIDER && t.secret == self.api_key);
        (!watched).then(|| TokenConfig {
            name: self.admin_key_token_name(),
            provider: admin_key::PROVIDER,
            site: self.base_url.clone(),
            auth: admin_key::PROVIDER.default_auth(),
            oauth2: None,
            email: None,
            secret: self.api_key.clone(),
            expires_at: None,
            expiry_source: ExpirySource::None,
            created_at: None,
            expected_account_id: None,
            revoked_at: None,
            org_token_id: None,
            probe_interval: global.probe_interval,
            probe_timeout: global.probe_timeout,
            labels: BTreeMap::from([("org".to_string(), self.name.clone())]),
        })
    }
}

/// A configuration that could not be loaded: the file and every problem found in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{}: {one}", self.file.display()),
            many => {
                write!(f, "{}: {} problems:", self.file.display(), many.len())?;
                for p in many {
                    write!(f, "\n  - {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let fail = |p: String| ConfigError {
            file: path.to_path_buf(),
            problems: vec![p],
        };
        let meta = std::fs::metadata(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "file is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        // The size check above sees 0 bytes for pipes and devices (`<(…)`, /dev/zero), so
        // the read itself is bounded too.
        let bytes = crate::util::read_at_most(path, MAX_CONFIG_BYTES)
            .map_err(|e| fail(format!("cannot read: {e}")))?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(fail(format!(
                "more than {MAX_CONFIG_BYTES} bytes; the limit is {MAX_CONFIG_BYTES}"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(format!(
                "not valid UTF-8 (first bad byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Config::parse(&text).map_err(|problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        })
    }

    /// Parses and validates YAML text. Errors are located by YAML path and line.
    pub fn parse(text: &str) -> Result<Config, Vec<String>> {
        if let Some((line, column)) = guards::flow_too_deep(text) {
            return Err(vec![format!(
                "invalid YAML: [ ] / {{ }} collections nested deeper than {} levels at line {line} column {column} (a config needs at most 3)",
                guards::MAX_FLOW_DEPTH
            )]);
        }
        let raw: raw::RawConfig = if text.trim().is_empty() {
            raw::RawConfig::default()
        } else {
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| vec![guards::redact_tokens(&guards::yaml_error(&e))])?
        };
        raw.validate()
    }

    /// One `atlassian_admin` token per organization whose API key no configured
    /// `atlassian_admin` token already watches (same `token_env`/`token_file` as the
    /// organization's `api_key_env`/`api_key_file`), named `{org}-admin-key`. The scheduler
    /// probes them like configured tokens; `check` does not (it probes the config's tokens).
    pub fn implicit_admin_tokens(&self) -> Vec<TokenConfig> {
        self.organizations
            .iter()
            .filter_map(|o| o.implicit_admin_token(&self.global, &self.tokens))
            .collect()
    }

    /// Problems with secret sources: each env var must be set and non-empty, each file
    /// readable. Used by `--config.check`; the running exporter tolerates these per token.
    /// Sites that are valid but most likely wrong for their vendor
    /// ([`crate::providers::ProviderSpec::site_warning`]), one line per token.
    pub fn check_sites(&self) -> Vec<String> {
        self.tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let warning = (t.provider.spec().site_warning)(&t.site)?;
                Some(format!("tokens[{i}] ({}).site: {warning}", t.name))
            })
            .collect()
    }

    /// Every secret source that cannot be read in this environment, one line each. Each
    /// read runs on its own thread and is waited for at most [`SECRET_CHECK_LIMIT`]: a token
    /// file on a hung mount or a FIFO without a writer is reported, not waited for.
    pub fn check_secret_sources(&self) -> Vec<String> {
        self.check_secret_sources_within(SECRET_CHECK_LIMIT)
    }

    fn check_secret_sources_within(&self, limit: std::time::Duration) -> Vec<String> {
        use std::sync::{mpsc, Arc, Mutex};
        const WORKERS: usize = 16;
        let tokens = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("tokens[{i}] ({})", t.name), &t.secret));
        let orgs = self
            .organizations
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("organizations[{i}] ({})", o.name), &o.api_key));
        let sources: Vec<(String, &crate::secret::SecretSource)> = tokens.chain(orgs).collect();
        // A few reader threads share the queue; one stuck on a hung file leaves the others.
        let queue: Arc<Mutex<Vec<(usize, crate::secret::SecretSource)>>> = Arc::new(Mutex::new(
            sources
                .iter()
                .enumerate()
                .rev()
                .map(|(i, (_, s))| (i, (*s).clone()))
                .collect(),
        ));
        let (tx, rx) = mpsc::channel();
        for _ in 0..WORKERS.min(sources.len()) {
            let (queue, tx) = (queue.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name("config-check-read".into())
                .spawn(move || loop {
                    let Some((i, source)) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop()
                    else {
                        return;
                    };
                    let problem = crate::secret::SecretReader::new(source).read().err();
                    if tx.send((i, problem.map(|e| e.to_string()))).is_err() {
                        return;
                    }
                });
            drop(spawned);
        }
        drop(tx);
        let mut answers: Vec<Option<Option<String>>> = vec![None; sources.len()];
        let deadline = std::time::Instant::now() + limit;
        let mut pending = sources.len();
        while pending > 0 {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Ok((i, problem)) => {
                    answers[i] = Some(problem);
                    pending -= 1;
                }
                Err(_) => break, // out of time, or no reader thread left
            }
        }
        sources
            .iter()
            .zip(answers)
            .filter_map(|((loc, source), answer)| {
                let problem = match answer {
                    Some(problem) => problem?,
                    None => format!(
                        "token {source} did not answer within {} s (a hung mount, or a FIFO without a writer?)",
                        limit.as_secs()
                    ),
                };
                Some(format!("{loc}: {problem} (the exporter starts anyway; this token reports credential_unavailable until it can be read)"))
            })
            .collect()
    }
}

/// How long `--config.check` waits for all secret sources together.
pub const SECRET_CHECK_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_file_that_never_answers_is_a_warning_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo-token");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let ok = dir.path().join("ok-token");
        std::fs::write(&ok, "secret-value-1").unwrap();
        let config = Config::parse(&format!(
            "tokens:\n  - {{name: hung, provider: jira, site: \"https://a.atlassian.net\", email: a@b.example, token_file: {}}}\n  - {{name: fine, provider: jira, site: \"https://a.atlassian.net\", email: a@b.example, token_file: {}}}\n",
            fifo.display(),
            ok.display()
        ))
        .unwrap();
        let started = std::time::Instant::now();
        let warnings = config.check_secret_sources_within(std::time::Duration::from_millis(300));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert!(
            warnings[0].starts_with("tokens[0] (hung): token file ")
                && warnings[0].contains("did not answer within"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn a_github_site_without_api_v3_and_a_gitlab_site_with_api_v4_are_warned_about() {
        let config = Config::parse(
            r#"
tokens:
  - {name: gh-com, provider: github, token_env: A}
  - {name: ghes-ok, provider: github, site: "https://git.acme.example/api/v3/", token_env: A}
  - {name: ghes-bare, provider: github, site: "https://git.acme.example", token_env: A}
  - {name: gl-ok, provider: gitlab, site: "https://gitlab.acme.example", token_env: A}
  - {name: gl-api, provider: gitlab, site: "https://gitlab.acme.example/api/v4", token_env: A}
  - {name: jira, provider: jira, site: "https://acme.atlassian.net", email: a@b.example, token_env: A}
"#,
        )
        .unwrap();
        let warnings = config.check_sites();
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].starts_with("tokens[2] (ghes-bare).site: https://git.acme.example/ ")
                && warnings[0].contains("/api/v3"),
            "{}",
            warnings[0]
        );
        assert!(
            warnings[1].starts_with("tokens[4] (gl-api).site: ")
                && warnings[1].contains("instance root"),
            "{}",
            warnings[1]
        );
    }

    fn problems(yaml: &str) -> Vec<String> {
        Config::parse(yaml).unwrap_err()
    }

    const VALID: &str = r#"
global:
  probe_interval: 5m
  probe_timeout: 10s
  max_concurrency: 4
  default_token_lifetime: 90d
tokens:
  - name: jira-ci
    provider: jira
    site: https://acme.atlassian.net/
    email: ci@acme.example
    token_env: JIRA_CI
    expires_at: 2026-12-31
    labels: {team: platform}
  - name: conf
    provider: confluence
    site: https://acme.atlassian.net
    email: c@acme.example
    token_file: /run/secrets/conf
    created_at: 2026-01-01T00:00:00Z
    probe_interval: 10m
  - name: bb
    provider: bitbucket
    email: bbuser
    token_env: BB
    revoked_at: 2026-11-20T10:00:00Z
  - name: admin
    provider: atlassian_admin
    token_env: ADMIN
organizations:
  - name: acme
    org_id: 0a1b
    api_key_env: ADMIN
"#;

    #[test]
    fn valid_config_resolves_defaults_and_expiry() {
        let c = Config::parse(VALID).unwrap();
        assert_eq!(c.global.max_concurrency, 4);
        let jira = &c.tokens[0];
        assert_eq!(jira.site.as_str(), "https://acme.atlassian.net/");
        assert_eq!(jira.expires_at, Some(1_798_675_200)); // 2026-12-31T00:00:00Z
        assert_eq!(jira.expiry_source, ExpirySource::Config);
        assert_eq!(jira.probe_interval, Duration::from_secs(300));
        let conf = &c.tokens[1];
        // created_at + 90d default lifetime
        assert_eq!(conf.expires_at, Some(1_767_225_600 + 90 * 86_400));
        assert_eq!(conf.expiry_source, ExpirySource::CreatedAt);
        assert_eq!(conf.probe_interval, Duration::from_secs(600));
        assert_eq!(c.tokens[2].site.as_str(), "https://api.bitbucket.org/");
        assert_eq!(c.tokens[2].expiry_source, ExpirySource::None);
        assert_eq!(c.tokens[3].site.as_str(), "https://api.atlassian.com/");
        assert_eq!(c.organizations[0].probe_interval, Duration::from_secs(3600));
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let p = problems("tokens:\n  - name: a\n    provider: jira\n    tokn_env: X\n");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("tokens[0]"), "{p:?}");
        assert!(p[0].contains("unknown field `tokn_env`"), "{p:?}");
        assert!(p[0].contains("line 4"), "{p:?}");
    }

    #[test]
    fn bad_duration_and_date_name_the_field() {
        let p = problems("global:\n  probe_interval: 5 minutes please\n");
        assert!(
            p[0].starts_with("global.probe_interval: invalid duration"),
            "{p:?}"
        );
        assert!(p[0].contains("line 2"), "{p:?}");
        let p = problems(
            "tokens:\n  - name: a\n    provider: jira\n    site: https://x\n    email: e\n    token_env: X\n    expires_at: 31/12/2026\n",
        );
        assert!(
            p[0].contains("tokens[0].expires_at: invalid timestamp"),
            "{p:?}"
        );
    }

    #[test]
    fn every_semantic_problem_is_reported_at_once() {
        let p = problems(
            r#"
tokens:
  - {name: a, provider: jira, site: "http://plain", email: e, token_env: X}
  - {name: a, provider: jira, site: "https://x", email: e, token_env: X, token_file: /f}
  - {name: b, provider: confluence, token_env: X}
  - {name: c, provider: atlassian_admin, email: e, token_env: "1BAD"}
  - {name: d, provider: jira, site: "https://x", email: e, token_env: X, expires_at: 2025-01-01, created_at: 2026-01-01}
  - {name: e, provider: jira, site: "https://x", email: e, token_env: X, labels: {token: x}}
"#,
        );
        let all = p.join("\n");
        for needle in [
            "tokens[0] (a).site: http:// would send credentials",
            "tokens[1] (a).name: duplicate token name \"a\" (first used by tokens[0])",
            "tokens[1] (a): set exactly one of token_env / token_file",
            "tokens[2] (b).site: required for provider confluence",
            "tokens[2] (b).email: required for provider confluence",
            "tokens[3] (c).email: not used by provider atlassian_admin",
            "tokens[3] (c).token_env: not an environment variable name",
            "tokens[4] (d).expires_at: is before created_at",
            "tokens[5] (e).labels.token: reserved label name",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn insecure_http_allowed_only_when_enabled() {
        let yaml = "global: {allow_insecure_http: true}\ntokens:\n  - {name: a, provider: jira, site: \"http://127.0.0.1:1\", email: e, token_env: X}\n";
        assert!(Config::parse(yaml).is_ok());
    }

    #[test]
    fn invalid_names_labels_and_urls_are_refused() {
        let p = problems("tokens:\n  - {name: \"a b\", provider: jira}\n");
        assert!(p[0].contains("invalid name \"a b\""), "{p:?}");
        let p = problems("tokens:\n  - {name: a, provider: gitea}\n");
        assert!(p[0].contains("unknown variant `gitea`"), "{p:?}");
        let p = problems("tokens:\n  - {name: a, provider: jira, site: \"https://u:hunter2@x\", email: e, token_env: X}\n");
        assert!(p[0].contains("must not contain credentials"), "{p:?}");
        assert!(!p[0].contains("hunter2"), "{p:?}");
        let p = problems("tokens:\n  - {name: a, provider: jira, site: \"https://x\", email: e, token_env: X, labels: {\"bad-label\": v}}\n");
        assert!(p[0].contains("invalid label name \"bad-label\""), "{p:?}");
    }

    #[test]
    fn empty_file_is_an_empty_config() {
        let c = Config::parse("").unwrap();
        assert!(c.tokens.is_empty());
    }

    #[test]
    fn each_org_key_is_watched_once_by_an_implicit_or_configured_admin_token() {
        let yaml = r#"
tokens:
  - {name: mine, provider: atlassian_admin, token_env: KEY_A}
organizations:
  - {name: acme, org_id: o1, api_key_env: KEY_A}
  - {name: beta, org_id: o2, api_key_file: /run/key-b, base_url: "https://admin.example", probe_interval: 2h}
"#;
        let c = Config::parse(yaml).unwrap();
        let implicit = c.implicit_admin_tokens();
        assert_eq!(implicit.len(), 1, "acme's key is already watched by `mine`");
        let t = &implicit[0];
        assert_eq!(t.name, "beta-admin-key");
        assert_eq!(t.provider, admin_key::PROVIDER);
        assert_eq!(t.site.as_str(), "https://admin.example/");
        assert_eq!(t.secret, SecretSource::File("/run/key-b".into()));
        assert_eq!(t.probe_interval, c.global.probe_interval);
        assert_eq!(t.labels.get("org").map(String::as_str), Some("beta"));
        assert_eq!(t.expiry_source, ExpirySource::None);
    }

    #[test]
    fn organizations_take_per_token_series_and_max_pages() {
        let c = Config::parse(VALID).unwrap();
        let acme = &c.organizations[0];
        assert!(acme.per_token_series, "on by default");
        assert_eq!(acme.max_pages, 2500);
        let c = Config::parse(
            "organizations:\n  - {name: big, org_id: o1, api_key_env: K, per_token_series: false, max_pages: 100000}\n",
        )
        .unwrap();
        let big = &c.organizations[0];
        assert!(!big.per_token_series);
        assert_eq!(big.max_pages, 100_000);
        // Only per_token_series differs: the same listing (the inventory is kept).
        let other = OrgConfig {
            per_token_series: true,
            ..big.clone()
        };
        assert!(big.same_listing(&other));
        let other = OrgConfig {
            max_pages: 5,
            ..big.clone()
        };
        assert!(!big.same_listing(&other));

        let p = problems(
            "organizations:\n  - {name: a, org_id: o1, api_key_env: K, max_pages: 0}\n  - {name: b, org_id: o2, api_key_env: K, max_pages: 100001}\n",
        );
        assert_eq!(
            p,
            [
                "organizations[0] (a).max_pages: must be at least 1",
                "organizations[1] (b).max_pages: must be at most 100000 (pages of 100 entries per list)",
            ]
        );
        let p =
            problems("organizations:\n  - {name: a, org_id: o1, api_key_env: K, max_pages: -1}\n");
        assert!(p[0].contains("organizations[0].max_pages"), "{p:?}");
        let p = problems(
            "organizations:\n  - {name: a, org_id: o1, api_key_env: K, per_token_series: sometimes}\n",
        );
        assert!(p[0].contains("organizations[0].per_token_series"), "{p:?}");
    }

    #[test]
    fn a_token_named_like_an_implicit_admin_token_is_refused() {
        let p = problems(
            r#"
tokens:
  - {name: acme-admin-key, provider: jira, site: "https://x", email: e, token_env: X}
organizations:
  - {name: acme, org_id: o1, api_key_env: KEY}
"#,
        );
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("organizations[0] (acme): its API key is watched by an implicit atlassian_admin token named \"acme-admin-key\", but tokens[0] (acme-admin-key) already has that name"), "{p:?}");
        // The same name is fine when that token is the one watching the key.
        let ok = "tokens:\n  - {name: acme-admin-key, provider: atlassian_admin, token_env: KEY}\norganizations:\n  - {name: acme, org_id: o1, api_key_env: KEY}\n";
        assert!(Config::parse(ok)
            .unwrap()
            .implicit_admin_tokens()
            .is_empty());
    }

    #[test]
    fn auth_is_checked_against_what_the_provider_accepts() {
        let c = Config::parse(
            "tokens:\n  - {name: sa, provider: jira, site: \"https://api.atlassian.com/ex/jira/c1\", auth: bearer, token_env: X}\n",
        )
        .unwrap();
        assert_eq!(c.tokens[0].auth, AuthKind::Bearer);
        assert_eq!(c.tokens[0].email, None, "email is optional with bearer");
        let c = Config::parse(
            "tokens:\n  - {name: j, provider: jira, site: \"https://x\", email: e, token_env: X}\n",
        )
        .unwrap();
        assert_eq!(c.tokens[0].auth, AuthKind::Basic, "the provider's default");

        let p = problems(
            "tokens:\n  - {name: b, provider: bitbucket, auth: bearer, email: e, token_env: X}\n",
        );
        assert_eq!(
            p,
            ["tokens[0] (b).auth: provider bitbucket does not accept auth bearer (it accepts: basic)"]
        );
        let p = problems("tokens:\n  - {name: a, provider: atlassian_admin, auth: bearer, email: e, token_env: X}\n");
        assert_eq!(
            p,
            ["tokens[0] (a).email: not used by provider atlassian_admin (it authenticates with a Bearer key)"]
        );
        // GitHub and GitLab refuse `email`, whatever the auth, and name the field.
        let p = problems(
            "tokens:\n  - {name: g, provider: github, email: e, token_env: X}\n  - {name: l, provider: gitlab, email: e, token_env: X}\n  - {name: m, provider: gitlab, auth: bearer, email: e, token_env: X}\n",
        );
        assert_eq!(
            p,
            [
                "tokens[0] (g).email: not used by provider github (it authenticates with a Bearer key); to check whose token it is, set expected_account_id",
                "tokens[1] (l).email: not used by provider gitlab (it sends the token alone in its own header); to check whose token it is, set expected_account_id",
                "tokens[2] (m).email: not used by provider gitlab (it authenticates with a Bearer key); to check whose token it is, set expected_account_id",
            ]
        );
        let p = problems("tokens:\n  - {name: a, provider: jira, auth: kerberos, token_env: X}\n");
        assert!(
            p[0].contains("tokens[0].auth: unknown variant `kerberos`"),
            "{p:?}"
        );
        for name in AuthKind::NAMES {
            assert!(p[0].contains(name), "{p:?}");
        }
    }

    #[test]
    fn oauth2_needs_its_block_and_the_gateway_site() {
        let ok = "tokens:\n  - name: sa\n    provider: jira\n    site: https://api.atlassian.com/ex/jira/0f1e-cloud\n    auth: oauth2\n    oauth2: {client_id: abc, scopes: [read:jira-user]}\n    token_env: SA_SECRET\n";
        let c = Config::parse(ok).unwrap();
        let o = c.tokens[0].oauth2.as_ref().unwrap();
        assert_eq!(o.client_id, "abc");
        assert_eq!(
            o.token_url.as_str(),
            "https://auth.atlassian.com/oauth/token"
        );
        assert_eq!(o.scopes, ["read:jira-user"]);

        let p = problems("tokens:\n  - {name: sa, provider: jira, site: \"https://acme.atlassian.net\", auth: oauth2, oauth2: {client_id: abc}, token_env: X}\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("tokens[0] (sa).site: auth: oauth2 works only through the API gateway, https://api.atlassian.com/ex/jira/{cloudId}"), "{p:?}");
        let p = problems("tokens:\n  - {name: sa, provider: confluence, site: \"https://api.atlassian.com/ex/jira/c1\", auth: oauth2, oauth2: {client_id: abc}, token_env: X}\n");
        assert!(p[0].contains("/ex/confluence/{cloudId}"), "{p:?}");
        let p = problems("tokens:\n  - {name: sa, provider: jira, site: \"https://api.atlassian.com/ex/jira/c1\", auth: oauth2, token_env: X}\n");
        assert_eq!(p, ["tokens[0] (sa).oauth2: required with auth: oauth2 (client_id, and optionally token_url and scopes)"]);
        let p = problems("tokens:\n  - {name: b, provider: bitbucket, email: e, oauth2: {client_id: abc}, token_env: X}\n");
        assert_eq!(
            p,
            ["tokens[0] (b).oauth2: provider bitbucket cannot use OAuth client credentials"]
        );
        let p = problems("tokens:\n  - {name: j, provider: jira, site: \"https://x\", email: e, oauth2: {client_id: abc}, token_env: X}\n");
        assert_eq!(p, ["tokens[0] (j).oauth2: only used with auth: oauth2"]);
        let p = problems("tokens:\n  - {name: sa, provider: jira, site: \"https://api.atlassian.com/ex/jira/c1\", auth: oauth2, oauth2: {client_id: abc, token_url: \"http://auth.example/t\"}, token_env: X}\n");
        assert!(
            p[0].starts_with("tokens[0] (sa).oauth2.token_url: http:// would send credentials"),
            "{p:?}"
        );
        let p = problems("tokens:\n  - {name: sa, provider: jira, site: \"https://api.atlassian.com/ex/jira/c1\", auth: oauth2, oauth2: {client_id: abc, secret: x}, token_env: X}\n");
        assert!(p[0].contains("unknown field `secret`"), "{p:?}");
    }

    #[test]
    fn out_of_range_numbers_are_refused_naming_the_field() {
        let p = problems("global: {max_concurrency: 2305843009213693952, probe_timeout: 1h, probe_interval: 500000000000y}\n");
        let all = p.join("\n");
        for needle in [
            "global.max_concurrency: must be at most 4096 (got 2305843009213693952)",
            "global.probe_timeout: must be at most 10m",
            "global.probe_interval: must be at most 30d",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
        let p = problems("tokens:\n  - {name: a, provider: jira, site: \"https://x\", email: e, token_env: X, probe_interval: 31d}\norganizations:\n  - {name: o, org_id: x, api_key_env: K, probe_interval: 400d}\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("tokens[0] (a).probe_interval: must be at most 30d"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("organizations[0] (o).probe_interval: must be at most 30d"),
            "{p:?}"
        );
        assert!(Config::parse(
            "global: {max_concurrency: 4096, probe_interval: 30d, probe_timeout: 10m}\n"
        )
        .is_ok());
    }

    #[test]
    fn a_credential_pasted_as_a_variable_name_or_path_is_refused_and_never_echoed() {
        for pasted in [
            "Zk3pQ9rLm2Tx7Vb4Nc8Wd1Ye",
            "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        ] {
            for key in ["token_env", "token_file"] {
                let yaml = format!("tokens:\n  - {{name: a, provider: jira, site: \"https://x\", email: e, {key}: {pasted}}}\n");
                let p = problems(&yaml);
                assert_eq!(p.len(), 1, "{p:?}");
                assert!(
                    p[0].starts_with(&format!(
                        "tokens[0] (a).{key}: this looks like a token itself"
                    )),
                    "{p:?}"
                );
                assert!(!p[0].contains(pasted), "{p:?}");
            }
        }
    }

    #[test]
    fn github_and_gitlab_defaults_and_what_they_accept() {
        let c = Config::parse(
            "tokens:\n  - {name: g, provider: github, token_env: X}\n  - {name: e, provider: github, site: \"https://ghe.acme.example/api/v3\", token_env: X}\n  - {name: l, provider: gitlab, token_env: X}\n  - {name: b, provider: gitlab, auth: bearer, site: \"https://gitlab.acme.example\", token_env: X}\n",
        )
        .unwrap();
        let t = |i: usize| (c.tokens[i].site.as_str(), c.tokens[i].auth);
        assert_eq!(t(0), ("https://api.github.com/", AuthKind::Bearer));
        assert_eq!(t(1), ("https://ghe.acme.example/api/v3", AuthKind::Bearer));
        assert_eq!(t(2), ("https://gitlab.com/", AuthKind::Header));
        assert_eq!(t(3), ("https://gitlab.acme.example/", AuthKind::Bearer));

        let p = problems(
            "tokens:\n  - {name: g, provider: github, auth: header, token_env: X}\n  - {name: l, provider: gitlab, auth: basic, token_env: X}\n",
        );
        assert_eq!(
            p,
            [
                "tokens[0] (g).auth: provider github does not accept auth header (it accepts: bearer)",
                "tokens[1] (l).auth: provider gitlab does not accept auth basic (it accepts: header, bearer)",
            ]
        );
        // A vendor token pasted where the variable name or path belongs is never echoed.
        for pasted in [
            "ghp_0123456789abcdefghijABCDEFGHIJ012345",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "glpat-0123456789abcdefghij",
        ] {
            for key in ["token_env", "token_file"] {
                let p = problems(&format!(
                    "tokens:\n  - {{name: g, provider: github, {key}: {pasted}}}\n"
                ));
                assert_eq!(p.len(), 1, "{p:?}");
                assert!(p[0].contains("looks like a token itself"), "{p:?}");
                assert!(!p[0].contains(pasted), "{p:?}");
            }
        }
    }

    #[test]
    fn a_broken_ca_file_or_proxy_url_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let not_pem = dir.path().join("ca.pem");
        std::fs::write(&not_pem, "hello").unwrap();
        let p = problems(&format!(
            "global:\n  tls: {{ca_file: \"{}\"}}\n  proxy_url: \"http://user:hunter2@proxy:3128\"\n",
            not_pem.display()
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].starts_with("global.tls.ca_file: ") && p[0].contains("no PEM certificate"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("global.proxy_url: must not contain credentials"),
            "{p:?}"
        );
        assert!(!p[1].contains("hunter2"), "{p:?}");
        let p = problems(
            "global: {tls: {ca_file: /nonexistent/ca.pem}, proxy_url: \"socks5://p:1080\"}\n",
        );
        assert!(
            p[0].starts_with("global.tls.ca_file: cannot read /nonexistent/ca.pem"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("global.proxy_url: the scheme must be http or https"),
            "{p:?}"
        );
        let c = Config::parse(
            "global: {tls: {insecure_skip_verify: true}, proxy_url: \"http://proxy.corp:3128\"}\n",
        )
        .unwrap();
        assert!(c.global.client.insecure_skip_verify);
        assert_eq!(
            c.global.client.proxy_url.unwrap().as_str(),
            "http://proxy.corp:3128/"
        );
    }
}
