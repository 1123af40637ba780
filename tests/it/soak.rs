//! Load and soak (`engine`): the short soak runs in the normal suite. The full one
//! (10,000 tokens, 60 s, plus the bcrypt and status-page flood phases) is its own test
//! target, `tests/soak/main.rs`, which `cargo test` does not run: `scripts/soak.sh`.

mod engine;

use std::time::Duration;

use engine::{soak, Plan};

#[tokio::test(flavor = "multi_thread")]
async fn short_soak_keeps_every_invariant() {
    soak(Plan {
        env_tokens: 500,
        file_tokens: 10,
        interval: Duration::from_secs(3),
        timeout: Duration::from_millis(1000),
        max_concurrency: 16,
        duration: Duration::from_secs(10),
        scrapers: 10,
        plain_scrapers: 3,
        failure_every: Duration::from_secs(1),
        rotate_files_every: Duration::from_secs(2),
    })
    .await;
}
