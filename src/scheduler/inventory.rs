//! One organization's inventory loop: lists the organization on its interval (after a
//! jittered first run), waits as long as the Admin API asks after a failure, and hands
//! every result to the state, which publishes only complete listings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::OrgConfig;
use crate::providers::atlassian::inventory::{fetch_inventory, InventoryError, Limits, OrgTarget};
use crate::secret::SecretReader;
use crate::state::{InventoryTransition, Store};
use crate::upstream::HttpClient;

/// Everything one organization's loop needs.
pub struct InventoryTask {
    pub org: OrgConfig,
    pub limits: Limits,
    pub generation: u64,
    pub store: Arc<Store>,
    pub client: HttpClient,
    pub semaphore: Arc<Semaphore>,
}

/// Lists the organization every `probe_interval` (after `first`), forever; the scheduler
/// aborts the task on reload or shutdown.
pub async fn run(task: InventoryTask, first: Duration) {
    let secret = SecretReader::new(task.org.api_key.clone());
    tokio::time::sleep(first).await;
    loop {
        let started = Instant::now();
        let result = match secret.read() {
            Err(e) => Err(InventoryError::from(e)),
            Ok(key) => {
                let org = OrgTarget {
                    name: &task.org.name,
                    org_id: &task.org.org_id,
                    base_url: &task.org.base_url,
                };
                fetch_inventory(&task.client, org, &key, task.limits, Some(&task.semaphore)).await
            }
        };
        let interval = task.org.probe_interval;
        let next = match &result {
            Ok(_) => interval,
            Err(e) => e.retry_after().map_or(interval, |ra| ra.max(interval)),
        };
        let summary = result
            .as_ref()
            .ok()
            .map(|i| (i.tokens.len(), i.api_keys.len(), i.pages));
        let error = result.as_ref().err().map(ToString::to_string);
        if let Some(t) = task
            .store
            .record_inventory(&task.org.name, task.generation, result)
        {
            log_run(&task.org, &t, summary, error.as_deref(), started.elapsed());
        }
        tokio::time::sleep(next).await;
    }
}

fn log_run(
    org: &OrgConfig,
    t: &InventoryTransition,
    summary: Option<(usize, usize, usize)>,
    error: Option<&str>,
    took: Duration,
) {
    let name = org.name.as_str();
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match (summary, error) {
        (Some((tokens, api_keys, pages)), _) => {
            if t.before == Some(true) {
                tracing::debug!(
                    org = name,
                    tokens,
                    api_keys,
                    pages,
                    took_ms,
                    "organization inventory refreshed"
                );
            } else {
                tracing::info!(
                    org = name,
                    tokens,
                    api_keys,
                    pages,
                    took_ms,
                    "organization inventory complete"
                );
            }
        }
        (None, error) => {
            let error = error.unwrap_or("");
            if t.before == Some(false) {
                tracing::debug!(org = name, error, "organization inventory still failing");
            } else {
                tracing::warn!(
                    org = name,
                    error,
                    "organization inventory failed; keeping the last complete inventory"
                );
            }
        }
    }
}
