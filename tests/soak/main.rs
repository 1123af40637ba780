//! The full soak (`scripts/soak.sh`; docs/reliability.md): its own test target with
//! `test = false`, so `cargo test` neither builds nor lists it. Run in order, one at a time:
//!
//! 1. `load_10000_tokens`: 10,000 tokens, ~1 % failing in rotating ways, 50 gzip and 10
//!    plain scrapers, a reload every second, token files rotated (`tests/it/soak/engine.rs`,
//!    which the short soak in `cargo test --test it soak::` shares);
//! 2. `bcrypt_flood_10000_tokens` and 3. `status_page_flood_10000_tokens`
//!    ([`floods`]).
//!
//! The harness of `tests/it` is compiled in by path, not copied.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unused_imports)]
#[path = "../it/harness/mod.rs"]
mod harness;

#[path = "../it/soak/engine.rs"]
mod engine;

mod floods;

use std::time::Duration;

/// The phases measure latencies and probe ages: one at a time, whatever the test threads.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The full soak's load phase: 60 s, or `SOAK_SECONDS` (at most an hour) for a longer run.
fn load_duration() -> Duration {
    let secs = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.clamp(10, 3600))
}

#[tokio::test(flavor = "multi_thread")]
async fn load_10000_tokens() {
    let _one = ONE_AT_A_TIME.lock().await;
    engine::soak(engine::Plan {
        env_tokens: 9_900,
        file_tokens: 100,
        interval: Duration::from_secs(30),
        timeout: Duration::from_secs(2),
        max_concurrency: 16,
        duration: load_duration(),
        scrapers: 50,
        plain_scrapers: 10,
        failure_every: Duration::from_secs(5),
        rotate_files_every: Duration::from_secs(5),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bcrypt_flood_10000_tokens() {
    let _one = ONE_AT_A_TIME.lock().await;
    floods::bcrypt_flood(100).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_page_flood_10000_tokens() {
    let _one = ONE_AT_A_TIME.lock().await;
    floods::status_page_flood(30).await;
}
