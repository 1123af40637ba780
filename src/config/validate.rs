//! The second pass: rules that span fields (duplicates, `https://`, exactly-one-of, what a
//! provider accepts), defaults resolved, and *every* problem reported at once, each
//! prefixed with its location (`tokens[2] (name).field`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::guards::{looks_like_token, PASTED_TOKEN};
use super::raw::{RawConfig, RawOAuth2, RawOrg, RawTls, RawToken};
use super::{Config, ExpirySource, Global, OrgConfig, TokenConfig};
use crate::providers::oauth::{OAuth2Settings, DEFAULT_TOKEN_URL};
use crate::providers::{AuthKind, Provider};
use crate::secret::SecretSource;
use crate::upstream::ClientOptions;

const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// Upper bounds (README "Configuration"): beyond them a value is a typo, and a huge one
/// would overflow the scheduler's clock arithmetic or its semaphore.
pub(super) const MAX_INTERVAL: Duration = Duration::from_secs(30 * 86_400);
pub(super) const MAX_TIMEOUT: Duration = Duration::from_secs(600);
pub(super) const MAX_CONCURRENCY: usize = 4096;

/// Largest CA bundle read from `global.tls.ca_file`.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// `global.tls` and `global.proxy_url`, checked now (the CA file is read and parsed) so a
/// broken one fails `--config.check` and a reload instead of every probe.
fn client_options(
    tls: Option<RawTls>,
    proxy_url: Option<String>,
    problems: &mut Vec<String>,
) -> ClientOptions {
    let tls = tls.unwrap_or_default();
    let ca_pem = tls.ca_file.and_then(|path| {
        let read = crate::util::read_at_most(&path, MAX_CA_FILE_BYTES)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|pem| {
                if pem.len() as u64 > MAX_CA_FILE_BYTES {
                    return Err(format!("{} is larger than 1 MiB", path.display()));
                }
                crate::upstream::parse_ca_bundle(&pem)
                    .map(|_| pem)
                    .map_err(|e| format!("{}: {e}", path.display()))
            });
        read.map_err(|e| problems.push(format!("global.tls.ca_file: {e}")))
            .ok()
    });
    let proxy_url = proxy_url.and_then(|raw| {
        let parsed = Url::parse(raw.trim()).map_err(|e| format!("invalid URL: {e}"));
        let checked = parsed.and_then(|u| {
            if !matches!(u.scheme(), "http" | "https") {
                Err("the scheme must be http or https".to_string())
            } else if !u.username().is_empty() || u.password().is_some() {
                // Not echoed: it holds credentials.
                Err("must not contain credentials (user:password@); inline secrets are not supported".to_string())
            } else if u.host_str().is_none_or(str::is_empty) {
                Err("no host".to_string())
            } else {
                Ok(u)
            }
        });
        checked
            .map_err(|e| problems.push(format!("global.proxy_url: {e}")))
            .ok()
    });
    ClientOptions {
        ca_pem,
        insecure_skip_verify: tls.insecure_skip_verify.unwrap_or(false),
        proxy_url,
    }
}

/// A probe or inventory interval within [1 s, 30 d].
fn check_interval(d: Duration, field: &str, problems: &mut Vec<String>) {
    if d < MIN_INTERVAL {
        problems.push(format!("{field}: must be at least 1s"));
    } else if d > MAX_INTERVAL {
        problems.push(format!(
            "{field}: must be at most 30d (got {})",
            humantime::format_duration(d)
        ));
    }
}

/// Label names the exporter sets itself; a custom label may not shadow them.
const RESERVED_LABELS: &[&str] = &[
    "token",
    "provider",
    "site",
    "account_id",
    "expiry_source",
    "auth",
    "credential_type",
    "scope",
    "job",
    "instance",
];

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, Vec<String>> {
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
            client: client_options(g.tls, g.proxy_url, &mut problems),
        };
        check_interval(
            global.probe_interval,
            "global.probe_interval",
            &mut problems,
        );
        if global.probe_timeout.is_zero() {
            problems.push("global.probe_timeout: must be greater than 0".to_string());
        } else if global.probe_timeout > MAX_TIMEOUT {
            problems.push(format!(
                "global.probe_timeout: must be at most 10m (got {})",
                humantime::format_duration(global.probe_timeout)
            ));
        }
        if global.max_concurrency == 0 {
            problems.push("global.max_concurrency: must be at least 1".to_string());
        } else if global.max_concurrency > MAX_CONCURRENCY {
            problems.push(format!(
                "global.max_concurrency: must be at most {MAX_CONCURRENCY} (got {})",
                global.max_concurrency
            ));
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
                    self.provider
                ));
                None
            }
        };
        if let Some(site) = &site {
            check_scheme(site, global, &format!("{loc}.site"), &mut problems);
        }

        let spec = self.provider.spec();
        let auth = match self.auth {
            None => self.provider.default_auth(),
            Some(a) if spec.auth.contains(&a) => a,
            Some(a) => {
                let accepted: Vec<&str> = spec.auth.iter().map(|k| k.as_str()).collect();
                problems.push(format!(
                    "{loc}.auth: provider {} does not accept auth {} (it accepts: {})",
                    spec.name,
                    a.as_str(),
                    accepted.join(", ")
                ));
                self.provider.default_auth()
            }
        };
        let oauth2 = oauth2_settings(
            self.provider,
            self.oauth2.as_ref(),
            auth,
            site.as_ref(),
            global,
            loc,
            &mut problems,
        );
        if auth == AuthKind::Basic {
            match self.email.as_deref().map(str::trim) {
                None | Some("") => problems.push(format!(
                    "{loc}.email: required for provider {} (the basic-auth user)",
                    spec.name
                )),
                Some(_) => {}
            }
        } else if self.email.is_some() && !spec.identity.email {
            let how = match auth {
                AuthKind::Header => "it sends the token alone in its own header",
                AuthKind::OAuth2 => "it authenticates with OAuth client credentials",
                AuthKind::Basic | AuthKind::Bearer => "it authenticates with a Bearer key",
            };
            // Where the probe learns an account id, say how to check the identity instead.
            let instead = if spec.identity.account_id {
                "; to check whose token it is, set expected_account_id"
            } else {
                ""
            };
            problems.push(format!(
                "{loc}.email: not used by provider {} ({how}){instead}",
                spec.name
            ));
        }
        if self.expected_account_id.is_some() && !spec.identity.account_id {
            problems.push(format!(
                "{loc}.expected_account_id: not supported by provider {} (its probe returns no account)",
                spec.name
            ));
        }

        let secret = secret_source(
            self.token_env,
            self.token_file,
            ("token_env", "token_file"),
            loc,
            &mut problems,
        );

        let created_at = self.created_at.map(|c| c.0);
        let (expires_at, expiry_source) = match (self.expires_at, self.created_at) {
            // Both: the expiry is expires_at, the lifetime their difference.
            (Some(e), Some(c)) => {
                if self.lifetime.is_some() {
                    problems.push(format!(
                        "{loc}.lifetime: not used when expires_at and created_at are both set (the lifetime is their difference)"
                    ));
                }
                if e.0 < c.0 {
                    problems.push(format!("{loc}.expires_at: is before created_at"));
                }
                (Some(e.0), ExpirySource::Config)
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
        check_interval(
            probe_interval,
            &format!("{loc}.probe_interval"),
            &mut problems,
        );

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
                auth,
                oauth2,
                email: self.email.map(|e| e.trim().to_string()),
                secret,
                expires_at,
                expiry_source,
                created_at,
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

/// The `oauth2` block: required with `auth: oauth2` (and then the site must be the
/// provider's API gateway form), refused otherwise.
#[allow(clippy::too_many_arguments)]
fn oauth2_settings(
    provider: Provider,
    raw: Option<&RawOAuth2>,
    auth: AuthKind,
    site: Option<&Url>,
    global: &Global,
    loc: &str,
    problems: &mut Vec<String>,
) -> Option<OAuth2Settings> {
    let spec = provider.spec();
    let Some(raw) = raw else {
        if auth == AuthKind::OAuth2 {
            problems.push(format!(
                    "{loc}.oauth2: required with auth: oauth2 (client_id, and optionally token_url and scopes)"
                ));
        }
        return None;
    };
    if auth != AuthKind::OAuth2 {
        problems.push(if spec.auth.contains(&AuthKind::OAuth2) {
            format!("{loc}.oauth2: only used with auth: oauth2")
        } else {
            format!(
                "{loc}.oauth2: provider {} cannot use OAuth client credentials",
                spec.name
            )
        });
        return None;
    }
    if let (Some(site), Some(gateway)) = (site, spec.oauth_site_path) {
        let cloud_id = site.path().strip_prefix(gateway).unwrap_or("");
        if cloud_id.is_empty() || cloud_id.contains('/') {
            problems.push(format!(
                    "{loc}.site: auth: oauth2 works only through the API gateway, https://api.atlassian.com{gateway}{{cloudId}} (this site's path is {:?})",
                    site.path()
                ));
        }
    }
    let client_id = raw.client_id.trim().to_string();
    if client_id.is_empty() {
        problems.push(format!("{loc}.oauth2.client_id: must not be empty"));
    }
    let token_url = match &raw.token_url {
        Some(u) => u.0.clone(),
        None => Url::parse(DEFAULT_TOKEN_URL).ok()?,
    };
    check_scheme(
        &token_url,
        global,
        &format!("{loc}.oauth2.token_url"),
        problems,
    );
    let scopes: Vec<String> = raw
        .scopes
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(OAuth2Settings {
        client_id,
        token_url,
        scopes,
    })
}

impl RawOrg {
    fn resolve(self, global: &Global, loc: &str) -> Result<OrgConfig, Vec<String>> {
        use crate::providers::atlassian::inventory::{MAX_PAGES, MAX_PAGES_LIMIT};
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
        check_interval(
            probe_interval,
            &format!("{loc}.probe_interval"),
            &mut problems,
        );
        let max_pages = self.max_pages.unwrap_or(MAX_PAGES as u64);
        if max_pages < 1 {
            problems.push(format!("{loc}.max_pages: must be at least 1"));
        } else if max_pages > MAX_PAGES_LIMIT as u64 {
            problems.push(format!(
                "{loc}.max_pages: must be at most {MAX_PAGES_LIMIT} (pages of 100 entries per list)"
            ));
        }
        match (base_url, api_key) {
            (Some(base_url), Some(api_key)) if problems.is_empty() => Ok(OrgConfig {
                name: self.name.0,
                org_id: self.org_id.trim().to_string(),
                api_key,
                base_url,
                probe_interval,
                per_token_series: self.per_token_series.unwrap_or(true),
                max_pages: usize::try_from(max_pages).unwrap_or(MAX_PAGES_LIMIT),
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

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
