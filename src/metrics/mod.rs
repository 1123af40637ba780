//! Renders the [`Store`](crate::state::Store) as Prometheus text (format 0.0.4). No I/O:
//! scrapes read cached state and never trigger probes.
//!
//! [`families`] is the metric catalogue, [`exposition`] the text format and its gzip
//! buffer, [`render`] turns the state into samples, [`cache`] keeps the rendered body.

mod cache;
mod exposition;
mod families;
mod render;

pub use cache::{MetricsCache, RenderError, RenderJob, Rendered, MAX_STALENESS, RENDER_QUEUE};
pub use exposition::{escape_label, CONTENT_TYPE};
pub use render::{render, render_gzip};

#[cfg(test)]
mod test_support {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::config::{ExpirySource, TokenConfig};
    use crate::probe::{Facts, Outcome};
    use crate::providers::atlassian::jira;
    use crate::providers::Probed;
    use crate::state::{Store, TokenMeta};

    pub fn store_with(name: &str, labels: &[(&str, &str)], expires_at: Option<i64>) -> Store {
        let mut c = TokenConfig::for_tests(name, jira::PROVIDER);
        c.site = url::Url::parse("https://acme.atlassian.net").expect("a URL");
        c.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>();
        (c.expires_at, c.expiry_source) = (expires_at, ExpirySource::Config);
        c.probe_interval = Duration::from_secs(300);
        let store = Store::new();
        store.set_tokens(vec![TokenMeta::new(Arc::new(c))], &|_| false);
        store
    }

    pub fn probed(outcome: Outcome) -> Probed {
        Probed {
            outcome,
            facts: Facts::default(),
        }
    }
}
