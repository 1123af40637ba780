//! One token's probe loop: probes on a fixed cadence on a 1 s grid, holding a permit of
//! the global concurrency limit only while a request is in flight, backing off as the
//! server asks (`Retry-After`), and recording each result in the state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::TokenConfig;
use crate::probe::Outcome;
use crate::providers::oauth::OAuthClient;
use crate::providers::{self, ProbeTarget, Probed};
use crate::secret::SecretReader;
use crate::state::{Health, Store, Transition};
use crate::upstream::HttpClient;

/// What a token's probes authenticate with: its secret source and, with OAuth client
/// credentials, the client with its cached access token. Lives as long as the token's
/// probe loop, so the access token survives from one probe to the next.
#[derive(Debug)]
pub struct TokenCredential {
    secret: SecretReader,
    oauth: Option<OAuthClient>,
}

impl TokenCredential {
    pub fn new(token: &TokenConfig) -> Self {
        Self {
            secret: SecretReader::new(token.secret.clone()),
            oauth: token.oauth2.clone().map(OAuthClient::new),
        }
    }
}

/// Everything one token's loop needs.
pub(super) struct TokenLoop {
    pub(super) token: Arc<TokenConfig>,
    pub(super) credential: TokenCredential,
    pub(super) generation: u64,
    pub(super) store: Arc<Store>,
    pub(super) client: HttpClient,
    pub(super) semaphore: Arc<Semaphore>,
}

/// Probes start on a grid of this step (counted from process start): tokens due in the
/// same slot run in one wake-up of the runtime instead of one each, which at hundreds of
/// probes a second saves a thread park/unpark and a timer turn per probe. The delay this
/// adds to any probe is below one slot.
pub(super) const SLOT: Duration = Duration::from_millis(1000);

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

pub(super) async fn run(ctx: TokenLoop, first: Duration) {
    let mut due = slot_at_or_after(Instant::now() + first);
    loop {
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = ctx.semaphore.acquire().await else {
            return; // semaphore closed: shutting down
        };
        // Boxed: the request future is large, and an unboxed one would be part of every
        // idle task's state (10,000 sleeping tokens x several KiB).
        let (probed, took) = Box::pin(probe_token(&ctx.client, &ctx.token, &ctx.credential)).await;
        drop(permit);
        if let Some(t) = ctx
            .store
            .record(&ctx.token.name, ctx.generation, &probed, took)
        {
            log_transition(&ctx.token, &probed.outcome, &t);
        }
        due = next_due(
            due,
            Instant::now(),
            &probed.outcome,
            ctx.token.probe_interval,
        );
    }
}

/// One probe of one token with its timeout, as `check` and the scheduler both need it.
pub async fn probe_token(
    client: &HttpClient,
    token: &TokenConfig,
    credential: &TokenCredential,
) -> (Probed, Duration) {
    let started = Instant::now();
    // A token file is read on the blocking pool, waited for at most the probe timeout: a
    // hung mount fails this probe (credential_unavailable), not every probe of the runtime.
    let probed = match credential.secret.read_within(token.probe_timeout).await {
        Err(e) => Probed::from(Outcome::credential_unavailable(&e)),
        Ok(secret) => {
            let target = ProbeTarget {
                provider: token.provider,
                site: &token.site,
                auth: token.auth,
                email: token.email.as_deref(),
                expected_account_id: token.expected_account_id.as_deref(),
                secret: &secret,
                oauth: credential.oauth.as_ref(),
            };
            tokio::time::timeout(token.probe_timeout, providers::probe(client, &target))
                .await
                .unwrap_or_else(|_| Probed::from(Outcome::timeout(token.probe_timeout)))
        }
    };
    (probed, started.elapsed())
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
    use crate::probe::{ErrorReason, ProbeError};

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
        let mut e = ProbeError::new(ErrorReason::RateLimited, "HTTP 429");
        e.retry_after = Some(Duration::from_secs(600));
        let next = next_due(due, answered, &Outcome::Error(e), interval);
        assert!(next >= answered + Duration::from_secs(600));
        assert!(next < answered + Duration::from_secs(600) + SLOT);
    }
}
