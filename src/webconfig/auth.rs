//! `basic_auth_users`: bcrypt hashes checked at most [`MAX_CONCURRENT_BCRYPT`] at a time,
//! results cached under a salted SHA-256 of user, hash and password.
//!
//! bcrypt is deliberately slow (cost 10 is ~70 ms, cost 18 seconds), so:
//! - nothing hashes at start-up: a hash is only checked for its format there;
//! - an unknown user is checked against a hash of the **highest configured cost**, so the
//!   time an answer takes does not tell which user names exist;
//! - at most [`MAX_CONCURRENT_BCRYPT`] checks run at once (on the blocking pool), at most
//!   [`MAX_BCRYPT_WAITING`] more wait for their turn; beyond that a request is answered
//!   `429` at once, so a flood of wrong passwords can neither grow threads nor take the
//!   cores the probes need;
//! - a credential once verified or refused is answered from the cache (refusals are kept
//!   apart, so a flood of distinct wrong passwords cannot evict the right one).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use subtle::ConstantTimeEq;

/// bcrypt checks running at once (the toolkit runs one at a time, too).
pub const MAX_CONCURRENT_BCRYPT: usize = 1;
/// Requests waiting for a bcrypt turn; more are answered 429 at once.
pub const MAX_BCRYPT_WAITING: usize = 64;
/// Verified credentials kept; beyond this the set is cleared.
const VERIFIED_MAX: usize = 1024;
/// Refused credentials kept; beyond this the set is cleared.
const REFUSED_MAX: usize = 4096;

static BCRYPT_TURNS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_BCRYPT);
static BCRYPT_WAITING: AtomicUsize = AtomicUsize::new(0);

/// The answer for one request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    /// Too many password checks in progress; try again later.
    Busy,
}

/// The cost of a well-formed bcrypt hash (`$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit
/// cost 04–31, 22 salt and 31 digest characters of bcrypt's alphabet), else why not.
/// Never hashes and never echoes the value.
pub fn hash_cost(hash: &str) -> Result<u32, &'static str> {
    const ALPHABET: &[u8] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let b = hash.as_bytes();
    if b.len() != 60 || !matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2x$" | b"$2y$") {
        return Err("not a bcrypt hash (expected $2a$/$2b$/$2y$, a cost and 53 characters)");
    }
    let cost = std::str::from_utf8(&b[4..6])
        .ok()
        .filter(|c| c.bytes().all(|d| d.is_ascii_digit()))
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or("not a bcrypt hash (the cost is not two digits)")?;
    if !(4..=31).contains(&cost) || b[6] != b'$' {
        return Err("not a bcrypt hash (the cost must be 04 to 31)");
    }
    if !b[7..].iter().all(|c| ALPHABET.contains(c)) {
        return Err("not a bcrypt hash (salt and digest must use bcrypt's alphabet)");
    }
    Ok(cost)
}

/// A hash of `cost` that no password matches in practice (random salt and digest), so that
/// checking a password against it costs exactly what a real hash of that cost costs.
fn decoy_hash(cost: u32) -> String {
    use base64::Engine;
    let salt: [u8; 16] = rand::random();
    let digest: [u8; 23] = rand::random();
    format!(
        "$2b${cost:02}${}{}",
        bcrypt::BASE_64.encode(salt),
        bcrypt::BASE_64.encode(digest)
    )
}

pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// For unknown users: the highest configured cost.
    decoy: String,
    salt: [u8; 32],
    verified: Mutex<HashSet<[u8; 32]>>,
    refused: Mutex<HashSet<[u8; 32]>>,
}

impl BasicAuth {
    /// `users` must hold well-formed hashes ([`hash_cost`]).
    pub fn new(users: BTreeMap<String, String>) -> Self {
        let cost = users
            .values()
            .filter_map(|h| hash_cost(h).ok())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        Self {
            users,
            decoy: decoy_hash(cost),
            salt: rand::random(),
            verified: Mutex::new(HashSet::new()),
            refused: Mutex::new(HashSet::new()),
        }
    }

    /// The same users and hashes (a reload that changed something else keeps the cache).
    pub fn same_users(&self, users: &BTreeMap<String, String>) -> bool {
        &self.users == users
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The cost an unknown user's check runs at.
    pub fn decoy_cost(&self) -> u32 {
        hash_cost(&self.decoy).unwrap_or(0)
    }

    fn hash_for(&self, user: &str) -> (&str, bool) {
        match self.users.get(user) {
            Some(h) => (h.as_str(), true),
            None => (self.decoy.as_str(), false),
        }
    }

    fn cache_key(&self, user: &str, hash: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.salt);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(hash.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// Constant-time membership (the sets are small enough to scan).
    fn in_set(set: &Mutex<HashSet<[u8; 32]>>, key: &[u8; 32]) -> bool {
        let set = set.lock().unwrap_or_else(|e| e.into_inner());
        let mut hit = subtle::Choice::from(0);
        for k in set.iter() {
            hit |= k.ct_eq(key);
        }
        bool::from(hit)
    }

    fn remember(set: &Mutex<HashSet<[u8; 32]>>, key: [u8; 32], max: usize) {
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= max {
            set.clear();
        }
        set.insert(key);
    }

    fn cached(&self, key: &[u8; 32]) -> Option<bool> {
        if Self::in_set(&self.verified, key) {
            Some(true)
        } else if Self::in_set(&self.refused, key) {
            Some(false)
        } else {
            None
        }
    }

    /// The bcrypt check itself, and caching its result. Blocking.
    fn verify_uncached(&self, user: &str, password: &str, key: [u8; 32]) -> bool {
        let (hash, known) = self.hash_for(user);
        let ok = bcrypt::verify(password, hash).unwrap_or(false) && known;
        if ok {
            Self::remember(&self.verified, key, VERIFIED_MAX);
        } else {
            Self::remember(&self.refused, key, REFUSED_MAX);
        }
        ok
    }

    /// True when `user:password` matches. Blocking and unbounded: tests and tools only;
    /// the server uses [`BasicAuth::check_bounded`].
    pub fn check(&self, user: &str, password: &str) -> bool {
        let key = self.cache_key(user, self.hash_for(user).0, password);
        match self.cached(&key) {
            Some(v) => v,
            None => self.verify_uncached(user, password, key),
        }
    }

    /// The server's check: cached answers at once, bcrypt on the blocking pool at most
    /// [`MAX_CONCURRENT_BCRYPT`] at a time, [`Verdict::Busy`] when too many wait.
    pub async fn check_bounded(self: &Arc<Self>, user: String, password: String) -> Verdict {
        let key = self.cache_key(&user, self.hash_for(&user).0, &password);
        if let Some(v) = self.cached(&key) {
            return if v { Verdict::Allowed } else { Verdict::Denied };
        }
        struct Waiting;
        impl Drop for Waiting {
            fn drop(&mut self) {
                BCRYPT_WAITING.fetch_sub(1, Ordering::Relaxed);
            }
        }
        if BCRYPT_WAITING.fetch_add(1, Ordering::Relaxed) >= MAX_BCRYPT_WAITING {
            BCRYPT_WAITING.fetch_sub(1, Ordering::Relaxed);
            return Verdict::Busy;
        }
        let waiting = Waiting;
        let Ok(turn) = BCRYPT_TURNS.acquire().await else {
            return Verdict::Denied;
        };
        drop(waiting);
        // Another request may have checked the same credential meanwhile.
        if let Some(v) = self.cached(&key) {
            return if v { Verdict::Allowed } else { Verdict::Denied };
        }
        let auth = self.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            auth.verify_uncached(&user, &password, key)
        })
        .await
        .unwrap_or(false);
        if ok {
            Verdict::Allowed
        } else {
            Verdict::Denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(pairs: &[(&str, &str, u32)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(u, p, c)| (u.to_string(), bcrypt::hash(p, *c).unwrap()))
            .collect()
    }

    #[test]
    fn checks_and_caches_both_ways() {
        let auth = BasicAuth::new(users(&[("prom", "s3cret", 4)]));
        assert!(auth.check("prom", "s3cret"));
        assert!(auth.check("prom", "s3cret")); // cached
        assert!(!auth.check("prom", "wrong"));
        assert!(!auth.check("prom", "wrong")); // cached refusal
        assert!(!auth.check("nobody", "s3cret"));
    }

    #[test]
    fn an_unknown_user_costs_the_highest_configured_cost() {
        let auth = BasicAuth::new(users(&[("a", "x", 4), ("b", "y", 5)]));
        assert_eq!(auth.decoy_cost(), 5);
        // A cost-18 hash (not computed: only its format is read) sets the decoy's cost.
        let mut u = users(&[("a", "x", 4)]);
        u.insert(
            "slow".into(),
            "$2y$18$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU".into(),
        );
        assert_eq!(BasicAuth::new(u).decoy_cost(), 18);
    }

    #[test]
    fn hash_format_is_checked_without_hashing() {
        assert_eq!(hash_cost(&bcrypt::hash("x", 4).unwrap()), Ok(4));
        assert_eq!(
            hash_cost("$2y$18$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU"),
            Ok(18)
        );
        for bad in [
            "doe",
            "$2y$03$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU",
            "$2y$32$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU",
            "$3y$10$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU",
            "$2y$10$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRST!",
            "$2y$10$short",
        ] {
            assert!(hash_cost(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_are_bounded() {
        let auth = Arc::new(BasicAuth::new(users(&[("prom", "s3cret", 6)])));
        let mut tasks = Vec::new();
        for i in 0..(MAX_BCRYPT_WAITING * 3) {
            let auth = auth.clone();
            tasks.push(tokio::spawn(async move {
                auth.check_bounded("prom".into(), format!("wrong{i}")).await
            }));
        }
        let mut busy = 0;
        for t in tasks {
            match t.await.unwrap() {
                Verdict::Allowed => panic!("a wrong password was allowed"),
                Verdict::Busy => busy += 1,
                Verdict::Denied => {}
            }
        }
        assert!(busy > 0, "nobody was turned away: the wait is unbounded");
        assert_eq!(
            auth.check_bounded("prom".into(), "s3cret".into()).await,
            Verdict::Allowed
        );
    }
}
