//! The raw schema: exactly what serde sees in the YAML (`deny_unknown_fields`
//! everywhere). Cross-field rules and defaults are applied in `validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::fields::{HumanDuration, LabelName, Name, SiteUrl, Timestamp};
use crate::providers::{AuthKind, Provider};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) global: RawGlobal,
    #[serde(default)]
    pub(super) tokens: Vec<RawToken>,
    #[serde(default)]
    pub(super) organizations: Vec<RawOrg>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGlobal {
    pub(super) probe_interval: Option<HumanDuration>,
    pub(super) probe_timeout: Option<HumanDuration>,
    pub(super) max_concurrency: Option<usize>,
    pub(super) default_token_lifetime: Option<HumanDuration>,
    pub(super) allow_insecure_http: Option<bool>,
    pub(super) tls: Option<RawTls>,
    pub(super) proxy_url: Option<String>,
}

/// `global.tls`: how vendors' certificates are verified.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    pub(super) name: Name,
    pub(super) provider: Provider,
    pub(super) site: Option<SiteUrl>,
    pub(super) auth: Option<AuthKind>,
    pub(super) oauth2: Option<RawOAuth2>,
    pub(super) email: Option<String>,
    pub(super) token_env: Option<String>,
    pub(super) token_file: Option<PathBuf>,
    pub(super) expires_at: Option<Timestamp>,
    pub(super) created_at: Option<Timestamp>,
    pub(super) lifetime: Option<HumanDuration>,
    pub(super) expected_account_id: Option<String>,
    pub(super) revoked_at: Option<Timestamp>,
    pub(super) org_token_id: Option<String>,
    pub(super) probe_interval: Option<HumanDuration>,
    #[serde(default)]
    pub(super) labels: BTreeMap<LabelName, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOrg {
    pub(super) name: Name,
    pub(super) org_id: String,
    pub(super) api_key_env: Option<String>,
    pub(super) api_key_file: Option<PathBuf>,
    pub(super) base_url: Option<SiteUrl>,
    pub(super) probe_interval: Option<HumanDuration>,
    pub(super) per_token_series: Option<bool>,
    pub(super) max_pages: Option<u64>,
}

/// `oauth2:` of a token with `auth: oauth2` (the client secret comes from the token's
/// `token_env`/`token_file`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOAuth2 {
    pub(super) client_id: String,
    pub(super) token_url: Option<SiteUrl>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
}
