//! Configuration: the YAML schema of SPEC §3, its validation, and the resolved types the
//! scheduler and metrics use.
//!
//! Parsing happens in two passes. serde (with `deny_unknown_fields` and custom field types
//! for durations, timestamps, names and URLs) rejects malformed input with the YAML path,
//! line and column. A second pass checks rules that span fields (duplicates, `https://`,
//! exactly-one-of) and reports *every* problem at once, each prefixed with its location.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::provider::Provider;
use crate::secret::SecretSource;

/// Config files larger than this are refused before parsing (a YAML bomb guard; 10,000
/// tokens take well under 4 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

const MIN_INTERVAL: Duration = Duration::from_secs(1);

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
}

impl Default for Global {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(10),
            max_concurrency: 16,
            default_token_lifetime: Duration::from_secs(365 * 86_400),
            allow_insecure_http: false,
        }
    }
}

/// Where a token's expiry date came from (the `expiry_source` label of `apitoken_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpirySource {
    Config,
    CreatedAt,
    OrgInventory,
    None,
}

impl ExpirySource {
    pub fn as_str(self) -> &'static str {
        match self {
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
    pub email: Option<String>,
    pub secret: SecretSource,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    pub expiry_source: ExpirySource,
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
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings<'a> {
    provider: Provider,
    site: &'a Url,
    email: Option<&'a str>,
    secret: &'a SecretSource,
    expected_account_id: Option<&'a str>,
    probe_interval: Duration,
    probe_timeout: Duration,
}

impl TokenConfig {
    pub fn probe_settings(&self) -> ProbeSettings<'_> {
        ProbeSettings {
            provider: self.provider,
            site: &self.site,
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
}

/// The implicit token that watches an organization's admin API key is named
/// `{org}-admin-key` (see [`Config::implicit_admin_tokens`]).
pub const ADMIN_KEY_TOKEN_SUFFIX: &str = "-admin-key";

impl OrgConfig {
    /// The name of the implicit token that watches this organization's API key.
    pub fn admin_key_token_name(&self) -> String {
        format!("{}{ADMIN_KEY_TOKEN_SUFFIX}", self.name)
    }

    /// The token that probes this organization's API key for validity, unless a configured
    /// `atlassian_admin` token already reads the same secret source (then that one does).
    /// It carries the custom label `org` so it can be joined to the inventory metrics.
    fn implicit_admin_token(&self, global: &Global, tokens: &[TokenConfig]) -> Option<TokenConfig> {
        let watched = tokens
            .iter()
            .any(|t| t.provider == Provider::AtlassianAdmin && t.secret == self.api_key);
        (!watched).then(|| TokenConfig {
            name: self.admin_key_token_name(),
            provider: Provider::AtlassianAdmin,
            site: self.base_url.clone(),
            email: None,
            secret: self.api_key.clone(),
            expires_at: None,
            expiry_source: ExpirySource::None,
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
        let bytes = crate::secret::read_at_most(path, MAX_CONFIG_BYTES)
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
        if let Some((line, column)) = flow_too_deep(text) {
            return Err(vec![format!(
                "invalid YAML: [ ] / {{ }} collections nested deeper than {MAX_FLOW_DEPTH} levels at line {line} column {column} (a config needs at most 3)"
            )]);
        }
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
                .map_err(|e| vec![redact_tokens(&yaml_error(&e))])?
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
    pub fn check_secret_sources(&self) -> Vec<String> {
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
        tokens
            .chain(orgs)
            .filter_map(|(loc, source)| {
                crate::secret::SecretReader::new(source.clone())
                    .read()
                    .err()
                    .map(|e| format!("{loc}: {e}"))
            })
            .collect()
    }
}

/// Deepest nesting of flow collections (`[`, `{`) accepted; the schema needs 3
/// (`tokens: [{labels: {…}}]`). libyaml's scanner re-walks its stack of open flow levels
/// for every token, so parsing costs depth × size: 100,000 nested `[` took 15 s (release)
/// to reject, a 16 MiB file of them hours. Deep input is refused before parsing instead.
const MAX_FLOW_DEPTH: usize = 64;

/// Line and column (1-based) where flow collections first nest deeper than
/// [`MAX_FLOW_DEPTH`]. A linear pre-scan, not a YAML parser: brackets inside quoted
/// scalars and comments do not count; a plain scalar full of unbalanced `[` may (a false
/// alarm no real config raises).
fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let (mut quote, mut escaped, mut comment) = (None, false, false);
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column, comment) = (line + 1, 0, false);
        } else if comment {
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if q == '\'' && c == '\'' && chars.peek() == Some(&'\'') {
                chars.next(); // `''` is an escaped quote inside single quotes
                column += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '#' if prev.is_whitespace() => comment = true,
                // A quote opens a quoted scalar only where a scalar can start (`it's` is
                // a plain scalar).
                '"' | '\'' if prev.is_whitespace() || "[{,:".contains(prev) => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, column));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

#[cfg(test)]
mod flow_depth_tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_where_it_starts() {
        let deep = format!("tokens:\n  - {}", "[".repeat(10_000));
        assert_eq!(flow_too_deep(&deep), Some((2, 5 + MAX_FLOW_DEPTH)));
        let ok = format!(
            "x: {}{}",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(flow_too_deep(&ok), None);
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let many = "[".repeat(100);
        for text in [
            format!("a: \"{many}\"\n"),
            format!("a: '{many}'\n"),
            format!("a: 'it''s {many}'\n"),
            format!("a: \"\\\" {many}\"\n"),
            format!("# {many}\na: 1 # {many}\n"),
        ] {
            assert_eq!(flow_too_deep(&text), None, "{text}");
        }
        // `it's` is plain: the quote does not hide what follows.
        assert!(flow_too_deep(&format!("a: it's {many}\n")).is_some());
    }
}

/// Names the exact field (`tokens[2].expires_at`) with serde_path_to_error, keeps
/// serde_yaml's message and position. serde_yaml prefixes its message with the *parent*
/// path for errors raised inside a field's type; that prefix is replaced by the full path.
fn yaml_error(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let inner = e.inner();
    let msg = inner.to_string();
    if inner.location().is_none() {
        return format!("invalid YAML: {msg}");
    }
    let path = e.path().to_string();
    let msg = match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') => rest.to_string(),
        _ => msg,
    };
    if path == "." || path.is_empty() {
        format!("invalid YAML: {msg}")
    } else if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        // The path already ends at the offending key's parent plus the key itself.
        let parent = path.rsplit_once('.').map_or(path.as_str(), |(p, _)| p);
        let parent = if msg.starts_with("missing field") {
            path.as_str()
        } else {
            parent
        };
        format!("{parent}: {msg}")
    } else {
        format!("{path}: {msg}")
    }
}

// ---------------------------------------------------------------------------------------
// Raw schema (what serde sees)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    global: RawGlobal,
    #[serde(default)]
    tokens: Vec<RawToken>,
    #[serde(default)]
    organizations: Vec<RawOrg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    probe_interval: Option<HumanDuration>,
    probe_timeout: Option<HumanDuration>,
    max_concurrency: Option<usize>,
    default_token_lifetime: Option<HumanDuration>,
    allow_insecure_http: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: Name,
    provider: Provider,
    site: Option<SiteUrl>,
    email: Option<String>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    expires_at: Option<Timestamp>,
    created_at: Option<Timestamp>,
    lifetime: Option<HumanDuration>,
    expected_account_id: Option<String>,
    revoked_at: Option<Timestamp>,
    org_token_id: Option<String>,
    probe_interval: Option<HumanDuration>,
    #[serde(default)]
    labels: BTreeMap<LabelName, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrg {
    name: Name,
    org_id: String,
    api_key_env: Option<String>,
    api_key_file: Option<PathBuf>,
    base_url: Option<SiteUrl>,
    probe_interval: Option<HumanDuration>,
}

/// Label names the exporter sets itself; a custom label may not shadow them.
const RESERVED_LABELS: &[&str] = &[
    "token",
    "provider",
    "site",
    "account_id",
    "expiry_source",
    "job",
    "instance",
];

impl RawConfig {
    fn validate(self) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();
        let defaults = Global::default();
        let g = self.global;
        let global = Global {
            probe_interval: g.probe_interval.map_or(defaults.probe_interval, |d| d.0),
            probe_timeout: g.probe_timeout.map_or(defaults.probe_timeout, |d| d.0),
            max_concurrency: g.max_concurrency.unwrap_or(defaults.max_concurrency),
            default_token_lifetime: g
                .default_token_lifetime
                .map_or(defaults.default_token_lifetime, |d| d.0),
            allow_insecure_http: g.allow_insecure_http.unwrap_or(false),
        };
        if global.probe_interval < MIN_INTERVAL {
            problems.push("global.probe_interval: must be at least 1s".to_string());
        }
        if global.probe_timeout.is_zero() {
            problems.push("global.probe_timeout: must be greater than 0".to_string());
        }
        if global.max_concurrency == 0 {
            problems.push("global.max_concurrency: must be at least 1".to_string());
        }

        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        let mut tokens = Vec::with_capacity(self.tokens.len());
        for (i, raw) in self.tokens.into_iter().enumerate() {
            let loc = format!("tokens[{i}] ({})", raw.name.0);
            if let Some(first) = seen.insert(raw.name.0.clone(), i) {
                problems.push(format!(
                    "{loc}.name: duplicate token name {:?} (first used by tokens[{first}])",
                    raw.name.0
                ));
            }
            match raw.resolve(&global, &loc) {
                Ok(t) => tokens.push(t),
                Err(mut p) => problems.append(&mut p),
            }
        }

        let mut org_names = HashSet::new();
        let mut organizations = Vec::with_capacity(self.organizations.len());
        for (i, raw) in self.organizations.into_iter().enumerate() {
            let loc = format!("organizations[{i}] ({})", raw.name.0);
            if !org_names.insert(raw.name.0.clone()) {
                problems.push(format!(
                    "{loc}.name: duplicate organization name {:?}",
                    raw.name.0
                ));
            }
            match raw.resolve(&global, &loc) {
                Ok(o) => organizations.push(o),
                Err(mut p) => problems.append(&mut p),
            }
        }

        for (i, org) in organizations.iter().enumerate() {
            let Some(implicit) = org.implicit_admin_token(&global, &tokens) else {
                continue;
            };
            if let Some(&j) = seen.get(&implicit.name) {
                problems.push(format!(
                    "organizations[{i}] ({}): its API key is watched by an implicit atlassian_admin token named {:?}, \
                     but tokens[{j}] ({}) already has that name; rename tokens[{j}], or make it an atlassian_admin \
                     token with the organization's api key source so it watches the key itself",
                    org.name, implicit.name, implicit.name
                ));
            }
        }

        if problems.is_empty() {
            Ok(Config {
                global,
                tokens,
                organizations,
            })
        } else {
            Err(problems)
        }
    }
}

impl RawToken {
    fn resolve(self, global: &Global, loc: &str) -> Result<TokenConfig, Vec<String>> {
        let mut problems = Vec::new();
        let site = match (self.site, self.provider.default_site()) {
            (Some(s), _) => Some(s.0),
            (None, Some(default)) => Url::parse(default).ok(),
            (None, None) => {
                problems.push(format!(
                    "{loc}.site: required for provider {}",
                    self.provider.as_str()
                ));
                None
            }
        };
        if let Some(site) = &site {
            check_scheme(site, global, &format!("{loc}.site"), &mut problems);
        }

        if self.provider.uses_basic_auth() {
            match self.email.as_deref().map(str::trim) {
                None | Some("") => problems.push(format!(
                    "{loc}.email: required for provider {} (the basic-auth user)",
                    self.provider.as_str()
                )),
                Some(_) => {}
            }
        } else {
            if self.email.is_some() {
                problems.push(format!(
                    "{loc}.email: not used by provider {} (it authenticates with a Bearer key)",
                    self.provider.as_str()
                ));
            }
            if self.expected_account_id.is_some() {
                problems.push(format!(
                    "{loc}.expected_account_id: not supported by provider {} (its probe returns no account)",
                    self.provider.as_str()
                ));
            }
        }

        let secret = secret_source(
            self.token_env,
            self.token_file,
            ("token_env", "token_file"),
            loc,
            &mut problems,
        );

        let (expires_at, expiry_source) = match (self.expires_at, self.created_at) {
            (Some(_), Some(_)) => {
                problems.push(format!(
                    "{loc}: set either expires_at or created_at (+ lifetime), not both"
                ));
                (None, ExpirySource::None)
            }
            (Some(e), None) => {
                if self.lifetime.is_some() {
                    problems.push(format!(
                        "{loc}.lifetime: only meaningful with created_at, not with expires_at"
                    ));
                }
                (Some(e.0), ExpirySource::Config)
            }
            (None, Some(c)) => {
                let lifetime = self.lifetime.map_or(global.default_token_lifetime, |d| d.0);
                let secs = i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX);
                (Some(c.0.saturating_add(secs)), ExpirySource::CreatedAt)
            }
            (None, None) => {
                if self.lifetime.is_some() {
                    problems.push(format!("{loc}.lifetime: set created_at to use lifetime"));
                }
                (None, ExpirySource::None)
            }
        };

        let probe_interval = self.probe_interval.map_or(global.probe_interval, |d| d.0);
        if probe_interval < MIN_INTERVAL {
            problems.push(format!("{loc}.probe_interval: must be at least 1s"));
        }

        let mut labels = BTreeMap::new();
        for (k, v) in self.labels {
            if RESERVED_LABELS.contains(&k.0.as_str()) {
                problems.push(format!(
                    "{loc}.labels.{}: reserved label name (the exporter sets it)",
                    k.0
                ));
            }
            labels.insert(k.0, v);
        }

        let non_empty = |v: Option<String>, field: &str, problems: &mut Vec<String>| {
            v.and_then(|s| {
                let t = s.trim().to_string();
                if t.is_empty() {
                    problems.push(format!("{loc}.{field}: must not be empty"));
                    None
                } else {
                    Some(t)
                }
            })
        };
        let expected_account_id = non_empty(
            self.expected_account_id,
            "expected_account_id",
            &mut problems,
        );
        let org_token_id = non_empty(self.org_token_id, "org_token_id", &mut problems);

        match (site, secret) {
            (Some(site), Some(secret)) if problems.is_empty() => Ok(TokenConfig {
                name: self.name.0,
                provider: self.provider,
                site,
                email: self.email.map(|e| e.trim().to_string()),
                secret,
                expires_at,
                expiry_source,
                expected_account_id,
                revoked_at: self.revoked_at.map(|t| t.0),
                org_token_id,
                probe_interval,
                probe_timeout: global.probe_timeout,
                labels,
            }),
            _ => Err(problems),
        }
    }
}

impl RawOrg {
    fn resolve(self, global: &Global, loc: &str) -> Result<OrgConfig, Vec<String>> {
        let mut problems = Vec::new();
        let base_url = match self.base_url {
            Some(u) => Some(u.0),
            None => Url::parse("https://api.atlassian.com").ok(),
        };
        if let Some(u) = &base_url {
            check_scheme(u, global, &format!("{loc}.base_url"), &mut problems);
        }
        if self.org_id.trim().is_empty() {
            problems.push(format!("{loc}.org_id: must not be empty"));
        }
        let api_key = secret_source(
            self.api_key_env,
            self.api_key_file,
            ("api_key_env", "api_key_file"),
            loc,
            &mut problems,
        );
        let probe_interval = self
            .probe_interval
            .map_or(Duration::from_secs(3600), |d| d.0);
        if probe_interval < MIN_INTERVAL {
            problems.push(format!("{loc}.probe_interval: must be at least 1s"));
        }
        match (base_url, api_key) {
            (Some(base_url), Some(api_key)) if problems.is_empty() => Ok(OrgConfig {
                name: self.name.0,
                org_id: self.org_id.trim().to_string(),
                api_key,
                base_url,
                probe_interval,
            }),
            _ => Err(problems),
        }
    }
}

fn check_scheme(url: &Url, global: &Global, loc: &str, problems: &mut Vec<String>) {
    if url.scheme() == "http" && !global.allow_insecure_http {
        problems.push(format!(
            "{loc}: http:// would send credentials in clear text; use https:// or set global.allow_insecure_http: true"
        ));
    }
}

fn secret_source(
    env: Option<String>,
    file: Option<PathBuf>,
    (env_key, file_key): (&str, &str),
    loc: &str,
    problems: &mut Vec<String>,
) -> Option<SecretSource> {
    match (env, file) {
        (Some(_), Some(_)) => {
            problems.push(format!(
                "{loc}: set exactly one of {env_key} / {file_key}, not both"
            ));
            None
        }
        (None, None) => {
            problems.push(format!(
                "{loc}: one of {env_key} / {file_key} is required (inline secrets are not supported)"
            ));
            None
        }
        // A token pasted here instead of a variable name or path must not be echoed back
        // (nor later shown as "variable … is not set"): name the field, never the value.
        (Some(name), None) if looks_like_token(&name) => {
            problems.push(format!("{loc}.{env_key}: {PASTED_TOKEN}"));
            None
        }
        (None, Some(path)) if looks_like_token(&path.to_string_lossy()) => {
            problems.push(format!("{loc}.{file_key}: {PASTED_TOKEN}"));
            None
        }
        (Some(name), None) => {
            if is_env_name(&name) {
                Some(SecretSource::Env(name))
            } else {
                problems.push(format!(
                    "{loc}.{env_key}: not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                ));
                None
            }
        }
        (None, Some(path)) => {
            if path.as_os_str().is_empty() {
                problems.push(format!("{loc}.{file_key}: must not be empty"));
                None
            } else {
                Some(SecretSource::File(path))
            }
        }
    }
}

const PASTED_TOKEN: &str = "this looks like a token itself; put it in an environment variable or file and name that here (inline secrets are not supported)";

/// Prefixes of Atlassian credentials: API tokens, admin/access keys, Bitbucket app
/// passwords. Used to keep a secret written into the config out of every error message.
const TOKEN_PREFIXES: [&str; 3] = ["ATATT", "ATCTT", "ATBB"];

fn looks_like_token(s: &str) -> bool {
    let s = s.trim();
    s.len() >= 20 && TOKEN_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// Replaces every token-looking word in an error message by `***` (serde quotes the values
/// it cannot use, e.g. `invalid type: string "ATATT…"`).
fn redact_tokens(msg: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || "-_=+/.".contains(c);
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(start) = rest.find(|c: char| is_word(c)) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !is_word(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        out.push_str(if looks_like_token(word) { "***" } else { word });
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    out
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

// ---------------------------------------------------------------------------------------
// Field types that validate while deserializing, so serde reports the exact line.
// ---------------------------------------------------------------------------------------

/// A humantime duration: `30s`, `5m`, `1h`, `7d`, `1h30m`.
#[derive(Debug, Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a humantime duration with an error message that says what is expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 30s, 5m, 1h, 7d"))
}

/// An instant given as RFC 3339 or `YYYY-MM-DD` (UTC midnight), stored as Unix seconds.
#[derive(Debug, Clone, Copy)]
struct Timestamp(i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_timestamp(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses RFC 3339 (`2026-12-31T10:00:00Z`) or a plain date (`2026-12-31`, UTC midnight).
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = date.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc().timestamp());
        }
    }
    Err(format!(
        "invalid timestamp {s:?}; expected RFC 3339 (2026-12-31T23:59:59Z) or YYYY-MM-DD"
    ))
}

/// A token or organization name: `[A-Za-z0-9_.-]+`, at most 128 characters.
#[derive(Debug, Clone)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if ok {
            Ok(Name(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid name {s:?}: use 1-128 characters of [A-Za-z0-9_.-]"
            )))
        }
    }
}

/// A Prometheus label name for custom labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct LabelName(String);

impl<'de> Deserialize<'de> for LabelName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let mut chars = s.chars();
        let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !s.starts_with("__");
        if ok {
            Ok(LabelName(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "invalid label name {s:?}: must match [a-zA-Z_][a-zA-Z0-9_]* and not start with __"
            )))
        }
    }
}

/// A base URL: http(s), with a host, no credentials, query or fragment. Trailing `/` removed
/// so probe paths can be appended.
#[derive(Debug, Clone)]
struct SiteUrl(Url);

impl<'de> Deserialize<'de> for SiteUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_site(&s)
            .map(SiteUrl)
            .map_err(serde::de::Error::custom)
    }
}

pub fn parse_site(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s.trim()).map_err(|e| format!("invalid URL {s:?}: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("invalid URL {s:?}: scheme must be https (or http)"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {s:?}: no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it contains credentials.
        return Err(
            "URL must not contain credentials (user:password@); use email and token_env/token_file"
                .to_string(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "invalid URL {s:?}: no query string or fragment allowed"
        ));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

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
  - {name: d, provider: jira, site: "https://x", email: e, token_env: X, expires_at: 2026-01-01, created_at: 2025-01-01}
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
            "tokens[4] (d): set either expires_at or created_at",
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
        let p = problems("tokens:\n  - {name: a, provider: gitlab}\n");
        assert!(p[0].contains("unknown variant `gitlab`"), "{p:?}");
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
        assert_eq!(t.provider, Provider::AtlassianAdmin);
        assert_eq!(t.site.as_str(), "https://admin.example/");
        assert_eq!(t.secret, SecretSource::File("/run/key-b".into()));
        assert_eq!(t.probe_interval, c.global.probe_interval);
        assert_eq!(t.labels.get("org").map(String::as_str), Some("beta"));
        assert_eq!(t.expiry_source, ExpirySource::None);
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
    fn timestamps_accept_both_forms() {
        assert_eq!(parse_timestamp("1970-01-02").unwrap(), 86_400);
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert!(parse_timestamp("tomorrow").is_err());
    }
}
