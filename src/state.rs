//! The last known state of every token: written by the scheduler, read by the metrics
//! renderer and the status page. The single source of truth; nothing else keeps state.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ExpirySource, TokenConfig};
use crate::inventory::{Inventory, InventoryError};
use crate::provider::{ErrorReason, Outcome, OutcomeKind, Provider};

/// What the config says about a token, as the metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMeta {
    pub name: String,
    pub provider: Provider,
    pub site: String,
    pub labels: BTreeMap<String, String>,
    /// The effective expiry: from a linked organization inventory entry when there is one
    /// (inventory wins), else `config_expiry`. Kept current by the [`Store`].
    pub expires_at: Option<i64>,
    pub expiry_source: ExpirySource,
    /// The expiry the config gives (`expires_at`, or `created_at` + lifetime).
    pub config_expiry: (Option<i64>, ExpirySource),
    /// How the token is linked to an organization inventory entry (SPEC §5).
    pub org_token_id: Option<String>,
    pub expected_account_id: Option<String>,
    pub revoked_at: Option<i64>,
    pub probe_interval: Duration,
    /// An organization's implicit `{org}-admin-key` token rather than a configured one.
    pub implicit: bool,
}

impl From<&TokenConfig> for TokenMeta {
    fn from(t: &TokenConfig) -> Self {
        Self {
            name: t.name.clone(),
            provider: t.provider,
            site: t.site.as_str().trim_end_matches('/').to_string(),
            labels: t.labels.clone(),
            expires_at: t.expires_at,
            expiry_source: t.expiry_source,
            config_expiry: (t.expires_at, t.expiry_source),
            org_token_id: t.org_token_id.clone(),
            expected_account_id: t.expected_account_id.clone(),
            revoked_at: t.revoked_at,
            probe_interval: t.probe_interval,
            implicit: false,
        }
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

    fn apply(
        &mut self,
        outcome: &Outcome,
        finished_at: f64,
        duration: Duration,
        interval: Duration,
    ) {
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
    /// Recomputes every token's effective expiry from the organizations' inventories
    /// (SPEC §5): a token is linked to the entry whose id equals its `org_token_id` (admin
    /// API keys for `atlassian_admin` tokens, user API tokens otherwise) or, without one,
    /// to the only user API token its `expected_account_id` owns. A linked entry's
    /// `expiresAt` wins over the config; a linked entry without one leaves the config's.
    fn relink(&mut self) {
        let Inner { tokens, orgs, .. } = self;
        let mut token_ids: HashMap<&str, Option<i64>> = HashMap::new();
        let mut key_ids: HashMap<&str, Option<i64>> = HashMap::new();
        let mut accounts: HashMap<&str, (usize, Option<i64>)> = HashMap::new();
        for inv in orgs.values().filter_map(|o| o.inventory.as_ref()) {
            for t in inv.tokens.values() {
                token_ids.entry(&t.id).or_insert(t.expires_at);
                if let Some(account) = &t.account_id {
                    let e = accounts.entry(account).or_insert((0, t.expires_at));
                    e.0 += 1;
                }
            }
            for k in inv.api_keys.values() {
                key_ids.entry(&k.id).or_insert(k.expires_at);
            }
        }
        for entry in tokens.values_mut() {
            let m = &mut entry.meta;
            let linked = match (&m.org_token_id, &m.expected_account_id) {
                (Some(id), _) if m.provider == Provider::AtlassianAdmin => {
                    key_ids.get(id.as_str()).copied().flatten()
                }
                (Some(id), _) => token_ids.get(id.as_str()).copied().flatten(),
                (None, Some(account)) => accounts
                    .get(account.as_str())
                    .filter(|(owned, _)| *owned == 1)
                    .and_then(|(_, expires_at)| *expires_at),
                (None, None) => None,
            };
            (m.expires_at, m.expiry_source) = match linked {
                Some(t) => (Some(t), ExpirySource::OrgInventory),
                None => m.config_expiry,
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

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
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
                let name = meta.name.clone();
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
        outcome: &Outcome,
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
            entry
                .status
                .apply(outcome, finished_at, duration, entry.meta.probe_interval);
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
    use crate::http::FetchError;

    fn meta(name: &str) -> TokenMeta {
        TokenMeta {
            name: name.into(),
            provider: Provider::Jira,
            site: "https://x".into(),
            labels: BTreeMap::new(),
            expires_at: None,
            expiry_source: ExpirySource::None,
            config_expiry: (None, ExpirySource::None),
            org_token_id: None,
            expected_account_id: None,
            revoked_at: None,
            probe_interval: Duration::from_secs(60),
            implicit: false,
        }
    }

    #[test]
    fn errors_keep_the_last_conclusive_state() {
        let store = Store::new();
        let gens = store.set_tokens(vec![meta("a")], &|_| false);
        let g = gens["a"];
        let valid = Outcome::Valid {
            account_id: Some("acc".into()),
        };
        store.record("a", g, &valid, Duration::from_millis(5));
        let err = Outcome::Error(FetchError::new(ErrorReason::Http5xx, "HTTP 503"));
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

    fn listed(id: &str, account: &str, expires_at: Option<i64>) -> crate::inventory::ListedToken {
        crate::inventory::ListedToken {
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
                        crate::inventory::ListedKey {
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
        let inner = store.read();
        let m = &inner.tokens[name].meta;
        (m.expires_at, m.expiry_source)
    }

    #[test]
    fn inventory_links_by_id_or_by_the_only_token_of_an_account() {
        let store = Store::new();
        let org = store.set_orgs(&["acme".to_string()], &|_| false)["acme"];
        let config_expiry = (Some(1_000), ExpirySource::Config);
        let with = |name: &str, f: &dyn Fn(&mut TokenMeta)| {
            let mut m = meta(name);
            (m.expires_at, m.expiry_source) = config_expiry;
            m.config_expiry = config_expiry;
            f(&mut m);
            m
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
                    m.provider = Provider::AtlassianAdmin;
                    m.org_token_id = Some("k1".into());
                }),
                with("admin-on-user-token", &|m| {
                    m.provider = Provider::AtlassianAdmin;
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
            list: crate::inventory::List::ApiTokens,
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
        let o = Outcome::Rejected { status: 401 };
        assert!(store.record("a", g1, &o, Duration::ZERO).is_none());
        assert!(store.record("a", g2, &o, Duration::ZERO).is_some());
        store.set_tokens(vec![], &|_| false);
        assert!(store.record("a", g2, &o, Duration::ZERO).is_none());
        assert!(store.read().tokens.is_empty());
    }
}
