//! The last known state of every token: written by the scheduler, read by the metrics
//! renderer and the status page. The single source of truth; nothing else keeps state.
//!
//! It also keeps each organization's inventory, one list at a time (README "Organization
//! inventory"), links configured tokens to inventory entries, and notices when a linked
//! entry is revoked (`BLOCKED`, or gone from a complete listing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use crate::config::{ExpirySource, TokenConfig};
use crate::probe::{ErrorReason, Facts, Outcome, OutcomeKind};
use crate::providers::atlassian::inventory::{
    InventoryError, InventoryRun, List, ListedKey, ListedToken,
};
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

/// What the aggregates and the revocation rule need of a listed entry.
pub trait ListedEntry {
    /// `ALLOWED`, `BLOCKED`, …; empty for admin API keys, which have no status.
    fn status(&self) -> &str;
    fn expires_at(&self) -> Option<i64>;
}

impl ListedEntry for ListedToken {
    fn status(&self) -> &str {
        &self.status
    }
    fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
}

impl ListedEntry for ListedKey {
    fn status(&self) -> &str {
        ""
    }
    fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }
}

/// The entries of one status, counted for `apitoken_org_tokens`: their expiry times
/// sorted, so that a render buckets them by the time of the scrape with a few binary
/// searches instead of a pass over every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Unix seconds, ascending.
    pub expiries: Vec<i64>,
    /// Entries without an expiry.
    pub never: u64,
}

/// One complete listing of one list, as the last run that completed it saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing<T> {
    pub entries: BTreeMap<String, T>,
    /// Unix time the listing run completed.
    pub completed_at: f64,
    /// The entries by status (for admin API keys, the one status `""`).
    pub counts: BTreeMap<String, StatusCounts>,
}

impl<T: ListedEntry> Listing<T> {
    /// Counts the entries (built before the state's lock is taken).
    pub fn new(entries: BTreeMap<String, T>, completed_at: f64) -> Self {
        let mut counts: BTreeMap<String, StatusCounts> = BTreeMap::new();
        for e in entries.values() {
            let c = match counts.get_mut(e.status()) {
                Some(c) => c,
                None => counts.entry(e.status().to_string()).or_default(),
            };
            match e.expires_at() {
                Some(t) => c.expiries.push(t),
                None => c.never += 1,
            }
        }
        for c in counts.values_mut() {
            c.expiries.sort_unstable();
        }
        Self {
            entries,
            completed_at,
            counts,
        }
    }
}

/// One list of one organization: its last *complete* listing (a failed run never replaces
/// it with a partial one) and the health of its last run. The listing is shared (`Arc`):
/// a render's snapshot of the state holds it without copying 250,000 entries.
#[derive(Debug, Clone)]
pub struct ListState<T> {
    pub listing: Option<Arc<Listing<T>>>,
    /// Whether the last run completed this list; None until the first run ended.
    pub success: Option<bool>,
    /// Why the last run failed (cleared by a complete one).
    pub last_error: Option<String>,
}

impl<T> Default for ListState<T> {
    fn default() -> Self {
        Self {
            listing: None,
            success: None,
            last_error: None,
        }
    }
}

impl<T> ListState<T> {
    /// Unix time the last complete listing arrived.
    pub fn last_success(&self) -> Option<f64> {
        self.listing.as_ref().map(|l| l.completed_at)
    }

    /// Applies one run's result; returns the replaced listing (dropped by the caller,
    /// outside the lock: 250,000 entries take a while to free).
    fn apply(
        &mut self,
        list: List,
        result: Result<Listing<T>, InventoryError>,
    ) -> (ListTransition, Option<Arc<Listing<T>>>) {
        let before = self.success;
        let (after, old) = match result {
            Ok(listing) => {
                self.last_error = None;
                (true, self.listing.replace(Arc::new(listing)))
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                (false, None)
            }
        };
        self.success = Some(after);
        (
            ListTransition {
                list,
                before,
                after,
            },
            old,
        )
    }
}

/// One organization's inventory state: each list on its own.
#[derive(Debug, Clone)]
pub struct OrgEntry {
    pub api_tokens: ListState<ListedToken>,
    pub api_keys: ListState<ListedKey>,
    /// `organizations[].per_token_series`: export one series per listed entry (else only
    /// the aggregates and the list health).
    pub per_token_series: bool,
    /// Bumped when the organization's settings change; results of older runs are dropped.
    pub generation: u64,
}

impl OrgEntry {
    fn new(generation: u64, per_token_series: bool) -> Self {
        Self {
            api_tokens: ListState::default(),
            api_keys: ListState::default(),
            per_token_series,
            generation,
        }
    }

    /// The health of one list: (last run completed, last complete listing's time).
    pub fn health(&self, list: List) -> (Option<bool>, Option<f64>) {
        match list {
            List::ApiTokens => (self.api_tokens.success, self.api_tokens.last_success()),
            List::ApiKeys => (self.api_keys.success, self.api_keys.last_success()),
        }
    }

    /// The entry `id` of `list`, if its last complete listing has it.
    fn find(&self, list: List, id: &str) -> Option<Found<'_>> {
        match list {
            List::ApiTokens => {
                let l = self.api_tokens.listing.as_ref()?;
                l.entries.get(id).map(|t| Found::token(t, l.completed_at))
            }
            List::ApiKeys => {
                let l = self.api_keys.listing.as_ref()?;
                l.entries.get(id).map(|k| Found {
                    id: &k.id,
                    linked: Linked::from(k),
                    status: "",
                    completed_at: l.completed_at,
                })
            }
        }
    }

    /// (completion time, whether it lists `id`) of the last complete listing of `list`.
    fn lists(&self, list: List, id: &str) -> Option<(f64, bool)> {
        match list {
            List::ApiTokens => self
                .api_tokens
                .listing
                .as_ref()
                .map(|l| (l.completed_at, l.entries.contains_key(id))),
            List::ApiKeys => self
                .api_keys
                .listing
                .as_ref()
                .map(|l| (l.completed_at, l.entries.contains_key(id))),
        }
    }
}

/// An organization as [`Store::set_orgs`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct OrgSettings<'a> {
    pub name: &'a str,
    pub per_token_series: bool,
}

impl<'a> From<&'a str> for OrgSettings<'a> {
    /// An organization with the default settings.
    fn from(name: &'a str) -> Self {
        OrgSettings {
            name,
            per_token_series: true,
        }
    }
}

/// How a recorded run changed one list's health, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListTransition {
    pub list: List,
    pub before: Option<bool>,
    pub after: bool,
}

/// How a recorded inventory run changed an organization's lists, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryTransition {
    pub api_tokens: ListTransition,
    pub api_keys: ListTransition,
}

/// An inventory entry a configured token links to.
#[derive(Clone, Copy)]
struct Found<'a> {
    id: &'a str,
    linked: Linked,
    status: &'a str,
    completed_at: f64,
}

impl<'a> Found<'a> {
    fn token(t: &'a ListedToken, completed_at: f64) -> Self {
        Found {
            id: &t.id,
            linked: Linked::from(t),
            status: &t.status,
            completed_at,
        }
    }

    /// A status other than `ALLOWED` is a revocation (an absent status is not).
    fn revoked(&self) -> bool {
        !self.status.is_empty() && !self.status.eq_ignore_ascii_case("ALLOWED")
    }
}

/// What a configured token links to an inventory entry by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKey {
    /// `org_token_id`.
    Id(String),
    /// `expected_account_id`, owning exactly one user API token.
    Account(String),
}

/// Where a token's link was last seen: an entry of a complete listing.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    org: String,
    list: List,
    id: String,
    /// When that listing completed.
    completed_at: f64,
}

/// What the inventories said about a configured token over time (README "Organization
/// inventory", "Revocation from the inventory"). Kept across reloads while the token's
/// probe settings and its link key stay the same.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InventoryTrack {
    key: Option<LinkKey>,
    seen: Option<Seen>,
    /// Unix time of the first complete listing that showed the linked entry revoked. Once
    /// set it stays (Atlassian revocations are permanent), even if the entry reappears.
    pub revoked_at: Option<f64>,
}

impl InventoryTrack {
    /// Follows one relink: `found` is the entry the token links to now (if any);
    /// `owned_elsewhere` tells, for an account link, whether the account still owns any
    /// listed token (then a vanished entry is ambiguous, not a revocation).
    fn follow(
        &mut self,
        key: Option<LinkKey>,
        list: List,
        found: Option<(&str, &Found<'_>)>,
        orgs: &BTreeMap<String, OrgEntry>,
        owned_elsewhere: bool,
    ) {
        if self.key != key {
            *self = InventoryTrack {
                key,
                ..InventoryTrack::default()
            };
        }
        if let Some((org, f)) = found {
            if f.revoked() {
                self.revoke(f.completed_at);
            }
            self.seen = Some(Seen {
                org: org.to_string(),
                list,
                id: f.id.to_string(),
                completed_at: f.completed_at,
            });
            return;
        }
        // Gone? Only a *later* complete listing of the list that showed it can say so.
        let Some(seen) = &self.seen else { return };
        let Some((completed_at, listed)) = orgs
            .get(&seen.org)
            .and_then(|o| o.lists(seen.list, &seen.id))
        else {
            return;
        };
        if completed_at > seen.completed_at && !listed && !owned_elsewhere {
            self.revoke(completed_at);
        }
    }

    fn revoke(&mut self, at: f64) {
        self.revoked_at.get_or_insert(at);
    }
}

/// Where `apitoken_revoked_timestamp_seconds` comes from (its `source` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationSource {
    Config,
    OrgInventory,
}

impl RevocationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationSource::Config => "config",
            RevocationSource::OrgInventory => "org_inventory",
        }
    }
}

/// How long a revoked token kept working: the state remembers whether a valid probe
/// followed the revocation time, and the first conclusive probe after that which was not
/// valid (README "Metrics", `apitoken_revocation_lag_seconds`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RevocationLag {
    /// The revocation time this tracks (a changed `revoked_at` starts over).
    revoked_at: Option<f64>,
    saw_valid: bool,
    lag: Option<f64>,
}

impl RevocationLag {
    /// A probe finished at `at`; `valid`: its conclusive verdict (None for an error).
    fn observe(&mut self, revoked_at: f64, at: f64, valid: Option<bool>) {
        if self.revoked_at != Some(revoked_at) {
            *self = RevocationLag {
                revoked_at: Some(revoked_at),
                ..RevocationLag::default()
            };
        }
        if at < revoked_at || self.lag.is_some() {
            return;
        }
        match valid {
            Some(true) => self.saw_valid = true,
            Some(false) if self.saw_valid => {
                self.lag = Some(((at - revoked_at) * 1000.0).round() / 1000.0);
            }
            _ => {}
        }
    }

    /// The lag for revocation time `revoked_at`, once known.
    pub fn get(&self, revoked_at: f64) -> Option<f64> {
        self.lag.filter(|_| self.revoked_at == Some(revoked_at))
    }
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
    /// Whether (and how long) the token kept working after its revocation.
    pub revocation_lag: RevocationLag,
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
    /// What the organization inventories said about the token over time.
    pub inventory: InventoryTrack,
    /// Bumped when the token's probe settings change; results of older probes are dropped.
    pub generation: u64,
}

impl TokenEntry {
    /// When the token was revoked, and who says so: the config's `revoked_at` wins over a
    /// revocation seen in an organization inventory.
    pub fn revoked(&self) -> Option<(f64, RevocationSource)> {
        match (self.meta.config.revoked_at, self.inventory.revoked_at) {
            (Some(t), _) => Some((t as f64, RevocationSource::Config)),
            (None, Some(t)) => Some((t, RevocationSource::OrgInventory)),
            (None, None) => None,
        }
    }

    /// Seconds from the revocation to the first conclusive probe that was not valid, for a
    /// token seen valid after its revocation (absent until then, or when it never was).
    pub fn revocation_lag(&self) -> Option<f64> {
        let (at, _) = self.revoked()?;
        self.status.revocation_lag.get(at)
    }

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

/// The state. Tokens are shared (`Arc`), like the organizations' listings, so that
/// [`Store::snapshot`] copies pointers, not entries: a render works on a snapshot, outside
/// the lock, and a probe result written meanwhile copies only its own entry
/// (`Arc::make_mut`) while the snapshot still holds the old one.
#[derive(Debug, Default, Clone)]
pub struct Inner {
    pub tokens: BTreeMap<String, Arc<TokenEntry>>,
    pub orgs: BTreeMap<String, OrgEntry>,
    pub exporter: ExporterStatus,
}

impl Inner {
    /// Re-links every token to the organizations' inventories (README "Organization
    /// inventory"): a token is linked to the entry whose id equals its `org_token_id`, in
    /// the list its provider declares (admin API keys for `atlassian_admin`, user API
    /// tokens otherwise), or, without one, to the only user API token its
    /// `expected_account_id` owns. A linked entry without an expiry leaves the config's.
    ///
    /// Then the revocation rule: a linked entry whose status is not `ALLOWED`, or an entry
    /// the token was linked to in an earlier complete listing that a later complete
    /// listing of the same list no longer has (for an account link: and the account owns
    /// no listed token any more), revokes the token as of that listing's completion.
    ///
    /// Lookups go by id in each listing, and accounts are counted only for the accounts
    /// configured tokens name, so no index of a 250,000-entry listing is built here.
    fn relink(&mut self) {
        let Inner { tokens, orgs, .. } = self;
        let wanted: HashSet<&str> = tokens
            .values()
            .filter_map(|e| match link_key(&e.meta.config) {
                Some((List::ApiTokens, LinkKey::Account(_))) => {
                    e.meta.config.expected_account_id.as_deref()
                }
                _ => None,
            })
            .collect();
        // account -> (tokens it owns, the first one and its organization)
        let mut accounts: HashMap<&str, (usize, &str, Found<'_>)> = HashMap::new();
        if !wanted.is_empty() {
            for (org, o) in orgs.iter() {
                let Some(l) = &o.api_tokens.listing else {
                    continue;
                };
                for t in l.entries.values() {
                    let Some(account) = t.account_id.as_deref().filter(|a| wanted.contains(a))
                    else {
                        continue;
                    };
                    accounts
                        .entry(account)
                        .and_modify(|e| e.0 += 1)
                        .or_insert_with(|| (1, org.as_str(), Found::token(t, l.completed_at)));
                }
            }
        }
        for entry in tokens.values_mut() {
            let entry = Arc::make_mut(entry);
            let Some((list, key)) = link_key(&entry.meta.config) else {
                entry.meta.linked = None;
                entry.inventory = InventoryTrack::default();
                continue;
            };
            let (found, owned_elsewhere) = match &key {
                LinkKey::Id(id) => (
                    orgs.iter()
                        .find_map(|(name, o)| o.find(list, id).map(|f| (name.as_str(), f))),
                    false,
                ),
                LinkKey::Account(account) => match accounts.get(account.as_str()) {
                    Some((1, org, f)) => (Some((*org, *f)), false),
                    Some(_) => (None, true),
                    None => (None, false),
                },
            };
            entry.meta.linked = found.as_ref().map(|(_, f)| f.linked);
            let found = found.as_ref().map(|(org, f)| (*org, f));
            entry
                .inventory
                .follow(Some(key), list, found, orgs, owned_elsewhere);
        }
    }
}

/// Which list a token links to and by what, if it links at all.
fn link_key(c: &TokenConfig) -> Option<(List, LinkKey)> {
    let list = match c.provider.spec().inventory_link? {
        InventoryLink::ApiKey => List::ApiKeys,
        InventoryLink::ApiToken => List::ApiTokens,
    };
    match (&c.org_token_id, &c.expected_account_id) {
        (Some(id), _) => Some((list, LinkKey::Id(id.clone()))),
        (None, Some(account)) if list == List::ApiTokens => {
            Some((list, LinkKey::Account(account.clone())))
        }
        _ => None,
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

    /// A copy of the state to render from after the lock is released: the token entries
    /// and listings are shared, so this costs a map of pointers (at 10,000 tokens well
    /// under a millisecond), and probe results are written while a render runs.
    pub fn snapshot(&self) -> Inner {
        self.read().clone()
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
                        Arc::make_mut(&mut e).meta = meta;
                        e
                    }
                    _ => Arc::new(TokenEntry {
                        meta,
                        status: TokenStatus::default(),
                        inventory: InventoryTrack::default(),
                        generation: self.next_generation.fetch_add(1, Ordering::Relaxed),
                    }),
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
    /// the others keep theirs (and take the new `per_token_series`). Organizations not
    /// listed disappear with their inventory.
    pub fn set_orgs(
        &self,
        orgs: &[OrgSettings<'_>],
        reset: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, u64> {
        let mut dropped = Vec::new();
        let generations = self.write_config(|inner| {
            let mut old = std::mem::take(&mut inner.orgs);
            let mut generations = BTreeMap::new();
            for org in orgs {
                let mut entry = match old.remove(org.name) {
                    Some(e) if !reset(org.name) => e,
                    other => {
                        dropped.extend(other);
                        OrgEntry::new(
                            self.next_generation.fetch_add(1, Ordering::Relaxed),
                            org.per_token_series,
                        )
                    }
                };
                entry.per_token_series = org.per_token_series;
                generations.insert(org.name.to_string(), entry.generation);
                inner.orgs.insert(org.name.to_string(), entry);
            }
            dropped.extend(old.into_values());
            inner.relink();
            generations
        });
        drop(dropped);
        generations
    }

    /// Records an inventory run, list by list: a complete list replaces that list's
    /// listing; a failed one keeps its last complete listing. Ignored (None) when the
    /// organization was removed or changed since the run started.
    pub fn record_inventory(
        &self,
        org: &str,
        generation: u64,
        run: InventoryRun,
    ) -> Option<InventoryTransition> {
        let now = unix_now();
        // Counting and sorting happen before the lock is taken.
        let tokens = run.api_tokens.map(|e| Listing::new(e, now));
        let keys = run.api_keys.map(|e| Listing::new(e, now));
        let (transition, replaced) = self.write(|inner| {
            let entry = inner.orgs.get_mut(org)?;
            if entry.generation != generation {
                return None;
            }
            let (api_tokens, old_tokens) = entry.api_tokens.apply(List::ApiTokens, tokens);
            let (api_keys, old_keys) = entry.api_keys.apply(List::ApiKeys, keys);
            if api_tokens.after || api_keys.after {
                inner.relink();
            }
            Some((
                InventoryTransition {
                    api_tokens,
                    api_keys,
                },
                (old_tokens, old_keys),
            ))
        })?;
        drop(replaced);
        Some(transition)
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
            // Copies the entry only while a render's snapshot still holds it.
            let entry = Arc::make_mut(entry);
            let before = entry.status.health();
            let was_failing = entry.status.probe_success == Some(false);
            let interval = entry.meta.config.probe_interval;
            entry.status.apply(probed, finished_at, duration, interval);
            if let Some((revoked_at, _)) = entry.revoked() {
                let valid = match probed.outcome {
                    Outcome::Error(_) => None,
                    _ => entry.status.conclusive.map(|c| c.valid),
                };
                entry
                    .status
                    .revocation_lag
                    .observe(revoked_at, finished_at, valid);
            }
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

    fn inventory(tokens: &[(&str, &str, Option<i64>)], keys: &[(&str, i64)]) -> InventoryRun {
        InventoryRun {
            api_tokens: Ok(tokens
                .iter()
                .map(|&(id, acc, exp)| (id.to_string(), listed(id, acc, exp)))
                .collect()),
            api_keys: Ok(keys
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
                .collect()),
            token_pages: 1,
            key_pages: 1,
        }
    }

    fn org(name: &str) -> OrgSettings<'_> {
        OrgSettings {
            name,
            per_token_series: true,
        }
    }

    fn expiry(store: &Store, name: &str) -> (Option<i64>, ExpirySource) {
        store.read().tokens[name].expiry()
    }

    #[test]
    fn inventory_links_by_id_or_by_the_only_token_of_an_account() {
        let store = Store::new();
        let org = store.set_orgs(&[org("acme")], &|_| false)["acme"];
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
                with("three", &|m| m.expected_account_id = Some("trio".into())),
                // An admin key links only by id: an account owns user tokens, not keys.
                with("admin-by-account", &|m| {
                    m.provider = admin_key::PROVIDER;
                    m.expected_account_id = Some("solo".into());
                }),
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
                ("t5", "trio", Some(8_100)),
                ("t6", "trio", Some(8_200)),
                ("t7", "trio", Some(8_300)),
                ("t-null", "other", None),
            ],
            &[("k1", 9_000)],
        );
        store.record_inventory("acme", org, inv);
        let linked = |t| (Some(t), ExpirySource::OrgInventory);
        assert_eq!(expiry(&store, "by-id"), linked(5_000), "inventory wins");
        assert_eq!(expiry(&store, "by-account"), linked(6_000));
        assert_eq!(expiry(&store, "ambiguous"), config_expiry);
        assert_eq!(
            expiry(&store, "three"),
            config_expiry,
            "three tokens: ambiguous too"
        );
        assert_eq!(expiry(&store, "admin-by-account"), config_expiry);
        assert!(store.read().tokens["admin-by-account"]
            .meta
            .linked
            .is_none());
        assert_eq!(expiry(&store, "no-expiry"), config_expiry);
        assert_eq!(expiry(&store, "admin"), linked(9_000));
        assert_eq!(expiry(&store, "admin-on-user-token"), config_expiry);
        assert_eq!(expiry(&store, "unlinked"), config_expiry);

        // A failed run keeps the last complete inventory and its links.
        let err = InventoryError::TooManyPages {
            list: List::ApiTokens,
            max: 1,
        };
        let t = store
            .record_inventory("acme", org, InventoryRun::failed(err))
            .unwrap();
        assert_eq!(
            (t.api_tokens.before, t.api_tokens.after),
            (Some(true), false)
        );
        assert_eq!(expiry(&store, "by-id"), linked(5_000));
        assert_eq!(store.read().orgs["acme"].api_tokens.success, Some(false));

        // A reload keeps the link (tokens are re-set, the inventory is not).
        store.set_tokens(
            vec![with("by-id", &|m| m.org_token_id = Some("t1".into()))],
            &|_| false,
        );
        assert_eq!(expiry(&store, "by-id"), linked(5_000));

        // The entry disappears from a complete listing: back to the config's date.
        store.record_inventory("acme", org, inventory(&[], &[]));
        assert_eq!(expiry(&store, "by-id"), config_expiry);

        // Removing the organization drops its inventory; stale runs are ignored.
        store.record_inventory("acme", org, inventory(&[("t1", "x", Some(1))], &[]));
        assert_eq!(expiry(&store, "by-id"), linked(1));
        store.set_orgs(&[], &|_| false);
        assert_eq!(expiry(&store, "by-id"), config_expiry);
        assert!(store
            .record_inventory("acme", org, inventory(&[], &[]))
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

    fn with_status(mut run: InventoryRun, id: &str, status: &str) -> InventoryRun {
        if let Ok(tokens) = &mut run.api_tokens {
            tokens.get_mut(id).unwrap().status = status.into();
        }
        run
    }

    fn revoked(store: &Store, name: &str) -> Option<(f64, RevocationSource)> {
        store.read().tokens[name].revoked()
    }

    fn refused(list: List) -> InventoryError {
        InventoryError::Refused {
            list,
            page: 1,
            status: 403,
        }
    }

    #[test]
    fn each_list_is_published_on_its_own() {
        let store = Store::new();
        let g = store.set_orgs(&[org("acme")], &|_| false)["acme"];
        store.set_tokens(
            vec![config("admin", |c| {
                c.provider = admin_key::PROVIDER;
                c.org_token_id = Some("k1".into());
            })],
            &|_| false,
        );
        // A key from before the scope split: API tokens listed, API keys refused.
        let mut run = inventory(&[("t1", "a", Some(5_000))], &[]);
        run.api_keys = Err(refused(List::ApiKeys));
        let t = store.record_inventory("acme", g, run).unwrap();
        assert_eq!((t.api_tokens.after, t.api_keys.after), (true, false));
        {
            let inner = store.read();
            let o = &inner.orgs["acme"];
            assert_eq!(o.health(List::ApiTokens).0, Some(true));
            assert!(o.health(List::ApiTokens).1.is_some());
            assert_eq!(o.health(List::ApiKeys), (Some(false), None));
            assert!(o
                .api_keys
                .last_error
                .as_deref()
                .unwrap()
                .contains("read:keys:admin"));
            let counts = &o.api_tokens.listing.as_ref().unwrap().counts;
            assert_eq!(counts["ALLOWED"].expiries, vec![5_000]);
        }
        // Now the keys arrive and the tokens fail: each keeps or takes its own state.
        let mut run = inventory(&[], &[("k1", 9_000)]);
        run.api_tokens = Err(refused(List::ApiTokens));
        let t = store.record_inventory("acme", g, run).unwrap();
        assert_eq!(t.api_keys.before, Some(false));
        assert_eq!((t.api_tokens.after, t.api_keys.after), (false, true));
        let inner = store.read();
        let o = &inner.orgs["acme"];
        assert_eq!(
            o.api_tokens.listing.as_ref().unwrap().entries.len(),
            1,
            "kept"
        );
        assert_eq!(o.api_tokens.success, Some(false));
        assert_eq!(
            o.api_keys.listing.as_ref().unwrap().counts[""].expiries,
            vec![9_000]
        );
        assert_eq!(
            inner.tokens["admin"].expiry(),
            (Some(9_000), ExpirySource::OrgInventory)
        );
    }

    #[test]
    fn a_blocked_entry_revokes_from_its_first_listing_and_the_config_wins() {
        let store = Store::new();
        let g = store.set_orgs(&[org("acme")], &|_| false)["acme"];
        store.set_tokens(
            vec![
                config("svc", |c| c.org_token_id = Some("t1".into())),
                config("conf", |c| {
                    c.org_token_id = Some("t2".into());
                    c.revoked_at = Some(1_000);
                }),
            ],
            &|_| false,
        );
        let listing = || inventory(&[("t1", "a", None), ("t2", "b", None)], &[]);
        store.record_inventory("acme", g, listing());
        assert_eq!(revoked(&store, "svc"), None);
        assert_eq!(
            revoked(&store, "conf"),
            Some((1_000.0, RevocationSource::Config))
        );

        let before = unix_now();
        store.record_inventory(
            "acme",
            g,
            with_status(with_status(listing(), "t1", "BLOCKED"), "t2", "BLOCKED"),
        );
        let (at, source) = revoked(&store, "svc").unwrap();
        assert_eq!(source, RevocationSource::OrgInventory);
        let completed = store.read().orgs["acme"].api_tokens.last_success().unwrap();
        assert_eq!(at, completed, "the time that listing completed");
        assert!(at >= before);
        // The config's revoked_at wins, though the inventory saw it too.
        assert_eq!(
            revoked(&store, "conf"),
            Some((1_000.0, RevocationSource::Config))
        );
        assert!(store.read().tokens["conf"].inventory.revoked_at.is_some());

        // Later listings keep the first time, even one that shows it ALLOWED again.
        std::thread::sleep(Duration::from_millis(5));
        store.record_inventory("acme", g, with_status(listing(), "t2", "BLOCKED"));
        store.record_inventory("acme", g, listing());
        assert_eq!(
            revoked(&store, "svc"),
            Some((at, RevocationSource::OrgInventory))
        );
        // A reload that keeps the token keeps it; one that changes its link forgets it.
        store.set_tokens(
            vec![config("svc", |c| c.org_token_id = Some("t1".into()))],
            &|_| false,
        );
        assert_eq!(
            revoked(&store, "svc"),
            Some((at, RevocationSource::OrgInventory))
        );
        store.set_tokens(
            vec![config("svc", |c| c.org_token_id = Some("t2".into()))],
            &|_| false,
        );
        assert_eq!(revoked(&store, "svc"), None);
    }

    #[test]
    fn a_vanished_entry_revokes_only_when_an_earlier_complete_listing_had_it() {
        let store = Store::new();
        let g = store.set_orgs(&[org("acme")], &|_| false)["acme"];
        store.set_tokens(
            vec![
                config("by-id", |c| c.org_token_id = Some("t1".into())),
                config("typo", |c| c.org_token_id = Some("no-such-id".into())),
                config("by-account", |c| {
                    c.expected_account_id = Some("solo".into())
                }),
                config("rotated", |c| c.expected_account_id = Some("rot".into())),
            ],
            &|_| false,
        );
        let first = inventory(
            &[("t1", "x", None), ("t2", "solo", None), ("t3", "rot", None)],
            &[],
        );
        store.record_inventory("acme", g, first);
        for name in ["by-id", "typo", "by-account", "rotated"] {
            assert_eq!(revoked(&store, name), None, "{name}");
        }
        // The failed run says nothing; the next complete one lacks t1, t2 and t3, and
        // "rot" now owns two new tokens (ambiguous: maybe rotated, not revoked).
        store.record_inventory("acme", g, InventoryRun::failed(refused(List::ApiTokens)));
        assert_eq!(revoked(&store, "by-id"), None);
        std::thread::sleep(Duration::from_millis(5));
        store.record_inventory(
            "acme",
            g,
            inventory(&[("t4", "rot", None), ("t5", "rot", None)], &[]),
        );
        let completed = store.read().orgs["acme"].api_tokens.last_success();
        assert_eq!(revoked(&store, "by-id").map(|r| Some(r.0)), Some(completed));
        assert_eq!(
            revoked(&store, "by-account").map(|r| r.1),
            Some(RevocationSource::OrgInventory)
        );
        assert_eq!(revoked(&store, "typo"), None, "never seen: not revoked");
        assert_eq!(
            revoked(&store, "rotated"),
            None,
            "the account still owns tokens"
        );
        assert!(store.read().tokens["rotated"].meta.linked.is_none());
    }

    #[test]
    fn revocation_lag_runs_from_revocation_to_the_first_non_valid_probe_after_a_valid_one() {
        let mut lag = RevocationLag::default();
        lag.observe(100.0, 50.0, Some(true)); // before the revocation: ignored
        lag.observe(100.0, 90.0, Some(false));
        assert_eq!(lag.get(100.0), None);
        lag.observe(100.0, 150.0, Some(true));
        lag.observe(100.0, 160.0, None); // an error decides nothing
        assert_eq!(lag.get(100.0), None);
        lag.observe(100.0, 170.5, Some(false));
        assert_eq!(lag.get(100.0), Some(70.5));
        lag.observe(100.0, 180.0, Some(false));
        lag.observe(100.0, 190.0, Some(true));
        assert_eq!(lag.get(100.0), Some(70.5), "the first one stays");
        assert_eq!(lag.get(99.0), None, "another revocation time");
        lag.observe(200.0, 210.0, Some(false));
        assert_eq!(lag.get(200.0), None, "a new revocation time starts over");

        // Through the store: a config revocation 100 s ago, then valid, then rejected.
        let store = Store::new();
        let revoked_at = unix_now() as i64 - 100;
        let gens = store.set_tokens(
            vec![
                config("late", |c| c.revoked_at = Some(revoked_at)),
                config("prompt", |c| c.revoked_at = Some(revoked_at)),
            ],
            &|_| false,
        );
        let valid = probed(Outcome::Valid { account_id: None });
        let rejected = probed(Outcome::Rejected { status: 401 });
        store.record("late", gens["late"], &valid, Duration::ZERO);
        assert_eq!(store.read().tokens["late"].revocation_lag(), None);
        store.record("late", gens["late"], &rejected, Duration::ZERO);
        let lag = store.read().tokens["late"].revocation_lag().unwrap();
        assert!((99.0..103.0).contains(&lag), "{lag}");
        // Never seen valid after its revocation: no lag.
        store.record("prompt", gens["prompt"], &rejected, Duration::ZERO);
        assert_eq!(store.read().tokens["prompt"].revocation_lag(), None);
    }

    #[test]
    fn a_valid_probe_at_the_revocation_instant_counts_as_after_it() {
        // The revocation time is when a listing completed (or the configured revoked_at);
        // a probe that finished in that same millisecond was accepted at the revocation.
        let mut lag = RevocationLag::default();
        lag.observe(100.0, 100.0, Some(true));
        lag.observe(100.0, 130.0, Some(false));
        assert_eq!(lag.get(100.0), Some(30.0));
    }

    #[test]
    fn the_site_label_is_the_configured_url_without_its_trailing_slash() {
        let m = config("a", |c| {
            c.site = url::Url::parse("https://acme.atlassian.net/").unwrap()
        });
        assert_eq!(m.site(), "https://acme.atlassian.net");
        let m = config("b", |c| {
            c.site = url::Url::parse("https://api.atlassian.com/ex/jira/abc/").unwrap()
        });
        assert_eq!(m.site(), "https://api.atlassian.com/ex/jira/abc");
    }

    #[test]
    fn each_health_has_the_name_the_status_page_and_logs_show() {
        let names: Vec<_> = [
            Health::Pending,
            Health::Valid,
            Health::Mismatch,
            Health::Anonymous,
            Health::Rejected,
        ]
        .map(Health::as_str)
        .into();
        assert_eq!(
            names,
            [
                "pending",
                "valid",
                "identity mismatch",
                "anonymous fallback",
                "rejected"
            ]
        );
    }

    #[test]
    fn a_probe_keeps_its_duration_to_the_microsecond() {
        let store = Store::new();
        let g = store.set_tokens(vec![meta("a")], &|_| false)["a"];
        let valid = probed(Outcome::Valid { account_id: None });
        store.record("a", g, &valid, Duration::from_nanos(1_234_567_890));
        assert_eq!(
            store.read().tokens["a"].status.last_duration,
            Some(1.234568)
        );
    }

    #[test]
    fn a_lifetime_is_known_only_when_the_expiry_follows_the_creation() {
        let store = Store::new();
        store.set_tokens(
            vec![
                config("year", |c| {
                    (c.created_at, c.expires_at) = (Some(1_000), Some(1_000 + 86_400));
                    c.expiry_source = ExpirySource::Config;
                }),
                config("zero", |c| {
                    (c.created_at, c.expires_at) = (Some(1_000), Some(1_000));
                    c.expiry_source = ExpirySource::Config;
                }),
                config("backwards", |c| {
                    (c.created_at, c.expires_at) = (Some(2_000), Some(1_000));
                    c.expiry_source = ExpirySource::Config;
                }),
            ],
            &|_| false,
        );
        let inner = store.read();
        assert_eq!(inner.tokens["year"].lifetime(), Some(86_400));
        assert_eq!(inner.tokens["zero"].lifetime(), None);
        assert_eq!(inner.tokens["backwards"].lifetime(), None);
    }

    #[test]
    fn readiness_and_reloads_are_recorded_as_configuration_changes() {
        let store = Store::new();
        assert!(!store.read().exporter.ready);
        let v = store.config_version();
        store.set_ready();
        assert!(store.read().exporter.ready);
        assert!(
            store.config_version() > v,
            "readiness must re-render /metrics at once"
        );
        store.set_unready();
        assert!(!store.read().exporter.ready);

        let before = unix_now();
        store.record_reload(true);
        let e = store.read().exporter.clone();
        assert!(e.last_reload_successful);
        let at = e.last_reload_success.expect("a successful reload is timed");
        assert!(at >= before.floor() && at <= unix_now() + 1.0, "{at}");
        store.record_reload(false);
        let e = store.read().exporter.clone();
        assert!(!e.last_reload_successful);
        assert_eq!(
            e.last_reload_success,
            Some(at),
            "a failed reload keeps the last success"
        );
    }

    #[test]
    fn an_error_after_the_revocation_is_not_taken_for_a_valid_probe() {
        // Valid before the revocation (so the last conclusive state says valid), then
        // only errors and a refusal after it: the token never worked after its
        // revocation, so there is no lag to report.
        let store = Store::new();
        let revoked_at = unix_now().floor() as i64 + 1;
        let g = store.set_tokens(
            vec![config("t", |c| c.revoked_at = Some(revoked_at))],
            &|_| false,
        )["t"];
        store.record(
            "t",
            g,
            &probed(Outcome::Valid { account_id: None }),
            Duration::ZERO,
        );
        for _ in 0..300 {
            if unix_now() > revoked_at as f64 + 0.01 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            unix_now() > revoked_at as f64,
            "the revocation time never came"
        );
        let err = probed(Outcome::Error(ProbeError::new(
            ErrorReason::Timeout,
            "timeout",
        )));
        store.record("t", g, &err, Duration::ZERO);
        store.record(
            "t",
            g,
            &probed(Outcome::Rejected { status: 401 }),
            Duration::ZERO,
        );
        assert_eq!(store.read().tokens["t"].revocation_lag(), None);
    }
}
