//! apitoken-exporter: watches Atlassian credentials (Jira, Confluence, Bitbucket API
//! tokens, org admin API keys) and exposes their validity and expiry to Prometheus.
//!
//! Data flows one way: [`config`] -> [`scheduler`] -> [`provider`] probe -> `Outcome` ->
//! [`state`] -> [`metrics`] / status page ([`server`]); organizations: [`scheduler`] ->
//! [`inventory`] listing -> [`state`] -> [`metrics`].

pub mod app;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod http;
pub mod inventory;
pub mod logging;
pub mod metrics;
pub mod provider;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod server;
pub mod state;
pub mod webconfig;
