//! Organization inventory seen from outside: the real binary listing a simulated
//! organization through the Admin API (pagination, rate limits, failures, linking, the
//! implicit admin-key token, reload).

use std::time::{Duration, Instant};

use apitoken_sim::{Behaviour, OrgApiKey, OrgToken};

use crate::harness::*;

const KEY: &str = "ATATT3xORGADMINKEYdoNotLeak";
const ORG: &str = "org-1";
/// Personal data the simulator returns with every token; none of it may reach /metrics.
const PRIVATE_DOMAIN: &str = "private.example";
const PRIVATE_NAME: &str = "Private Person";

/// Token `i`: account `acc-{i % 20}`; every 10th has no expiry.
fn org_token(i: usize) -> OrgToken {
    let now = now();
    OrgToken {
        id: format!("tok-{i:03}"),
        label: format!("label-{i}"),
        status: if i == 7 { "BLOCKED" } else { "ALLOWED" }.into(),
        account_id: format!("acc-{}", i % 20),
        user_name: format!("{PRIVATE_NAME} {i}"),
        user_email: format!("person{i}@{PRIVATE_DOMAIN}"),
        created_at: now - 100 * DAY,
        expires_at: (i % 10 != 0).then_some(now + (i as i64 + 1) * DAY),
        last_active_at: Some(now - 3600),
    }
}

fn org_key(id: &str, days: i64) -> OrgApiKey {
    OrgApiKey {
        id: id.into(),
        label: format!("{id}-label"),
        created_by_name: format!("{PRIVATE_NAME} Admin"),
        created_by_email: format!("admin@{PRIVATE_DOMAIN}"),
        created_at: now() - DAY,
        expires_at: Some(now() + days * DAY),
    }
}

/// A simulator whose organization `org-1` lists `tokens` user tokens and two API keys;
/// `KEY` is a valid admin key. Extra credentials as given.
async fn org_simulator(
    tokens: usize,
    creds: &[(&str, apitoken_sim::Credential)],
) -> apitoken_sim::RunningSimulator {
    let mut all = vec![(
        KEY,
        cred("admin-acc", "admin@acme.example", Behaviour::Valid),
    )];
    all.extend(creds.iter().cloned());
    let sim = simulator(&all).await;
    sim.sim
        .add_org_tokens(ORG, (0..tokens).map(org_token).collect());
    sim.sim
        .add_org_api_keys(ORG, vec![org_key("key-1", 5), org_key("key-2", 90)]);
    sim
}

/// Organization `name` (`org_id`) on `base`, its key in env var `env`.
fn org(name: &str, org_id: &str, base: &str, env: &str, interval: &str) -> OrgSpec {
    OrgSpec::new(name, org_id)
        .api_key_env(env)
        .base_url(base)
        .probe_interval(interval)
}

fn config(tokens: &[TokenSpec], orgs: &[OrgSpec]) -> String {
    let mut c = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .tokens(tokens.iter().cloned());
    for o in orgs {
        c = c.org(o.clone());
    }
    c.yaml()
}

/// The value of family `name` for organization `org` with `labels` (unique).
fn org_value(m: &Metrics, name: &str, org: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = vec![("org", org)];
    all.extend_from_slice(labels);
    m.value(name, &all)
}

/// How many series family `name` has for organization `org`.
fn org_count(m: &Metrics, name: &str, org: &str) -> usize {
    m.count(name, &[("org", org)])
}

/// The organization's inventory health as it was before each list stood alone: 1 when
/// every list's last listing completed (the lowest of the per-list values).
fn success(m: &Metrics, org: &str) -> Option<f64> {
    m.samples("apitoken_org_inventory_success", &[("org", org)])
        .map(|s| s.value)
        .reduce(f64::min)
}

const TOKEN_EXPIRY: &str = "apitoken_org_token_expiry_timestamp_seconds";
const TOKEN_ACTIVE: &str = "apitoken_org_token_last_active_timestamp_seconds";
const KEY_EXPIRY: &str = "apitoken_org_api_key_expiry_timestamp_seconds";

/// The admin key, personal data from the Admin API, and e-mail addresses appear nowhere:
/// not in /metrics, the status page, or the logs.
async fn assert_nothing_leaked(e: &Exporter) {
    let (_, page) = e.get("/").await;
    let metrics = e.scrape().await.text().to_string();
    for (what, text) in [
        ("/metrics", metrics.as_str()),
        ("/", page.as_str()),
        ("logs", e.output().as_str()),
    ] {
        assert!(!text.contains(KEY), "the admin key leaked into {what}");
        assert!(
            !text.contains(PRIVATE_DOMAIN),
            "an e-mail leaked into {what}"
        );
        assert!(
            !text.contains(PRIVATE_NAME),
            "a user name leaked into {what}"
        );
    }
    assert!(!metrics.contains('@'), "an e-mail address in /metrics");
}

async fn reload(e: &Exporter) {
    assert_eq!(e.reload().await, (200, "config reloaded\n".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_is_listed_and_personal_data_is_dropped() {
    let sim = org_simulator(250, &[]).await;
    let e = Exporter::start(
        &config(&[], &[org("acme", ORG, &sim.base_url(), "K", "1h")]),
        &[("K", KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(15), "inventory", |m| {
            success(m, "acme") == Some(1.0)
        })
        .await;
    // 250 tokens at pageSize 100 = 3 pages, plus 1 page of keys.
    assert_eq!(sim.sim.org_requests(ORG), 4);
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "acme"), 250);
    // Every 10th token has no expiresAt: no expiry series for it (never a 0).
    assert_eq!(org_count(&m, TOKEN_EXPIRY, "acme"), 225);
    assert!(org_value(&m, TOKEN_EXPIRY, "acme", &[("token_id", "tok-010")]).is_none());
    assert!(org_value(&m, TOKEN_ACTIVE, "acme", &[("token_id", "tok-010")]).is_some());
    let last = org_value(
        &m,
        TOKEN_EXPIRY,
        "acme",
        &[
            ("token_id", "tok-249"),
            ("token_label", "label-249"),
            ("account_id", "acc-9"),
            ("status", "ALLOWED"),
        ],
    )
    .unwrap();
    assert!((last - (now() + 250 * DAY) as f64).abs() < 60.0);
    assert!(org_value(
        &m,
        TOKEN_EXPIRY,
        "acme",
        &[("token_id", "tok-007"), ("status", "BLOCKED")]
    )
    .is_some());
    assert_eq!(org_count(&m, KEY_EXPIRY, "acme"), 2);
    assert!(org_value(
        &m,
        KEY_EXPIRY,
        "acme",
        &[("key_id", "key-1"), ("key_label", "key-1-label")]
    )
    .is_some());
    assert!(org_value(
        &m,
        "apitoken_org_inventory_last_success_timestamp_seconds",
        "acme",
        &[("list", "api_tokens")]
    )
    .is_some());
    assert!(m
        .text()
        .contains("# HELP apitoken_org_token_expiry_timestamp_seconds "));
    assert_nothing_leaked(&e).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_retry_after_is_waited_out_within_the_run() {
    let sim = org_simulator(150, &[]).await;
    // The 2nd request (page 2 of the tokens) answers 429 with Retry-After: 2.
    sim.sim.rate_limit_org_request(ORG, 2, Some("2"));
    let e = Exporter::start(
        &config(&[], &[org("acme", ORG, &sim.base_url(), "K", "1h")]),
        &[("K", KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "inventory", |m| {
            success(m, "acme").is_some()
        })
        .await;
    assert_eq!(success(&m, "acme"), Some(1.0), "{}", e.output());
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "acme"), 150);
    let at = sim.sim.org_request_offsets(ORG);
    assert_eq!(at.len(), 4, "page 2 is asked again, once: {at:?}");
    let gap = at[2] - at[1];
    assert!(gap >= Duration::from_millis(1900), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(5), "retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_negative_or_garbage_retry_after_waits_the_one_second_minimum() {
    // Where the 1 s minimum shows: the inventory asks for a rate-limited page again after
    // Retry-After, else after X-RateLimit-Reset (the simulator's is the end of its 60 s
    // budget window). A value that cannot be used still asked us to back off.
    let sim = org_simulator(150, &[]).await;
    sim.sim
        .add_org_tokens("org-2", (0..150).map(org_token).collect());
    sim.sim.rate_limit_org_request(ORG, 2, Some("-5"));
    sim.sim
        .rate_limit_org_request("org-2", 2, Some("soon, maybe"));
    let base = sim.base_url();
    let e = Exporter::start(
        &config(
            &[],
            &[
                org("acme", ORG, &base, "K", "1h"),
                org("beta", "org-2", &base, "K", "1h"),
            ],
        ),
        &[("K", KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "both inventories", |m| {
            success(m, "acme").is_some() && success(m, "beta").is_some()
        })
        .await;
    for (name, org_id, value) in [("acme", ORG, "-5"), ("beta", "org-2", "soon, maybe")] {
        assert_eq!(success(&m, name), Some(1.0), "{name}: {}", e.output());
        let at = sim.sim.org_request_offsets(org_id);
        assert_eq!(at.len(), 4, "{name}: page 2 is asked again, once: {at:?}");
        let gap = at[2] - at[1];
        assert!(
            gap >= Duration::from_millis(950) && gap < Duration::from_secs(3),
            "{name}: Retry-After {value:?} retried after {gap:?}, not the 1 s minimum"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_rate_limit_budget_pauses_before_the_next_page() {
    let sim = org_simulator(250, &[]).await;
    // Two requests per 3 s: without honouring X-RateLimit-Remaining: 0 the third page
    // would be answered 429.
    sim.sim.set_org_rate_limit(ORG, 2, Duration::from_secs(3));
    let started = Instant::now();
    let e = Exporter::start(
        &config(&[], &[org("acme", ORG, &sim.base_url(), "K", "1h")]),
        &[("K", KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(30), "inventory", |m| {
            success(m, "acme").is_some()
        })
        .await;
    assert_eq!(success(&m, "acme"), Some(1.0), "{}", e.output());
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "acme"), 250);
    assert_eq!(sim.sim.org_throttled(ORG), 0, "a 429 was provoked");
    assert_eq!(sim.sim.org_requests(ORG), 4);
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_page_keeps_the_last_complete_inventory() {
    let sim = org_simulator(250, &[]).await;
    let e = Exporter::start(
        &config(&[], &[org("acme", ORG, &sim.base_url(), "K", "1s")]),
        &[("K", KEY)],
    );
    e.wait_for(Duration::from_secs(15), "inventory", |m| {
        success(m, "acme") == Some(1.0)
    })
    .await;
    // Page 3 fails from now on; a token deleted meanwhile must not vanish either: a
    // failed run publishes nothing.
    sim.sim.fail_org_page(ORG, 3);
    assert!(sim.sim.remove_org_token(ORG, "tok-001"));
    let m = e
        .wait_for(Duration::from_secs(15), "inventory failing", |m| {
            success(m, "acme") == Some(0.0)
        })
        .await;
    let requests = sim.sim.org_requests(ORG);
    eventually(Duration::from_secs(10), "retries on the interval", || {
        sim.sim.org_requests(ORG) > requests
    })
    .await;
    let m2 = e.scrape().await;
    for m in [&m, &m2] {
        assert_eq!(success(m, "acme"), Some(0.0));
        assert_eq!(org_count(m, TOKEN_ACTIVE, "acme"), 250);
        assert_eq!(org_count(m, KEY_EXPIRY, "acme"), 2);
        assert!(org_value(m, TOKEN_EXPIRY, "acme", &[("token_id", "tok-001")]).is_some());
    }
    assert!(e.output().contains("organization inventory failed"));
    assert!(e.output().contains("api-tokens page 3"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_missing_from_a_complete_listing_disappears() {
    let sim = org_simulator(120, &[]).await;
    let e = Exporter::start(
        &config(&[], &[org("acme", ORG, &sim.base_url(), "K", "1s")]),
        &[("K", KEY)],
    );
    e.wait_for(Duration::from_secs(15), "inventory", |m| {
        org_count(m, TOKEN_ACTIVE, "acme") == 120
    })
    .await;
    assert!(sim.sim.remove_org_token(ORG, "tok-105"));
    let m = e
        .wait_for(Duration::from_secs(15), "tok-105 gone", |m| {
            org_count(m, TOKEN_ACTIVE, "acme") == 119
        })
        .await;
    assert!(!m.text().contains("tok-105"));
    assert_eq!(success(&m, "acme"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_tokens_take_their_expiry_from_the_inventory() {
    let sim = org_simulator(
        60,
        &[
            ("ATATT3xBYID", cred("acc-5", EMAIL, Behaviour::Valid)),
            ("ATATT3xSOLO", cred("acc-solo", EMAIL, Behaviour::Valid)),
            ("ATATT3xDUO", cred("acc-3", EMAIL, Behaviour::Valid)),
        ],
    )
    .await;
    // acc-solo owns exactly one token; acc-3 owns three (tok-003, -023, -043).
    let mut solo = org_token(200);
    solo.id = "tok-solo".into();
    solo.account_id = "acc-solo".into();
    solo.expires_at = Some(now() + 42 * DAY);
    sim.sim.add_org_tokens(ORG, vec![solo]);
    let base = sim.base_url();
    let tokens = |extra_label: &str| {
        vec![
            // Config says 2030-01-01; the inventory (tok-005: 6 days) wins.
            jira("by-id", &base, "S_ID")
                .expires_at("2030-01-01")
                .org_token_id("tok-005")
                .label("team", &format!("a{extra_label}")),
            jira("by-account", &base, "S_SOLO").expected_account_id("acc-solo"),
            jira("ambiguous", &base, "S_DUO")
                .expected_account_id("acc-3")
                .expires_at("2031-01-01"),
        ]
    };
    let orgs = [org("acme", ORG, &base, "K", "1s")];
    let env = [
        ("K", KEY),
        ("S_ID", "ATATT3xBYID"),
        ("S_SOLO", "ATATT3xSOLO"),
        ("S_DUO", "ATATT3xDUO"),
    ];
    let e = Exporter::start(&config(&tokens(""), &orgs), &env);
    let info = |m: &Metrics, token: &str, source: &str| {
        m.value(
            "apitoken_info",
            &[("token", token), ("expiry_source", source)],
        )
        .is_some()
    };
    let m = e
        .wait_for(Duration::from_secs(15), "linked", |m| {
            info(m, "by-id", "org_inventory") && info(m, "by-account", "org_inventory")
        })
        .await;
    let days = |m: &Metrics, t: &str| {
        m.value("apitoken_days_until_expiry", &[("token", t)])
            .unwrap()
    };
    assert!(
        (days(&m, "by-id") - 6.0).abs() < 0.01,
        "{}",
        days(&m, "by-id")
    );
    let expiry = m
        .value("apitoken_expiry_timestamp_seconds", &[("token", "by-id")])
        .unwrap();
    assert!((expiry - (now() + 6 * DAY) as f64).abs() < 60.0);
    assert!((days(&m, "by-account") - 42.0).abs() < 0.01);
    // Not exactly one token for the account: not linked, the config's date stays.
    assert!(info(&m, "ambiguous", "config"));
    assert_eq!(
        m.value(
            "apitoken_expiry_timestamp_seconds",
            &[("token", "ambiguous")]
        ),
        Some(1_924_992_000.0)
    );

    // A reload that changes only labels keeps the link at once.
    e.write_config(&config(&tokens("2"), &orgs));
    reload(&e).await;
    let m = e.scrape().await;
    assert!(info(&m, "by-id", "org_inventory"), "{}", m.text());
    assert!(m
        .value("apitoken_info", &[("token", "by-id"), ("team", "a2")])
        .is_some());

    // The entry is deleted: the token falls back to its configured expiry.
    sim.sim.remove_org_token(ORG, "tok-005");
    let m = e
        .wait_for(Duration::from_secs(15), "unlinked", |m| {
            info(m, "by-id", "config")
        })
        .await;
    assert_eq!(
        m.value("apitoken_expiry_timestamp_seconds", &[("token", "by-id")]),
        Some(1_893_456_000.0)
    );
    assert_nothing_leaked(&e).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_key_is_watched_by_an_implicit_token() {
    let sim = org_simulator(5, &[]).await;
    let base = sim.base_url();
    let orgs = [
        org("acme", ORG, &base, "K", "1h"),
        // A key the simulator does not know: its implicit token is rejected and the
        // inventory refused.
        org("beta", "org-2", &base, "K_BAD", "1h"),
    ];
    let e = Exporter::start(
        &config(&[], &orgs),
        &[("K", KEY), ("K_BAD", "ATATT3xUNKNOWNKEY")],
    );
    let m = e
        .wait_for(Duration::from_secs(15), "implicit tokens probed", |m| {
            m.has("apitoken_valid", &[("token", "acme-admin-key")])
                && m.has("apitoken_valid", &[("token", "beta-admin-key")])
                && success(m, "beta").is_some()
        })
        .await;
    assert_eq!(
        m.value("apitoken_valid", &[("token", "acme-admin-key")]),
        Some(1.0)
    );
    assert!(m.has(
        "apitoken_valid",
        &[("token", "acme-admin-key"), ("provider", "atlassian_admin")]
    ));
    let info = m
        .samples("apitoken_info", &[("token", "acme-admin-key")])
        .next()
        .unwrap();
    assert_eq!(info.label("site"), Some(base.as_str()), "{info:?}");
    assert_eq!(info.label("org"), Some("acme"), "{info:?}");
    assert_eq!(
        m.value("apitoken_valid", &[("token", "beta-admin-key")]),
        Some(0.0)
    );
    assert_eq!(success(&m, "beta"), Some(0.0));
    // Implicit tokens are watched, not configured.
    assert_eq!(m.value("apitoken_exporter_tokens", &[]), Some(0.0));
    assert!(e.output().contains("the admin API key was refused"));
    assert!(!e.output().contains("ATATT3xUNKNOWNKEY"));
    assert_nothing_leaked(&e).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_token_with_org_token_id_takes_the_key_expiry() {
    let sim = org_simulator(5, &[]).await;
    let base = sim.base_url();
    // The configured admin token reads the org's key source: no implicit token.
    let admin = TokenSpec::admin("my-admin")
        .site(&base)
        .token_env("K")
        .org_token_id("key-1")
        .expires_at("2030-01-01");
    let e = Exporter::start(
        &config(&[admin], &[org("acme", ORG, &base, "K", "1h")]),
        &[("K", KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(15), "linked admin key", |m| {
            m.value(
                "apitoken_info",
                &[("token", "my-admin"), ("expiry_source", "org_inventory")],
            )
            .is_some()
                && m.has("apitoken_valid", &[("token", "my-admin")])
        })
        .await;
    let days = m
        .value("apitoken_days_until_expiry", &[("token", "my-admin")])
        .unwrap();
    assert!((days - 5.0).abs() < 0.01, "{days}");
    assert_eq!(
        m.value("apitoken_valid", &[("token", "my-admin")]),
        Some(1.0)
    );
    assert!(!m.mentions("token", "acme-admin-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_keeps_and_removes_organizations() {
    let sim = org_simulator(30, &[]).await;
    sim.sim
        .add_org_tokens("org-2", (0..3).map(org_token).collect());
    let base = sim.base_url();
    let token = [jira("jira", &base, "S")];
    let acme = org("acme", ORG, &base, "K", "1h");
    let beta = org("beta", "org-2", &base, "K", "1h");
    let e = Exporter::start(&config(&token, &[]), &[("K", KEY), ("S", "ATATT3xJIRAX")]);
    e.wait_for(Duration::from_secs(10), "jira probed", |m| {
        m.has("apitoken_probe_success", &[("token", "jira")])
    })
    .await;
    assert!(!e.scrape().await.text().contains("apitoken_org_"));

    // Added: listed within a few seconds, and its key watched.
    e.write_config(&config(&token, std::slice::from_ref(&acme)));
    reload(&e).await;
    let m = e
        .wait_for(Duration::from_secs(15), "acme listed", |m| {
            success(m, "acme") == Some(1.0)
                && m.has("apitoken_valid", &[("token", "acme-admin-key")])
        })
        .await;
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "acme"), 30);
    let acme_requests = sim.sim.org_requests(ORG);
    let acme_last = org_value(
        &m,
        "apitoken_org_inventory_last_success_timestamp_seconds",
        "acme",
        &[("list", "api_tokens")],
    );

    // Another one added: the unchanged one keeps its inventory and is not listed again.
    e.write_config(&config(&token, &[acme.clone(), beta.clone()]));
    reload(&e).await;
    let m = e.scrape().await;
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "acme"), 30, "acme was reset");
    let m = e
        .wait_for(Duration::from_secs(15), "beta listed", |m| {
            success(m, "beta") == Some(1.0)
        })
        .await;
    assert_eq!(org_count(&m, TOKEN_ACTIVE, "beta"), 3);
    assert_eq!(
        sim.sim.org_requests(ORG),
        acme_requests,
        "acme listed again"
    );
    assert_eq!(
        org_value(
            &m,
            "apitoken_org_inventory_last_success_timestamp_seconds",
            "acme",
            &[("list", "api_tokens")]
        ),
        acme_last
    );

    // Removed: its series and its implicit token disappear at once.
    e.write_config(&config(&token, &[beta]));
    reload(&e).await;
    let m = e.scrape().await;
    assert!(!m.mentions("org", "acme"), "{}", m.text());
    assert!(!m.mentions("token", "acme-admin-key"));
    assert!(m.mentions("token", "beta-admin-key"));
    assert_eq!(success(&m, "beta"), Some(1.0));
    assert_nothing_leaked(&e).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_named_like_the_implicit_admin_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        &config(
            &[jira("acme-admin-key", "https://x.example", "K")],
            &[org("acme", ORG, "https://api.example", "K", "1h")],
        ),
    );
    let (code, _, err) = run_cli(
        &[
            "--config.check",
            &format!("--config.file={}", path.display()),
        ],
        &[("K", KEY)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("organizations[0] (acme)"), "{err}");
    assert!(err.contains("tokens[0] (acme-admin-key)"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_configured_tokens_only() {
    let sim = org_simulator(5, &[("ATATT3xJIRA", cred("acc", EMAIL, Behaviour::Valid))]).await;
    let base = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.yaml",
        &config(
            &[jira("jira", &base, "S")],
            &[org("acme", ORG, &base, "K", "1s")],
        ),
    );
    let file = format!("--config.file={}", path.display());
    let (code, out, err) =
        run_cli_off_runtime(&["check", &file], &[("K", KEY), ("S", "ATATT3xJIRA")]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("jira"));
    assert!(!out.contains("acme-admin-key"), "{out}");
    assert_eq!(sim.sim.org_requests(ORG), 0);
}
