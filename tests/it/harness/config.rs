//! A small typed builder for the exporter's YAML config, so tests say what they configure
//! instead of formatting YAML by hand:
//!
//! ```text
//! ConfigBuilder::new()
//!     .global("probe_interval", "1s")
//!     .token(TokenSpec::jira("t").site(&sim.base_url()).email(EMAIL).token_env("S"))
//!     .yaml()
//! ```
//!
//! Values are quoted YAML strings; [`TokenSpec::raw`] and [`OrgSpec::raw`] write one as
//! is (a number, a bool, or a value the config check must refuse). The tests of configs
//! that are not even well-formed write their YAML as is.

use std::path::Path;

/// A whole config file. `allow_insecure_http` is on: every upstream in the suite is a
/// plain-HTTP server on 127.0.0.1.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    global: Vec<(String, String)>,
    tokens: Vec<TokenSpec>,
    orgs: Vec<OrgSpec>,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfigBuilder {
    pub fn new() -> Self {
        ConfigBuilder {
            global: vec![("allow_insecure_http".into(), "true".into())],
            tokens: Vec::new(),
            orgs: Vec::new(),
        }
    }

    /// A `global:` setting, written verbatim (`"1s"`, `16`, `true`).
    pub fn global(mut self, key: &str, value: impl ToString) -> Self {
        self.global.push((key.into(), value.to_string()));
        self
    }

    pub fn token(mut self, token: TokenSpec) -> Self {
        self.tokens.push(token);
        self
    }

    pub fn tokens(mut self, tokens: impl IntoIterator<Item = TokenSpec>) -> Self {
        self.tokens.extend(tokens);
        self
    }

    pub fn org(mut self, org: OrgSpec) -> Self {
        self.orgs.push(org);
        self
    }

    pub fn yaml(&self) -> String {
        let mut out = String::from("global:\n");
        for (k, v) in &self.global {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        if self.tokens.is_empty() {
            out.push_str("tokens: []\n");
        } else {
            out.push_str("tokens:\n");
            for t in &self.tokens {
                t.0.write(&mut out);
            }
        }
        if !self.orgs.is_empty() {
            out.push_str("organizations:\n");
            for o in &self.orgs {
                o.0.write(&mut out);
            }
        }
        out
    }
}

/// One list entry: `key: value` fields in order (each value as written), then an
/// optional `labels:` map.
#[derive(Debug, Clone, Default)]
struct Entry {
    fields: Vec<(&'static str, String)>,
    labels: Vec<(String, String)>,
}

impl Entry {
    /// A quoted string field.
    fn with(self, key: &'static str, value: impl Into<String>) -> Self {
        self.raw(key, quoted(&value.into()))
    }

    /// A field written verbatim.
    fn raw(mut self, key: &'static str, value: impl ToString) -> Self {
        self.fields.push((key, value.to_string()));
        self
    }

    fn write(&self, out: &mut String) {
        for (i, (k, v)) in self.fields.iter().enumerate() {
            let lead = if i == 0 { "  - " } else { "    " };
            out.push_str(&format!("{lead}{k}: {v}\n"));
        }
        if !self.labels.is_empty() {
            out.push_str("    labels:\n");
            for (k, v) in &self.labels {
                out.push_str(&format!("      {k}: {}\n", quoted(v)));
            }
        }
    }
}

/// A YAML double-quoted scalar.
fn quoted(v: &str) -> String {
    format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
}

/// One entry of `tokens:`.
#[derive(Debug, Clone)]
pub struct TokenSpec(Entry);

impl TokenSpec {
    pub fn new(provider: &str, name: &str) -> Self {
        TokenSpec(
            Entry::default()
                .with("name", name)
                .with("provider", provider),
        )
    }

    pub fn jira(name: &str) -> Self {
        Self::new("jira", name)
    }

    pub fn confluence(name: &str) -> Self {
        Self::new("confluence", name)
    }

    pub fn bitbucket(name: &str) -> Self {
        Self::new("bitbucket", name)
    }

    /// Provider `atlassian_admin` (an organization admin API key; no email).
    pub fn admin(name: &str) -> Self {
        Self::new("atlassian_admin", name)
    }

    /// Any field, as a quoted string (`auth`, `created_at`, `revoked_at`, …).
    pub fn set(self, key: &'static str, value: impl Into<String>) -> Self {
        TokenSpec(self.0.with(key, value))
    }

    /// Any field, written verbatim.
    pub fn raw(self, key: &'static str, value: impl ToString) -> Self {
        TokenSpec(self.0.raw(key, value))
    }

    pub fn site(self, url: &str) -> Self {
        self.set("site", url)
    }

    pub fn email(self, email: &str) -> Self {
        self.set("email", email)
    }

    pub fn token_env(self, var: &str) -> Self {
        self.set("token_env", var)
    }

    pub fn token_file(self, path: &Path) -> Self {
        self.set("token_file", path.display().to_string())
    }

    pub fn expires_at(self, date: &str) -> Self {
        self.set("expires_at", date)
    }

    pub fn expected_account_id(self, account: &str) -> Self {
        self.set("expected_account_id", account)
    }

    pub fn org_token_id(self, id: &str) -> Self {
        self.set("org_token_id", id)
    }

    pub fn probe_interval(self, interval: &str) -> Self {
        self.set("probe_interval", interval)
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0.labels.push((key.into(), value.into()));
        self
    }
}

/// One entry of `organizations:`.
#[derive(Debug, Clone)]
pub struct OrgSpec(Entry);

impl OrgSpec {
    pub fn new(name: &str, org_id: &str) -> Self {
        OrgSpec(Entry::default().with("name", name).with("org_id", org_id))
    }

    fn set(self, key: &'static str, value: impl Into<String>) -> Self {
        OrgSpec(self.0.with(key, value))
    }

    /// Any field, written verbatim (`max_pages: 2`, `per_token_series: false`).
    pub fn raw(self, key: &'static str, value: impl ToString) -> Self {
        OrgSpec(self.0.raw(key, value))
    }

    pub fn base_url(self, url: &str) -> Self {
        self.set("base_url", url)
    }

    pub fn api_key_env(self, var: &str) -> Self {
        self.set("api_key_env", var)
    }

    pub fn probe_interval(self, interval: &str) -> Self {
        self.set("probe_interval", interval)
    }
}
