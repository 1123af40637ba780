//! apitoken-exporter: watches API credentials (Atlassian Jira, Confluence and Bitbucket
//! API tokens, organization admin API keys) and exposes their validity and expiry to
//! Prometheus.
//!
//! Data flows one way (docs/architecture.md): [`config`] -> [`scheduler`] -> a provider
//! of [`providers`] probes through [`upstream`] -> [`probe::Outcome`] -> [`state`] ->
//! [`metrics`] / status page ([`server`]). Organizations: [`scheduler`] -> the inventory
//! client in [`providers::atlassian::inventory`] -> [`state`] -> [`metrics`].
//! [`probe`], [`secret`] and [`util`] sit at the bottom and depend on nothing above them.

pub mod app;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod logging;
pub mod metrics;
pub mod probe;
pub mod providers;
pub mod scheduler;
pub mod secret;
pub mod serve;
pub mod server;
pub mod state;
pub mod upstream;
pub mod util;
pub mod webconfig;

#[cfg(test)]
mod dependency_rule;
