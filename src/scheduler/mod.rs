//! Runs every token's probe on its interval ([`token`]: first probes jittered over the
//! interval, a global concurrency limit, a per-probe timeout, `Retry-After` back-off) and
//! one inventory loop per organization ([`inventory`]); both write into the [`Store`].
//! [`Scheduler::apply`] diffs a new config against the running one, so a reload keeps the
//! schedule of tokens whose probe settings did not change. Each organization's API key is
//! probed as an implicit `{org}-admin-key` token.

mod inventory;
mod token;

pub use token::{probe_token, TokenCredential};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::{Config, OrgConfig, TokenConfig};
use crate::providers::atlassian::inventory::Limits;
use crate::state::{OrgSettings, Store, TokenMeta};
use crate::upstream::HttpClient;

use self::inventory::InventoryTask;
use self::token::TokenLoop;

/// New or changed tokens after a reload are probed within this window ("promptly"),
/// still spread out so a reload of 10,000 tokens is not a thundering herd.
pub const RELOAD_SPREAD: Duration = Duration::from_secs(5);

/// An organization's first inventory run starts within this window (or its interval, if
/// shorter), jittered so several organizations do not start at once.
pub const ORG_FIRST_RUN_WITHIN: Duration = Duration::from_secs(5);

/// How first probes are spread out.
#[derive(Debug, Clone, Copy)]
pub enum Spread {
    /// Over each token's whole interval (start-up: README "How tokens are classified").
    Interval,
    /// Over at most this window (reloads, the demo).
    Within(Duration),
}

struct Task {
    /// Shared with the task's probe loop: one copy per token, not two.
    token: Arc<TokenConfig>,
    handle: JoinHandle<()>,
}

/// One organization's inventory loop and the settings it runs with.
struct OrgTask {
    org: OrgConfig,
    page_timeout: Duration,
    handle: JoinHandle<()>,
}

pub struct Scheduler {
    store: Arc<Store>,
    client: HttpClient,
    semaphore: Arc<Semaphore>,
    permits: usize,
    tasks: HashMap<String, Task>,
    orgs: HashMap<String, OrgTask>,
    /// The client was replaced (new CA or proxy): the next `apply` restarts every loop, so
    /// each uses the new one, keeping its state.
    new_client: bool,
    /// Where probe and inventory tasks run: the scheduler's own runtime.
    spawner: tokio::runtime::Handle,
    /// Taken and shut down when the scheduler is dropped, after its tasks are aborted.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Scheduler {
    /// A scheduler with its own runtime on its own thread (`probes`): probes never wait
    /// behind the HTTP server, so a scrape storm (50 clients downloading a 10 MB plain
    /// body back to back) cannot delay them; the operating system shares the cores.
    pub fn new(store: Arc<Store>, client: HttpClient) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("probes")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the probe runtime: {e}"))?;
        Ok(Self {
            store,
            client,
            semaphore: Arc::new(Semaphore::new(0)),
            permits: 0,
            tasks: HashMap::new(),
            orgs: HashMap::new(),
            new_client: false,
            spawner: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Uses `client` from the next [`Scheduler::apply`] on: every probe and inventory loop
    /// restarts with it, keeping its state.
    pub fn replace_client(&mut self, client: HttpClient) {
        self.client = client;
        self.new_client = true;
    }

    /// Makes the running probes and inventory loops match `config`.
    pub fn apply(&mut self, config: &Config, spread: Spread) {
        self.resize(config.global.max_concurrency);
        self.apply_orgs(config);

        // Each organization's API key is watched too, by an implicit token (see config).
        let implicit = config.implicit_admin_tokens();
        let watched = config
            .tokens
            .iter()
            .map(|t| (t, false))
            .chain(implicit.iter().map(|t| (t, true)));
        // One shared copy of each token's config: the state, the task handle and the
        // probe loop all point at it. An unchanged token keeps the copy it has. A token
        // whose credential changed starts from a clean state (`reset`); one whose interval
        // or timeout alone changed keeps its state and counters, only its loop restarts.
        let mut tokens: Vec<(Arc<TokenConfig>, bool, bool)> = Vec::new();
        let mut reset: HashMap<String, bool> = HashMap::new();
        for (t, is_implicit) in watched {
            let running = self.tasks.get(&t.name).map(|task| &task.token);
            let (new, old) = (t.probe_settings(), running.map(|r| r.probe_settings()));
            let restart = self.new_client || old.as_ref().is_none_or(|o| *o != new);
            reset.insert(
                t.name.clone(),
                old.as_ref().is_none_or(|o| !o.same_credential(&new)),
            );
            let shared = match running {
                Some(r) if **r == *t => r.clone(),
                _ => Arc::new(t.clone()),
            };
            tokens.push((shared, is_implicit, restart));
        }
        let metas = tokens
            .iter()
            .map(|(t, is_implicit, _)| TokenMeta {
                implicit: *is_implicit,
                ..TokenMeta::new(t.clone())
            })
            .collect();
        let generations = self
            .store
            .set_tokens(metas, &|name| reset.get(name).copied().unwrap_or(true));

        let mut old = std::mem::take(&mut self.tasks);
        for (token, _, restart) in tokens {
            if let (false, Some(mut task)) = (restart, old.remove(&token.name)) {
                task.token = token.clone();
                self.tasks.insert(token.name.clone(), task);
                continue;
            }
            if let Some(task) = old.remove(&token.name) {
                task.handle.abort();
            }
            let Some(&generation) = generations.get(&token.name) else {
                continue;
            };
            let window = match spread {
                Spread::Interval => token.probe_interval,
                Spread::Within(w) => w.min(token.probe_interval),
            };
            let first = jitter(window);
            let ctx = TokenLoop {
                token: token.clone(),
                credential: TokenCredential::new(&token),
                generation,
                store: self.store.clone(),
                client: self.client.clone(),
                semaphore: self.semaphore.clone(),
            };
            let handle = self.spawner.spawn(token::run(ctx, first));
            self.tasks
                .insert(token.name.clone(), Task { token, handle });
        }
        for (_, task) in old {
            task.handle.abort();
        }
        self.new_client = false;
    }

    /// Starts, keeps or restarts one inventory loop per organization. An organization whose
    /// settings did not change keeps its loop and its last inventory; one whose interval or
    /// page timeout alone changed keeps its inventory, only its loop restarts.
    fn apply_orgs(&mut self, config: &Config) {
        let page_timeout = config.global.probe_timeout;
        let same_listing = |a: &OrgConfig, b: &OrgConfig| {
            a.org_id == b.org_id && a.api_key == b.api_key && a.base_url == b.base_url
        };
        let reset: HashMap<&str, bool> = config
            .organizations
            .iter()
            .map(|o| {
                let kept = self
                    .orgs
                    .get(&o.name)
                    .is_some_and(|t| same_listing(&t.org, o));
                (o.name.as_str(), !kept)
            })
            .collect();
        let restart: HashMap<&str, bool> = config
            .organizations
            .iter()
            .map(|o| {
                let same = self
                    .orgs
                    .get(&o.name)
                    .is_some_and(|t| t.org.same_listing(o) && t.page_timeout == page_timeout);
                (o.name.as_str(), self.new_client || !same)
            })
            .collect();
        let settings: Vec<OrgSettings<'_>> = config
            .organizations
            .iter()
            .map(|o| OrgSettings {
                name: &o.name,
                per_token_series: o.per_token_series,
            })
            .collect();
        let generations = self
            .store
            .set_orgs(&settings, &|name| reset.get(name).copied().unwrap_or(true));

        let mut old = std::mem::take(&mut self.orgs);
        for org in &config.organizations {
            let keep = !restart.get(org.name.as_str()).copied().unwrap_or(true);
            if let (true, Some(mut task)) = (keep, old.remove(&org.name)) {
                task.org = org.clone();
                self.orgs.insert(org.name.clone(), task);
                continue;
            }
            if let Some(task) = old.remove(&org.name) {
                task.handle.abort();
            }
            let Some(&generation) = generations.get(&org.name) else {
                continue;
            };
            let task = InventoryTask {
                org: org.clone(),
                limits: Limits {
                    max_pages: org.max_pages,
                    ..Limits::new(page_timeout)
                },
                generation,
                store: self.store.clone(),
                client: self.client.clone(),
                semaphore: self.semaphore.clone(),
            };
            let first = jitter(ORG_FIRST_RUN_WITHIN.min(org.probe_interval));
            let handle = self.spawner.spawn(inventory::run(task, first));
            self.orgs.insert(
                org.name.clone(),
                OrgTask {
                    org: org.clone(),
                    page_timeout,
                    handle,
                },
            );
        }
        for (_, task) in old {
            task.handle.abort();
        }
    }

    fn resize(&mut self, permits: usize) {
        if permits > self.permits {
            self.semaphore.add_permits(permits - self.permits);
        } else if permits < self.permits {
            // Permits held by running probes are forgotten as they come back.
            let gone = self.semaphore.forget_permits(self.permits - permits);
            let missing = self.permits - permits - gone;
            if missing > 0 {
                let sem = self.semaphore.clone();
                self.spawner.spawn(async move {
                    if let Ok(p) = sem.acquire_many(missing as u32).await {
                        p.forget();
                    }
                });
            }
        }
        self.permits = permits;
    }

    /// Stops every probe and inventory loop (in-flight requests are cancelled).
    pub fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.handle.abort();
        }
        for (_, task) in self.orgs.drain() {
            task.handle.abort();
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
        // Without waiting: the scheduler may be dropped inside an async context, where a
        // blocking runtime shutdown would panic. Aborted tasks end at their next poll.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn jitter(window: Duration) -> Duration {
    if window.is_zero() {
        return Duration::ZERO;
    }
    let ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_inside_the_window() {
        let w = Duration::from_secs(10);
        for _ in 0..1000 {
            assert!(jitter(w) < w);
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
