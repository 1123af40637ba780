//! Runs every token's probe on its interval: first probes jittered over the interval, a
//! global concurrency limit, a per-probe timeout, `Retry-After` back-off. Writes results
//! into the [`Store`]. `apply` diffs a new config against the running one, so a reload keeps
//! the schedule of tokens whose probe settings did not change. It also runs one
//! [`inventory`] loop per organization, and probes each organization's API key as an
//! implicit `{org}-admin-key` token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::config::{Config, OrgConfig, TokenConfig};
use crate::http::HttpClient;
use crate::inventory::{self, InventoryTask, Limits};
use crate::provider::{self, Outcome, ProbeTarget};
use crate::secret::SecretReader;
use crate::state::{Health, Store, TokenMeta, Transition};

/// New or changed tokens after a reload are probed within this window ("promptly"),
/// still spread out so a reload of 10,000 tokens is not a thundering herd.
pub const RELOAD_SPREAD: Duration = Duration::from_secs(5);

/// An organization's first inventory run starts within this window (or its interval, if
/// shorter), jittered so several organizations do not start at once.
pub const ORG_FIRST_RUN_WITHIN: Duration = Duration::from_secs(5);

/// How first probes are spread out.
#[derive(Debug, Clone, Copy)]
pub enum Spread {
    /// Over each token's whole interval (start-up, per SPEC §4).
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
            spawner: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Makes the running probes and inventory loops match `config`.
    pub fn apply(&mut self, config: &Config, spread: Spread) {
        self.resize(config.global.max_concurrency);
        self.apply_orgs(config);

        // Each organization's API key is watched too, by an implicit token (see config).
        let implicit = config.implicit_admin_tokens();
        let watched: Vec<&TokenConfig> = config.tokens.iter().chain(&implicit).collect();
        let unchanged = |t: &TokenConfig| {
            self.tasks
                .get(&t.name)
                .is_some_and(|task| task.token.probe_settings() == t.probe_settings())
        };
        let restart: HashMap<&str, bool> = watched
            .iter()
            .map(|t| (t.name.as_str(), !unchanged(t)))
            .collect();
        let metas = config
            .tokens
            .iter()
            .map(TokenMeta::from)
            .chain(implicit.iter().map(|t| TokenMeta {
                implicit: true,
                ..TokenMeta::from(t)
            }))
            .collect();
        let generations = self
            .store
            .set_tokens(metas, &|name| restart.get(name).copied().unwrap_or(true));

        let mut old = std::mem::take(&mut self.tasks);
        for token in watched {
            let keep = !restart.get(token.name.as_str()).copied().unwrap_or(true);
            if let (true, Some(mut task)) = (keep, old.remove(&token.name)) {
                task.token = Arc::new(token.clone());
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
            let shared = Arc::new(token.clone());
            let ctx = ProbeCtx {
                token: shared.clone(),
                secret: SecretReader::new(token.secret.clone()),
                generation,
                store: self.store.clone(),
                client: self.client.clone(),
                semaphore: self.semaphore.clone(),
            };
            let handle = self.spawner.spawn(run(ctx, first));
            self.tasks.insert(
                token.name.clone(),
                Task {
                    token: shared,
                    handle,
                },
            );
        }
        for (_, task) in old {
            task.handle.abort();
        }
    }

    /// Starts, keeps or restarts one inventory loop per organization. An organization whose
    /// settings did not change keeps its loop and its last inventory.
    fn apply_orgs(&mut self, config: &Config) {
        let page_timeout = config.global.probe_timeout;
        let restart: HashMap<&str, bool> = config
            .organizations
            .iter()
            .map(|o| {
                let same = self
                    .orgs
                    .get(&o.name)
                    .is_some_and(|t| t.org == *o && t.page_timeout == page_timeout);
                (o.name.as_str(), !same)
            })
            .collect();
        let names: Vec<String> = config
            .organizations
            .iter()
            .map(|o| o.name.clone())
            .collect();
        let generations = self
            .store
            .set_orgs(&names, &|name| restart.get(name).copied().unwrap_or(true));

        let mut old = std::mem::take(&mut self.orgs);
        for org in &config.organizations {
            let keep = !restart.get(org.name.as_str()).copied().unwrap_or(true);
            if let (true, Some(task)) = (keep, old.remove(&org.name)) {
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
                limits: Limits::new(page_timeout),
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

struct ProbeCtx {
    token: Arc<TokenConfig>,
    secret: SecretReader,
    generation: u64,
    store: Arc<Store>,
    client: HttpClient,
    semaphore: Arc<Semaphore>,
}

/// Probes start on a grid of this step (counted from process start): tokens due in the
/// same slot run in one wake-up of the runtime instead of one each, which at hundreds of
/// probes a second saves a thread park/unpark and a timer turn per probe. The delay this
/// adds to any probe is below one slot.
pub const SLOT: Duration = Duration::from_millis(1000);

/// The first slot boundary at or after `t`.
fn slot_at_or_after(t: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let slot = SLOT.as_nanos();
    let since = t.saturating_duration_since(epoch).as_nanos();
    u64::try_from(since.div_ceil(slot) * slot).map_or(t, |ns| epoch + Duration::from_nanos(ns))
}

/// When the probe that was due at `due` and has just answered with `outcome` runs next:
/// one interval after it was due (a fixed cadence, not one that drifts by each probe's
/// duration or wait for a concurrency permit), or later when the server asked for it with
/// `Retry-After` (counted from its answer).
fn next_due(due: Instant, now: Instant, outcome: &Outcome, interval: Duration) -> Instant {
    let delay = outcome.next_delay(interval);
    let next = if delay > interval {
        now + delay
    } else {
        due + interval
    };
    slot_at_or_after(next.max(now))
}

async fn run(ctx: ProbeCtx, first: Duration) {
    let mut due = slot_at_or_after(Instant::now() + first);
    loop {
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = ctx.semaphore.acquire().await else {
            return; // semaphore closed: shutting down
        };
        // Boxed: the request future is large, and an unboxed one would be part of every
        // idle task's state (10,000 sleeping tokens x several KiB).
        let (outcome, took) = Box::pin(probe_token(&ctx.client, &ctx.token, &ctx.secret)).await;
        drop(permit);
        if let Some(t) = ctx
            .store
            .record(&ctx.token.name, ctx.generation, &outcome, took)
        {
            log_transition(&ctx.token, &outcome, &t);
        }
        due = next_due(due, Instant::now(), &outcome, ctx.token.probe_interval);
    }
}

/// One probe of one token with its timeout, as `check` and the scheduler both need it.
pub async fn probe_token(
    client: &HttpClient,
    token: &TokenConfig,
    secret: &SecretReader,
) -> (Outcome, Duration) {
    let started = Instant::now();
    let outcome = match secret.read() {
        Err(e) => Outcome::credential_unavailable(&e),
        Ok(secret) => {
            let target = ProbeTarget {
                provider: token.provider,
                site: &token.site,
                email: token.email.as_deref(),
                expected_account_id: token.expected_account_id.as_deref(),
                secret: &secret,
            };
            tokio::time::timeout(token.probe_timeout, provider::probe(client, &target))
                .await
                .unwrap_or_else(|_| Outcome::timeout(token.probe_timeout))
        }
    };
    (outcome, started.elapsed())
}

fn log_transition(token: &TokenConfig, outcome: &Outcome, t: &Transition) {
    let (name, provider) = (token.name.as_str(), token.provider.as_str());
    if t.before != t.after {
        let detail = match outcome {
            Outcome::Anonymous { detail } => detail.clone(),
            Outcome::Rejected { status } => format!("HTTP {status}"),
            Outcome::Mismatch { account_id } => format!("authenticated as account {account_id}"),
            _ => String::new(),
        };
        if t.after == Health::Valid {
            tracing::info!(
                token = name,
                provider,
                from = t.before.as_str(),
                "token is valid"
            );
        } else {
            let msg = if t.before == Health::Valid {
                "token is no longer valid"
            } else {
                "token is not valid"
            };
            tracing::warn!(
                token = name,
                provider,
                from = t.before.as_str(),
                to = t.after.as_str(),
                detail = detail.as_str(),
                "{msg}"
            );
        }
    }
    match outcome {
        Outcome::Error(e) if !t.was_failing => tracing::warn!(
            token = name,
            provider,
            reason = e.reason.as_str(),
            detail = e.detail.as_str(),
            "probe failing; keeping the last conclusive state"
        ),
        Outcome::Error(_) => {}
        _ if t.was_failing => tracing::info!(token = name, provider, "probe recovered"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::FetchError;
    use crate::provider::ErrorReason;

    #[test]
    fn retry_after_extends_but_never_shortens_the_interval() {
        let interval = Duration::from_secs(60);
        let mut e = FetchError::new(ErrorReason::RateLimited, "HTTP 429");
        e.retry_after = Some(Duration::from_secs(600));
        assert_eq!(
            Outcome::Error(e.clone()).next_delay(interval),
            Duration::from_secs(600)
        );
        e.retry_after = Some(Duration::from_secs(5));
        assert_eq!(Outcome::Error(e).next_delay(interval), interval);
        assert_eq!(
            Outcome::Rejected { status: 401 }.next_delay(interval),
            interval
        );
    }

    #[test]
    fn probes_start_on_the_slot_grid() {
        let t = Instant::now();
        let a = slot_at_or_after(t);
        assert!(a >= t && a - t < SLOT);
        // Already on the grid: unchanged; just after it: the next boundary.
        assert_eq!(slot_at_or_after(a), a);
        assert_eq!(slot_at_or_after(a + Duration::from_nanos(1)), a + SLOT);
        assert_eq!(slot_at_or_after(a + SLOT * 30), a + SLOT * 30);
    }

    #[test]
    fn next_probe_keeps_a_fixed_cadence_and_honours_retry_after() {
        let interval = Duration::from_secs(60);
        let due = slot_at_or_after(Instant::now());
        let valid = Outcome::Valid {
            account_id: Some("a".to_string()),
        };
        // A probe that took 3 s (or waited for a permit) does not push the next one back.
        let answered = due + Duration::from_secs(3);
        assert_eq!(next_due(due, answered, &valid, interval), due + interval);
        // A probe that overran its slot entirely runs again at once, never in the past.
        let late = due + Duration::from_secs(90);
        assert_eq!(
            next_due(due, late, &valid, interval),
            slot_at_or_after(late)
        );
        // Retry-After counts from the answer and is never cut short by rounding.
        let mut e = FetchError::new(ErrorReason::RateLimited, "HTTP 429");
        e.retry_after = Some(Duration::from_secs(600));
        let next = next_due(due, answered, &Outcome::Error(e), interval);
        assert!(next >= answered + Duration::from_secs(600));
        assert!(next < answered + Duration::from_secs(600) + SLOT);
    }

    #[test]
    fn jitter_stays_inside_the_window() {
        let w = Duration::from_secs(10);
        for _ in 0..1000 {
            assert!(jitter(w) < w);
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
