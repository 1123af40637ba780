//! Config field types that validate while deserializing, so serde reports the exact
//! field, line and column of a bad value.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use url::Url;

use crate::util::{parse_duration, parse_timestamp};

/// A humantime duration: `30s`, `5m`, `1h`, `7d`, `1h30m`.
#[derive(Debug, Clone, Copy)]
pub(super) struct HumanDuration(pub(super) Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// An instant given as RFC 3339 or `YYYY-MM-DD` (UTC midnight), stored as Unix seconds.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timestamp(pub(super) i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_timestamp(&s)
            .map(Timestamp)
            .map_err(serde::de::Error::custom)
    }
}

/// A token or organization name: `[A-Za-z0-9_.-]+`, at most 128 characters.
#[derive(Debug, Clone)]
pub(super) struct Name(pub(super) String);

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
pub(super) struct LabelName(pub(super) String);

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
pub(super) struct SiteUrl(pub(super) Url);

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
