//! One organization's inventory loop: lists the organization on its interval (after a
//! jittered first run), waits as long as the Admin API asks after a failure, and hands
//! every result to the state, which publishes each list only when it is complete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::OrgConfig;
use crate::providers::atlassian::inventory::{
    fetch_inventory, InventoryError, InventoryRun, Limits, List, OrgTarget,
};
use crate::secret::SecretReader;
use crate::state::{ListTransition, Store};
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
        let run = match secret.read_within(task.limits.page_timeout).await {
            Err(e) => InventoryRun::failed(InventoryError::from(e)),
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
        let next = run.retry_after().map_or(interval, |ra| ra.max(interval));
        let summaries = [
            Summary::of(List::ApiTokens, &run.api_tokens, run.token_pages),
            Summary::of(List::ApiKeys, &run.api_keys, run.key_pages),
        ];
        if let Some(t) = task
            .store
            .record_inventory(&task.org.name, task.generation, run)
        {
            let took = started.elapsed();
            for (summary, t) in summaries.iter().zip([t.api_tokens, t.api_keys]) {
                log_list(&task.org, summary, &t, took);
            }
        }
        tokio::time::sleep(next).await;
    }
}

/// What one list's run says, for its log line.
struct Summary {
    list: List,
    /// Ok(entries) or the error and the scope it seems to lack.
    result: Result<usize, (String, Option<&'static str>)>,
    pages: usize,
}

impl Summary {
    fn of<T>(list: List, r: &Result<BTreeMap<String, T>, InventoryError>, pages: usize) -> Self {
        Summary {
            list,
            result: r
                .as_ref()
                .map(BTreeMap::len)
                .map_err(|e| (e.to_string(), e.missing_scope())),
            pages,
        }
    }
}

/// One line per list and state change: info when a list completes for the first time
/// (or again), warn when it starts failing (naming the missing scope on a 403), debug
/// otherwise.
fn log_list(org: &OrgConfig, s: &Summary, t: &ListTransition, took: Duration) {
    let name = org.name.as_str();
    let list = s.list.label();
    let pages = s.pages;
    let took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
    match &s.result {
        Ok(entries) if t.before == Some(true) => tracing::debug!(
            org = name,
            list,
            entries,
            pages,
            took_ms,
            "organization inventory list refreshed"
        ),
        Ok(entries) => tracing::info!(
            org = name,
            list,
            entries,
            pages,
            took_ms,
            "organization inventory list complete"
        ),
        Err((error, _)) if t.before == Some(false) => tracing::debug!(
            org = name,
            list,
            error = error.as_str(),
            "organization inventory list still failing"
        ),
        Err((error, Some(scope))) => tracing::warn!(
            org = name,
            list,
            missing_scope = *scope,
            error = error.as_str(),
            "organization inventory failed: the admin API key lacks a scope; keeping this list's last complete state (the other list is not affected)"
        ),
        Err((error, None)) => tracing::warn!(
            org = name,
            list,
            error = error.as_str(),
            "organization inventory failed; keeping this list's last complete state (the other list is not affected)"
        ),
    }
}
