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
    limits: Limits,
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
            // A loop that is not kept is aborted: dropping its handle would detach it, and
            // it would go on probing on the old schedule (or with the old credential).
            match old.remove(&token.name) {
                Some(mut task) if !restart => {
                    task.token = token.clone();
                    self.tasks.insert(token.name.clone(), task);
                    continue;
                }
                Some(task) => task.handle.abort(),
                None => {}
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
        let limits = |o: &OrgConfig| Limits {
            max_pages: o.max_pages,
            ..Limits::new(config.global.probe_timeout)
        };
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
                    .is_some_and(|t| t.org.same_listing(o) && t.limits == limits(o));
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
            match old.remove(&org.name) {
                Some(mut task) if keep => {
                    task.org = org.clone();
                    self.orgs.insert(org.name.clone(), task);
                    continue;
                }
                Some(task) => task.handle.abort(),
                None => {}
            }
            let Some(&generation) = generations.get(&org.name) else {
                continue;
            };
            let run_limits = limits(org);
            let task = InventoryTask {
                org: org.clone(),
                limits: run_limits,
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
                    limits: run_limits,
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
    use std::collections::BTreeMap;

    use crate::probe::{Outcome, OutcomeKind};
    use crate::providers::Probed;
    use tokio::task::{AbortHandle, Id};

    /// A config of Jira tokens `(name, token_env, probe_interval)` and organizations
    /// `(name, api_key_env, probe_interval)` at a closed local port. Every first probe is
    /// spread over an hour (`Spread::Within`), so the tests below see the scheduler's
    /// bookkeeping, not probe results (a probe that does run early only adds an error,
    /// which keeps the last conclusive state these tests check).
    fn config(tokens: &[(&str, &str, &str)], orgs: &[(&str, &str, &str)], extra: &str) -> Config {
        let mut y = String::from(
            "global:\n  allow_insecure_http: true\n  probe_interval: 1h\n  probe_timeout: 2s\n",
        );
        y.push_str(extra);
        y.push_str("tokens:\n");
        for (name, env, interval) in tokens {
            y.push_str(&format!(
                "  - {{name: {name}, provider: jira, site: 'http://127.0.0.1:9', \
                 email: {name}@example.com, token_env: {env}, probe_interval: {interval}, \
                 labels: {{team: {env}}}}}\n"
            ));
        }
        if !orgs.is_empty() {
            y.push_str("organizations:\n");
        }
        for (name, env, interval) in orgs {
            y.push_str(&format!(
                "  - {{name: {name}, org_id: {name}-id, api_key_env: {env}, \
                 base_url: 'http://127.0.0.1:9', probe_interval: {interval}}}\n"
            ));
        }
        Config::parse(&y).unwrap_or_else(|e| panic!("{e:?}\n{y}"))
    }

    fn scheduler() -> (Arc<Store>, Scheduler) {
        let store = Arc::new(Store::new());
        let client = HttpClient::new().unwrap();
        (store.clone(), Scheduler::new(store, client).unwrap())
    }

    const SPREAD: Spread = Spread::Within(Duration::from_secs(3600));

    fn ids(s: &Scheduler) -> BTreeMap<String, Id> {
        s.tasks
            .iter()
            .map(|(n, t)| (n.clone(), t.handle.id()))
            .collect()
    }

    fn org_ids(s: &Scheduler) -> BTreeMap<String, Id> {
        s.orgs
            .iter()
            .map(|(n, t)| (n.clone(), t.handle.id()))
            .collect()
    }

    fn aborts(s: &Scheduler) -> BTreeMap<String, AbortHandle> {
        s.tasks
            .iter()
            .map(|(n, t)| (n.clone(), t.handle.abort_handle()))
            .collect()
    }

    fn org_aborts(s: &Scheduler) -> BTreeMap<String, AbortHandle> {
        s.orgs
            .iter()
            .map(|(n, t)| (n.clone(), t.handle.abort_handle()))
            .collect()
    }

    /// Waits (bounded) until the runtime has ended every aborted task.
    fn finished(handle: &AbortHandle) -> bool {
        for _ in 0..500 {
            if handle.is_finished() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn generation(store: &Store, name: &str) -> u64 {
        store.read().tokens[name].generation
    }

    /// Seeds a conclusive valid result, as a probe would have recorded it.
    fn seed(store: &Store, name: &str) {
        let valid = Probed::from(Outcome::Valid {
            account_id: Some(format!("acc-{name}")),
        });
        let g = generation(store, name);
        store
            .record(name, g, &valid, Duration::from_millis(5))
            .expect("the token is in the store");
    }

    /// The seeded result is still there: conclusive, counted once, same account.
    fn keeps_seed(store: &Store, name: &str) -> bool {
        let inner = store.read();
        let s = &inner.tokens[name].status;
        s.conclusive.map(|c| c.valid) == Some(true)
            && s.results[OutcomeKind::Valid.index()] == 1
            && s.account_id.as_deref() == Some(&format!("acc-{name}"))
            && s.last_valid.is_some()
    }

    #[test]
    fn jitter_stays_inside_the_window() {
        let w = Duration::from_secs(10);
        let samples: Vec<Duration> = (0..1000).map(|_| jitter(w)).collect();
        assert!(samples.iter().all(|j| *j < w));
        // Spread over the window, not bunched at its start (1000 draws: the chance that
        // none falls in the second half is 2^-1000).
        assert!(
            samples.iter().any(|j| *j >= w / 2),
            "{:?}",
            samples.iter().max()
        );
        assert!(samples.iter().any(|j| *j < w / 2));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_reload_keeps_unchanged_tokens_and_restarts_or_resets_only_what_changed() {
        let (store, mut s) = scheduler();
        let before = config(
            &[
                ("same", "E1", "1h"),
                ("relabel", "E2", "1h"),
                ("interval", "E3", "1h"),
                ("secret", "E4", "1h"),
                ("gone", "E5", "1h"),
            ],
            &[],
            "",
        );
        s.apply(&before, SPREAD);
        assert_eq!(s.len(), 5);
        assert!(!s.is_empty());
        for name in ["same", "relabel", "interval", "secret", "gone"] {
            seed(&store, name);
        }
        let (ids0, aborts0) = (ids(&s), aborts(&s));
        let gens0: BTreeMap<_, _> = ids0
            .keys()
            .map(|n| (n.clone(), generation(&store, n)))
            .collect();
        let same_arc = s.tasks["same"].token.clone();

        // `relabel` changes only its labels (E2 -> E2 in the env, the label from a new
        // value), `interval` only its probe_interval, `secret` its credential.
        let mut after = config(
            &[
                ("same", "E1", "1h"),
                ("relabel", "E2", "1h"),
                ("interval", "E3", "2h"),
                ("secret", "E4b", "1h"),
                ("new", "E6", "1h"),
            ],
            &[],
            "",
        );
        let relabel = after
            .tokens
            .iter_mut()
            .find(|t| t.name == "relabel")
            .unwrap();
        relabel.labels.insert("team".into(), "renamed".into());
        s.apply(&after, SPREAD);
        let ids1 = ids(&s);

        assert_eq!(
            ids1.keys().collect::<Vec<_>>(),
            ["interval", "new", "relabel", "same", "secret"],
            "the removed token's loop is dropped, the new one's started"
        );
        assert!(
            !store.read().tokens.contains_key("gone"),
            "the removed token left the state"
        );
        assert!(
            finished(&aborts0["gone"]),
            "the removed token's loop was aborted"
        );

        // Unchanged: same loop, same generation, same state, and the one shared copy of
        // its config (state and loop point at it).
        assert_eq!(
            ids1["same"], ids0["same"],
            "an unchanged token's loop was restarted"
        );
        assert!(!aborts0["same"].is_finished());
        assert_eq!(generation(&store, "same"), gens0["same"]);
        assert!(
            keeps_seed(&store, "same"),
            "an unchanged token lost its state"
        );
        assert!(Arc::ptr_eq(&s.tasks["same"].token, &same_arc));
        assert!(Arc::ptr_eq(
            &store.read().tokens["same"].meta.config,
            &same_arc
        ));

        // Labels only: the loop and state stay, the loop and the state see the new labels.
        assert_eq!(
            ids1["relabel"], ids0["relabel"],
            "a relabelled token's loop was restarted"
        );
        assert!(keeps_seed(&store, "relabel"));
        assert_eq!(s.tasks["relabel"].token.labels["team"], "renamed");
        assert!(Arc::ptr_eq(
            &store.read().tokens["relabel"].meta.config,
            &s.tasks["relabel"].token
        ));

        // Interval only: a new loop (the new schedule), the state and generation kept.
        assert_ne!(
            ids1["interval"], ids0["interval"],
            "a new interval kept the old loop"
        );
        assert!(
            finished(&aborts0["interval"]),
            "the old loop of `interval` still runs"
        );
        assert_eq!(generation(&store, "interval"), gens0["interval"]);
        assert!(
            keeps_seed(&store, "interval"),
            "a new interval reset the state"
        );
        assert_eq!(
            s.tasks["interval"].token.probe_interval,
            Duration::from_secs(7200)
        );

        // A new credential: a new loop and a clean state under a new generation.
        assert_ne!(ids1["secret"], ids0["secret"]);
        assert!(finished(&aborts0["secret"]));
        assert_ne!(generation(&store, "secret"), gens0["secret"]);
        assert!(
            !keeps_seed(&store, "secret"),
            "a new credential kept the old state"
        );
        assert_eq!(store.read().tokens["secret"].status.results, [0; 5]);

        // Reapplying the same config changes nothing.
        s.apply(&after, SPREAD);
        assert_eq!(ids(&s), ids1, "reapplying the same config restarted a loop");

        s.stop();
        assert!(s.is_empty());
        assert!(aborts(&s).is_empty());
    }

    #[test]
    fn a_new_client_restarts_every_loop_once_keeping_all_state() {
        let (store, mut s) = scheduler();
        let c = config(
            &[("a", "E1", "1h"), ("b", "E2", "1h")],
            &[("acme", "K1", "1h")],
            "",
        );
        s.apply(&c, SPREAD);
        seed(&store, "a");
        let (ids0, orgs0, aborts0) = (ids(&s), org_ids(&s), aborts(&s));
        let org_gen = store.read().orgs["acme"].generation;
        assert!(
            ids0.contains_key("acme-admin-key"),
            "the org's key is watched: {ids0:?}"
        );
        assert!(store.read().tokens["acme-admin-key"].meta.implicit);
        assert!(!store.read().tokens["a"].meta.implicit);

        s.replace_client(HttpClient::new().unwrap());
        s.apply(&c, SPREAD);
        let (ids1, orgs1) = (ids(&s), org_ids(&s));
        for (name, id) in &ids0 {
            assert_ne!(ids1[name], *id, "{name} kept a loop with the old client");
            assert!(finished(&aborts0[name]), "{name}'s old loop still runs");
        }
        assert_ne!(
            orgs1["acme"], orgs0["acme"],
            "the inventory kept the old client"
        );
        assert!(keeps_seed(&store, "a"), "a new client reset the state");
        assert_eq!(store.read().orgs["acme"].generation, org_gen);

        s.apply(&c, SPREAD);
        assert_eq!(
            ids(&s),
            ids1,
            "the new client restarted the loops a second time"
        );
        assert_eq!(org_ids(&s), orgs1);
    }

    #[test]
    fn a_reload_keeps_or_resets_each_organization_by_what_changed() {
        let (store, mut s) = scheduler();
        let orgs = [
            ("same", "K1", "1h"),
            ("interval", "K2", "1h"),
            ("key", "K3", "1h"),
            ("gone", "K4", "1h"),
            ("series", "K5", "1h"),
        ];
        let mut before = config(&[], &orgs, "");
        before.organizations[1].max_pages = 7;
        s.apply(&before, SPREAD);
        assert_eq!(
            s.orgs["interval"].limits.max_pages, 7,
            "max_pages did not reach the run"
        );
        assert_eq!(s.orgs["same"].limits.max_pages, 2500);
        assert_eq!(s.orgs["same"].limits.page_timeout, Duration::from_secs(2));
        let ids0 = org_ids(&s);
        let aborts0 = org_aborts(&s);
        let gen = |name: &str| store.read().orgs[name].generation;
        let gens0: BTreeMap<_, _> = ids0.keys().map(|n| (n.clone(), gen(n))).collect();

        let mut after = config(
            &[],
            &[
                ("same", "K1", "1h"),
                ("interval", "K2", "2h"),
                ("key", "K3b", "1h"),
                ("series", "K5", "1h"),
                ("new", "K6", "1h"),
            ],
            "",
        );
        let series = after
            .organizations
            .iter_mut()
            .find(|o| o.name == "series")
            .unwrap();
        series.per_token_series = !series.per_token_series;
        let want_series = series.per_token_series;
        s.apply(&after, SPREAD);
        let ids1 = org_ids(&s);
        assert_eq!(
            ids1.keys().collect::<Vec<_>>(),
            ["interval", "key", "new", "same", "series"]
        );
        assert!(!store.read().orgs.contains_key("gone"));
        assert!(finished(&aborts0["gone"]));

        assert_eq!(
            ids1["same"], ids0["same"],
            "an unchanged organization's loop restarted"
        );
        assert_eq!(gen("same"), gens0["same"]);
        assert_eq!(
            ids1["series"], ids0["series"],
            "per_token_series alone restarted the loop"
        );
        assert_eq!(gen("series"), gens0["series"]);
        assert_eq!(store.read().orgs["series"].per_token_series, want_series);
        assert_eq!(s.orgs["series"].org.per_token_series, want_series);

        assert_ne!(
            ids1["interval"], ids0["interval"],
            "a new interval kept the old loop"
        );
        assert!(finished(&aborts0["interval"]));
        assert_eq!(
            gen("interval"),
            gens0["interval"],
            "a new interval dropped the inventory"
        );

        assert_ne!(ids1["key"], ids0["key"]);
        assert!(finished(&aborts0["key"]));
        assert_ne!(
            gen("key"),
            gens0["key"],
            "a new API key kept the old inventory"
        );

        // A new page timeout (global probe_timeout) restarts every loop, keeping inventories.
        let mut timeout = after.clone();
        timeout.global.probe_timeout = Duration::from_secs(3);
        let gens1: BTreeMap<_, _> = ids1.keys().map(|n| (n.clone(), gen(n))).collect();
        s.apply(&timeout, SPREAD);
        for (name, id) in org_ids(&s) {
            assert_ne!(id, ids1[&name], "{name} kept its page timeout");
            assert_eq!(gen(&name), gens1[&name], "{name} dropped its inventory");
            assert_eq!(s.orgs[&name].limits.page_timeout, Duration::from_secs(3));
        }
    }

    #[test]
    fn max_concurrency_follows_the_config_up_and_down() {
        let (_store, mut s) = scheduler();
        s.resize(4);
        assert_eq!(s.semaphore.available_permits(), 4);
        s.resize(6);
        assert_eq!(s.semaphore.available_permits(), 6);
        s.resize(6);
        assert_eq!(s.semaphore.available_permits(), 6);
        // None held: the surplus goes at once.
        s.resize(4);
        assert_eq!(s.semaphore.available_permits(), 4);
        s.resize(6);
        assert_eq!(s.semaphore.available_permits(), 6);
        // Five permits held by running probes: the one free permit goes at once, three
        // more as the probes return them.
        let held = s.semaphore.clone().try_acquire_many_owned(5).unwrap();
        s.resize(2);
        assert_eq!(s.semaphore.available_permits(), 0);
        drop(held);
        let mut settled = false;
        for _ in 0..500 {
            if s.semaphore.available_permits() == 2 {
                settled = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(settled, "permits: {}", s.semaphore.available_permits());
        // Stays at two: nothing else was forgotten or added.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(s.semaphore.available_permits(), 2);
        assert_eq!(s.permits, 2);
        s.apply(
            &config(&[("a", "E1", "1h")], &[], "  max_concurrency: 3\n"),
            SPREAD,
        );
        assert_eq!(s.semaphore.available_permits(), 3);
    }

    #[test]
    fn dropping_the_scheduler_stops_every_loop() {
        let (_store, mut s) = scheduler();
        s.apply(
            &config(&[("a", "E1", "1h")], &[("acme", "K1", "1h")], ""),
            SPREAD,
        );
        let mut handles: Vec<AbortHandle> = aborts(&s).into_values().collect();
        handles.extend(org_aborts(&s).into_values());
        assert_eq!(
            handles.len(),
            3,
            "a, acme-admin-key and the inventory of acme"
        );
        assert!(handles.iter().all(|h| !h.is_finished()));
        // Dropped inside an async context, as the server may drop it: a blocking shutdown
        // of its runtime would panic there.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async move { drop(s) });
        for h in &handles {
            assert!(finished(h), "a loop outlived its scheduler");
        }
    }
}
