//! The last known state of every token: written by the scheduler, read by the metrics
//! renderer and the status page. The single source of truth; nothing else keeps state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::config::{ExpirySource, TokenConfig};
use crate::probe::{ErrorReason, Facts, Outcome, OutcomeKind};
use crate::providers::atlassian::inventory::{Inventory, InventoryError, ListedKey, ListedToken};
use crate::providers::{InventoryLink, Probed, Provider};
use crate::util::unix_now;

/// A watched token as the state knows it: its config, shared with the scheduler's probe
/// loop (one copy per token, not one per layer), and what the organization inventories
/// say about it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMeta {
    pub config: Arc<TokenConfig>,
    /// An organization's implicit `{org}-admin-key` token rather than a configured one.
    pub implicit: bool,
    /// The inventory entry this token is linked to (README "Organization inventory"),
    /// kept current by the [`Store`].
    pub linked: Option<Linked>,
}

/// What a linked inventory entry says about a configured token (Unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Linked {
    pub expires_at: Option<i64>,
    pub created_at: Option<i64>,
    pub last_active_at: Option<i64>,
}

impl From<&ListedToken> for Linked {
    fn from(t: &ListedToken) -> Self {
        Linked {
            expires_at: t.expires_at,
            created_at: t.created_at,
            last_active_at: t.last_active_at,
        }
    }
}

impl From<&ListedKey> for Linked {
    fn from(k: &ListedKey) -> Self {
        Linked {
            expires_at: k.expires_at,
            created_at: k.created_at,
            last_active_at: None,
        }
    }
}

impl TokenMeta {
    pub fn new(config: Arc<TokenConfig>) -> Self {
        Self {
            config,
            implicit: false,
            linked: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn provider(&self) -> Provider {
        self.config.provider
    }

    /// The `site` label: the configured base URL without a trailing `/`.
    pub fn site(&self) -> &str {
        self.config.site.as_str().trim_end_matches('/')
    }
}

/// One organization's inventory state.
#[derive(Debug, Clone, Default)]
pub struct OrgEntry {
    /// The last *complete* listing; a failed run never replaces it with a partial one.
    pub inventory: Option<Inventory>,
    /// Whether the last run completed; None until the first run ended.
    pub success: Option<bool>,
    /// Unix time the last complete listing arrived.
    pub last_success: Option<f64>,
    /// Why the last run failed (cleared by a complete one).
    pub last_error: Option<String>,
    /// Bumped when the organization's settings change; results of older runs are dropped.
    pub generation: u64,
}

/// How a recorded inventory run changed an organization's health, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryTransition {
    pub before: Option<bool>,
    pub after: bool,
}

/// The three gauges that only a conclusive probe may change (an error keeps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conclusive {
    pub valid: bool,
    pub anonymous_fallback: bool,
    pub identity_mismatch: bool,
}

/// A human-level summary of a token, for logs and the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Pending,
    Valid,
    Mismatch,
    Anonymous,
    Rejected,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Pending => "pending",
            Health::Valid => "valid",
            Health::Mismatch => "identity mismatch",
            Health::Anonymous => "anonymous fallback",
            Health::Rejected => "rejected",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TokenStatus {
    pub conclusive: Option<Conclusive>,
    /// Which conclusive outcome set `conclusive` (to tell rejected from anonymous).
    pub last_conclusive: Option<OutcomeKind>,
    pub probe_success: Option<bool>,
    pub last_probe: Option<f64>,
    pub last_valid: Option<f64>,
    pub last_duration: Option<f64>,
    pub results: [u64; OutcomeKind::ALL.len()],
    pub errors: [u64; ErrorReason::ALL.len()],
    pub account_id: Option<String>,
    /// Seconds until the next probe as decided after the last one (interval or back-off).
    pub effective_interval: Option<f64>,
    /// The last inconclusive probe's reason and detail (cleared by a conclusive probe).
    pub last_error: Option<(ErrorReason, String)>,
    /// What the vendor last reported about the credential (expiry, scopes, …); boxed, as
    /// most vendors report nothing and 10,000 empty copies would cost a megabyte.
    pub facts: Option<Box<Facts>>,
}

impl TokenStatus {
    pub fn health(&self) -> Health {
        match self.last_conclusive {
            None => Health::Pending,
            Some(OutcomeKind::Valid) => Health::Valid,
            Some(OutcomeKind::Mismatch) => Health::Mismatch,
            Some(OutcomeKind::Anonymous) => Health::Anonymous,
            Some(OutcomeKind::Rejected | OutcomeKind::Error) => Health::Rejected,
        }
    }

    fn apply(&mut self, probed: &Probed, finished_at: f64, duration: Duration, interval: Duration) {
        let outcome = &probed.outcome;
        if !probed.facts.is_empty() {
            self.facts = Some(Box::new(probed.facts.clone()));
        } else if matches!(outcome, Outcome::Valid { .. } | Outcome::Mismatch { .. }) {
            // The vendor authenticated the credential and reported nothing: what it said
            // before was about an earlier token (rotated in its file) and no longer holds.
            // Errors and refusals report nothing new and keep it.
            self.facts = None;
        }
        self.results[outcome.kind().index()] += 1;
        self.effective_interval = Some(outcome.next_delay(interval).as_secs_f64());
        self.last_probe = Some(finished_at);
        // microseconds are plenty, and shorter numbers make a smaller body
        self.last_duration = Some((duration.as_secs_f64() * 1e6).round() / 1e6);
        let conclusive = match outcome {
            Outcome::Valid { .. } => (true, false, false),
            Outcome::Mismatch { .. } => (true, false, true),
            Outcome::Anonymous { .. } => (false, true, false),
            Outcome::Rejected { .. } => (false, false, false),
            Outcome::Error(e) => {
                self.errors[e.reason.index()] += 1;
                self.probe_success = Some(false);
                self.last_error = Some((e.reason, e.detail.clone()));
                return;
            }
        };
        self.probe_success = Some(true);
        self.last_error = None;
        self.last_conclusive = Some(outcome.kind());
        self.conclusive = Some(Conclusive {
            valid: conclusive.0,
            anonymous_fallback: conclusive.1,
            identity_mismatch: conclusive.2,
        });
        if conclusive.0 {
            self.last_valid = Some(finished_at);
        }
        if let Some(id) = outcome.account_id() {
            self.account_id = Some(id.to_string());
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenEntry {
    pub meta: TokenMeta,
    pub status: TokenStatus,
    /// Bumped when the token's probe settings change; results of older probes are dropped.
    pub generation: u64,
}

impl TokenEntry {
    /// The effective expiry and where it came from. Precedence: what the provider itself
    /// reported, then a linked inventory entry, then the config (`expires_at`, or
    /// `created_at` + lifetime).
    pub fn expiry(&self) -> (Option<i64>, ExpirySource) {
        if let Some(t) = self.status.facts.as_ref().and_then(|f| f.expires_at) {
            return (Some(t), ExpirySource::Provider);
        }
        if let Some(t) = self.meta.linked.and_then(|l| l.expires_at) {
            return (Some(t), ExpirySource::OrgInventory);
        }
        (self.meta.config.expires_at, self.meta.config.expiry_source)
    }

    fn facts(&self) -> Option<&Facts> {
        self.status.facts.as_deref()
    }

    /// When the token was created, by the same precedence as [`TokenEntry::expiry`].
    pub fn created_at(&self) -> Option<i64> {
        self.facts()
            .and_then(|f| f.created_at)
            .or(self.meta.linked.and_then(|l| l.created_at))
            .or(self.meta.config.created_at)
    }

    /// Expiry − creation in seconds, when both are known (and make sense).
    pub fn lifetime(&self) -> Option<i64> {
        let (expires, _) = self.expiry();
        let lifetime = expires? - self.created_at()?;
        (lifetime > 0).then_some(lifetime)
    }

    /// The last use the vendor reported: the provider itself, else a linked inventory
    /// entry's `lastActiveAt`.
    pub fn last_used_at(&self) -> Option<i64> {
        self.facts()
            .and_then(|f| f.last_used_at)
            .or(self.meta.linked.and_then(|l| l.last_active_at))
    }

    /// The scopes the vendor reported, if it did.
    pub fn scopes(&self) -> &[String] {
        self.facts()
            .and_then(|f| f.scopes.as_deref())
            .unwrap_or(&[])
    }

    /// The credential type the vendor reported (Bitbucket `x-credential-type`).
    pub fn credential_type(&self) -> Option<&str> {
        self.facts().and_then(|f| f.credential_type.as_deref())
    }
}

/// The exporter's own health, for `apitoken_exporter_*`.
#[derive(Debug, Clone, Default)]
pub struct ExporterStatus {
    pub ready: bool,
    pub last_reload_successful: bool,
    pub last_reload_success: Option<f64>,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub tokens: BTreeMap<String, TokenEntry>,
    pub orgs: BTreeMap<String, OrgEntry>,
    pub exporter: ExporterStatus,
}

impl Inner {
    /// Re-links every token to the organizations' inventories (README "Organization
    /// inventory"): a token is linked to the entry whose id equals its `org_token_id`, in
    /// the list its provider declares (admin API keys for `atlassian_admin`, user API
    /// tokens otherwise), or, without one, to the only user API token its
    /// `expected_account_id` owns. A linked entry without an expiry leaves the config's.
    fn relink(&mut self) {
        let Inner { tokens, orgs, .. } = self;
        let mut token_ids: HashMap<&str, Linked> = HashMap::new();
        let mut key_ids: HashMap<&str, Linked> = HashMap::new();
        let mut accounts: HashMap<&str, (usize, Linked)> = HashMap::new();
        for inv in orgs.values().filter_map(|o| o.inventory.as_ref()) {
            for t in inv.tokens.values() {
                token_ids.entry(&t.id).or_insert(Linked::from(t));
                if let Some(account) = &t.account_id {
                    let e = accounts.entry(account).or_insert((0, Linked::from(t)));
                    e.0 += 1;
                }
            }
            for k in inv.api_keys.values() {
                key_ids.entry(&k.id).or_insert(Linked::from(k));
            }
        }
        for entry in tokens.values_mut() {
            let c = &entry.meta.config;
            let Some(link) = c.provider.spec().inventory_link else {
                entry.meta.linked = None;
                continue;
            };
            let by_id = match link {
                InventoryLink::ApiKey => &key_ids,
                InventoryLink::ApiToken => &token_ids,
            };
            entry.meta.linked = match (&c.org_token_id, &c.expected_account_id) {
                (Some(id), _) => by_id.get(id.as_str()).copied(),
                (None, Some(account)) if link == InventoryLink::ApiToken => accounts
                    .get(account.as_str())
                    .filter(|(owned, _)| *owned == 1)
                    .map(|(_, linked)| *linked),
                (None, _) => None,
            };
        }
    }
}

/// What a recorded probe changed, for the one log line per state change.
#[derive(Debug, Clone)]
pub struct Transition {
    pub before: Health,
    pub after: Health,
    pub was_failing: bool,
    pub now_failing: bool,
}

#[derive(Debug, Default)]
pub struct Store {
    inner: RwLock<Inner>,
    version: AtomicU64,
    /// Bumped only by configuration-level changes (token/org set, reload, readiness).
    config_version: AtomicU64,
    next_generation: AtomicU64,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bumped on every change.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Bumped when the configuration changes (not by probe results). The metrics cache
    /// re-renders at once for these, and at most once a second for probe results.
    pub fn config_version(&self) -> u64 {
        self.config_version.load(Ordering::Acquire)
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut guard);
        self.version.fetch_add(1, Ordering::AcqRel);
        r
    }

    fn write_config<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let r = self.write(f);
        self.config_version.fetch_add(1, Ordering::AcqRel);
        r
    }

    /// Replaces the token set. Tokens in `reset` (new, or probe settings changed) start
    /// from a clean state with a new generation; others keep status and generation.
    /// Tokens not listed disappear. Returns each token's generation.
    pub fn set_tokens(
        &self,
        metas: Vec<TokenMeta>,
        reset: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, u64> {
        self.write_config(|inner| {
            let mut old = std::mem::take(&mut inner.tokens);
            let mut generations = BTreeMap::new();
            for meta in metas {
                let name = meta.name().to_string();
                let entry = match old.remove(&name) {
                    Some(mut e) if !reset(&name) => {
                        e.meta = meta;
                        e
                    }
                    _ => TokenEntry {
                        meta,
                        status: TokenStatus::default(),
                        generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
                    },
                };
                generations.insert(name.clone(), entry.generation);
                inner.tokens.insert(name, entry);
            }
            inner.relink();
            generations
        })
    }

    /// Replaces the organization set, like [`Store::set_tokens`]: organizations in `reset`
    /// (new, or settings changed) start without an inventory and with a new generation;
    /// the others keep theirs. Organizations not listed disappear with their inventory.
    pub fn set_orgs(
        &self,
        names: &[String],
        reset: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, u64> {
        self.write_config(|inner| {
            let mut old = std::mem::take(&mut inner.orgs);
            let mut generations = BTreeMap::new();
            for name in names {
                let entry = match old.remove(name) {
                    Some(e) if !reset(name) => e,
                    _ => OrgEntry {
                        generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
                        ..OrgEntry::default()
                    },
                };
                generations.insert(name.clone(), entry.generation);
                inner.orgs.insert(name.clone(), entry);
            }
            inner.relink();
            generations
        })
    }

    /// Records an inventory run: a complete listing replaces the organization's inventory;
    /// a failure keeps the last complete one. Ignored (None) when the organization was
    /// removed or changed since the run started.
    pub fn record_inventory(
        &self,
        org: &str,
        generation: u64,
        result: Result<Inventory, InventoryError>,
    ) -> Option<InventoryTransition> {
        let now = unix_now();
        self.write(|inner| {
            let entry = inner.orgs.get_mut(org)?;
            if entry.generation != generation {
                return None;
            }
            let before = entry.success;
            let ok = result.is_ok();
            match result {
                Ok(inventory) => {
                    entry.inventory = Some(inventory);
                    entry.success = Some(true);
                    entry.last_success = Some(now);
                    entry.last_error = None;
                }
                Err(e) => {
                    entry.success = Some(false);
                    entry.last_error = Some(e.to_string());
                }
            }
            if ok {
                inner.relink();
            }
            Some(InventoryTransition { before, after: ok })
        })
    }

    /// Records a finished probe. Ignored (returns None) when the token was removed or its
    /// settings changed since the probe started.
    pub fn record(
        &self,
        name: &str,
        generation: u64,
        probed: &Probed,
        duration: Duration,
    ) -> Option<Transition> {
        let finished_at = (unix_now() * 1000.0).round() / 1000.0; // milliseconds
        self.write(|inner| {
            let entry = inner.tokens.get_mut(name)?;
            if entry.generation != generation {
                return None;
            }
            let before = entry.status.health();
            let was_failing = entry.status.probe_success == Some(false);
            let interval = entry.meta.config.probe_interval;
            entry.status.apply(probed, finished_at, duration, interval);
            Some(Transition {
                before,
                after: entry.status.health(),
                was_failing,
                now_failing: entry.status.probe_success == Some(false),
            })
        })
    }

    pub fn set_ready(&self) {
        self.write_config(|inner| inner.exporter.ready = true);
    }

    /// `/-/ready` answers 503 again: the exporter can no longer do its job.
    pub fn set_unready(&self) {
        self.write_config(|inner| inner.exporter.ready = false);
    }

    pub fn record_reload(&self, ok: bool) {
        self.write_config(|inner| {
            inner.exporter.last_reload_successful = ok;
            if ok {
                inner.exporter.last_reload_success = Some(unix_now());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::ProbeError;
    use crate::providers::atlassian::inventory::List;
    use crate::providers::atlassian::{admin_key, jira};

    fn config(name: &str, f: impl FnOnce(&mut TokenConfig)) -> TokenMeta {
        let mut c = TokenConfig::for_tests(name, jira::PROVIDER);
        c.probe_interval = Duration::from_secs(60);
        f(&mut c);
        TokenMeta::new(Arc::new(c))
    }

    fn meta(name: &str) -> TokenMeta {
        config(name, |_| {})
    }

    fn probed(outcome: Outcome) -> Probed {
        Probed {
            outcome,
            facts: Facts::default(),
        }
    }

    #[test]
    fn errors_keep_the_last_conclusive_state() {
        let store = Store::new();
        let gens = store.set_tokens(vec![meta("a")], &|_| false);
        let g = gens["a"];
        let valid = probed(Outcome::Valid {
            account_id: Some("acc".into()),
        });
        store.record("a", g, &valid, Duration::from_millis(5));
        let err = probed(Outcome::Error(ProbeError::new(
            ErrorReason::Http5xx,
            "HTTP 503",
        )));
        let t = store
            .record("a", g, &err, Duration::from_millis(5))
            .unwrap();
        assert!(t.now_failing && !t.was_failing);
        let inner = store.read();
        let s = &inner.tokens["a"].status;
        assert_eq!(s.conclusive.map(|c| c.valid), Some(true));
        assert_eq!(s.probe_success, Some(false));
        assert_eq!(s.errors[ErrorReason::Http5xx.index()], 1);
        assert_eq!(s.results, [1, 0, 0, 0, 1]);
        assert_eq!(s.health(), Health::Valid);
    }

    fn listed(id: &str, account: &str, expires_at: Option<i64>) -> ListedToken {
        ListedToken {
            id: id.into(),
            label: "l".into(),
            status: "ALLOWED".into(),
            account_id: Some(account.into()),
            created_at: None,
            expires_at,
            last_active_at: None,
        }
    }

    fn inventory(tokens: &[(&str, &str, Option<i64>)], keys: &[(&str, i64)]) -> Inventory {
        Inventory {
            tokens: tokens
                .iter()
                .map(|&(id, acc, exp)| (id.to_string(), listed(id, acc, exp)))
                .collect(),
            api_keys: keys
                .iter()
                .map(|&(id, exp)| {
                    (
                        id.to_string(),
                        ListedKey {
                            id: id.into(),
                            label: "k".into(),
                            created_at: None,
                            expires_at: Some(exp),
                        },
                    )
                })
                .collect(),
            pages: 1,
        }
    }

    fn expiry(store: &Store, name: &str) -> (Option<i64>, ExpirySource) {
        store.read().tokens[name].expiry()
    }

    #[test]
    fn inventory_links_by_id_or_by_the_only_token_of_an_account() {
        let store = Store::new();
        let org = store.set_orgs(&["acme".to_string()], &|_| false)["acme"];
        let config_expiry = (Some(1_000), ExpirySource::Config);
        let with = |name: &str, f: &dyn Fn(&mut TokenConfig)| {
            config(name, |c| {
                (c.expires_at, c.expiry_source) = config_expiry;
                f(c);
            })
        };
        store.set_tokens(
            vec![
                with("by-id", &|m| m.org_token_id = Some("t1".into())),
                with("by-account", &|m| {
                    m.expected_account_id = Some("solo".into())
                }),
                with("ambiguous", &|m| m.expected_account_id = Some("duo".into())),
                with("no-expiry", &|m| m.org_token_id = Some("t-null".into())),
                with("admin", &|m| {
                    m.provider = admin_key::PROVIDER;
                    m.org_token_id = Some("k1".into());
                }),
                with("admin-on-user-token", &|m| {
                    m.provider = admin_key::PROVIDER;
                    m.org_token_id = Some("t1".into());
                }),
                with("unlinked", &|_| {}),
            ],
            &|_| false,
        );
        let inv = inventory(
            &[
                ("t1", "someone", Some(5_000)),
                ("t2", "solo", Some(6_000)),
                ("t3", "duo", Some(7_000)),
                ("t4", "duo", Some(8_000)),
                ("t-null", "other", None),
            ],
            &[("k1", 9_000)],
        );
        store.record_inventory("acme", org, Ok(inv));
        let linked = |t| (Some(t), ExpirySource::OrgInventory);
        assert_eq!(expiry(&store, "by-id"), linked(5_000), "inventory wins");
        assert_eq!(expiry(&store, "by-account"), linked(6_000));
        assert_eq!(expiry(&store, "ambiguous"), config_expiry);
        assert_eq!(expiry(&store, "no-expiry"), config_expiry);
        assert_eq!(expiry(&store, "admin"), linked(9_000));
        assert_eq!(expiry(&store, "admin-on-user-token"), config_expiry);
        assert_eq!(expiry(&store, "unlinked"), config_expiry);

        // A failed run keeps the last complete inventory and its links.
        let err = InventoryError::TooManyPages {
            list: List::ApiTokens,
            max: 1,
        };
        let t = store.record_inventory("acme", org, Err(err)).unwrap();
        assert_eq!((t.before, t.after), (Some(true), false));
        assert_eq!(expiry(&store, "by-id"), linked(5_000));
        assert_eq!(store.read().orgs["acme"].success, Some(false));

        // A reload keeps the link (tokens are re-set, the inventory is not).
        store.set_tokens(
            vec![with("by-id", &|m| m.org_token_id = Some("t1".into()))],
            &|_| false,
        );
        assert_eq!(expiry(&store, "by-id"), linked(5_000));

        // The entry disappears from a complete listing: back to the config's date.
        store.record_inventory("acme", org, Ok(inventory(&[], &[])));
        assert_eq!(expiry(&store, "by-id"), config_expiry);

        // Removing the organization drops its inventory; stale runs are ignored.
        store.record_inventory("acme", org, Ok(inventory(&[("t1", "x", Some(1))], &[])));
        assert_eq!(expiry(&store, "by-id"), linked(1));
        store.set_orgs(&[], &|_| false);
        assert_eq!(expiry(&store, "by-id"), config_expiry);
        assert!(store
            .record_inventory("acme", org, Ok(inventory(&[], &[])))
            .is_none());
    }

    #[test]
    fn stale_generations_and_removed_tokens_are_ignored() {
        let store = Store::new();
        let g1 = store.set_tokens(vec![meta("a")], &|_| false)["a"];
        let g2 = store.set_tokens(vec![meta("a")], &|_| true)["a"];
        assert_ne!(g1, g2);
        let o = probed(Outcome::Rejected { status: 401 });
        assert!(store.record("a", g1, &o, Duration::ZERO).is_none());
        assert!(store.record("a", g2, &o, Duration::ZERO).is_some());
        store.set_tokens(vec![], &|_| false);
        assert!(store.record("a", g2, &o, Duration::ZERO).is_none());
        assert!(store.read().tokens.is_empty());
    }

    #[test]
    fn a_provider_reported_expiry_wins_and_survives_errors() {
        let store = Store::new();
        let m = config("gl", |c| {
            (c.expires_at, c.expiry_source) = (Some(1_000), ExpirySource::Config);
        });
        let g = store.set_tokens(vec![m], &|_| false)["gl"];
        assert_eq!(expiry(&store, "gl"), (Some(1_000), ExpirySource::Config));
        let reported = Probed {
            outcome: Outcome::Valid { account_id: None },
            facts: Facts {
                expires_at: Some(2_000),
                ..Facts::default()
            },
        };
        store.record("gl", g, &reported, Duration::ZERO);
        assert_eq!(expiry(&store, "gl"), (Some(2_000), ExpirySource::Provider));
        // A probe that reports nothing (an outage) keeps what the vendor said last.
        let err = probed(Outcome::Error(ProbeError::new(ErrorReason::Timeout, "t")));
        store.record("gl", g, &err, Duration::ZERO);
        assert_eq!(expiry(&store, "gl"), (Some(2_000), ExpirySource::Provider));
        // So does a refusal (the expired token's expiry stays known).
        store.record(
            "gl",
            g,
            &probed(Outcome::Rejected { status: 401 }),
            Duration::ZERO,
        );
        assert_eq!(expiry(&store, "gl"), (Some(2_000), ExpirySource::Provider));
        // A token the vendor authenticates without an expiry (rotated to one that never
        // expires): the configured expiry applies again.
        store.record(
            "gl",
            g,
            &probed(Outcome::Valid { account_id: None }),
            Duration::ZERO,
        );
        assert_eq!(expiry(&store, "gl"), (Some(1_000), ExpirySource::Config));
        assert!(store.read().tokens["gl"].scopes().is_empty());
    }
}
