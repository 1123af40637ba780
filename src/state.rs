//! The last known state of every token: written by the scheduler, read by the metrics
//! renderer and the status page. The single source of truth; nothing else keeps state.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{ExpirySource, TokenConfig};
use crate::provider::{ErrorReason, Outcome, OutcomeKind, Provider};

/// What the config says about a token, as the metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenMeta {
    pub name: String,
    pub provider: Provider,
    pub site: String,
    pub labels: BTreeMap<String, String>,
    pub expires_at: Option<i64>,
    pub expiry_source: ExpirySource,
    pub revoked_at: Option<i64>,
    pub probe_interval: Duration,
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
            revoked_at: t.revoked_at,
            probe_interval: t.probe_interval,
        }
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
        self.last_duration = Some(duration.as_secs_f64());
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
    pub exporter: ExporterStatus,
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

    /// Bumped on every change; the metrics cache keys on it.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
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

    /// Replaces the token set. Tokens in `reset` (new, or probe settings changed) start
    /// from a clean state with a new generation; others keep status and generation.
    /// Tokens not listed disappear. Returns each token's generation.
    pub fn set_tokens(
        &self,
        metas: Vec<TokenMeta>,
        reset: &dyn Fn(&str) -> bool,
    ) -> BTreeMap<String, u64> {
        self.write(|inner| {
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
            generations
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
        let finished_at = unix_now();
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
        self.write(|inner| inner.exporter.ready = true);
    }

    pub fn record_reload(&self, ok: bool) {
        self.write(|inner| {
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
            revoked_at: None,
            probe_interval: Duration::from_secs(60),
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
