//! The organization inventory as Atlassian has it since 2026, seen from outside: the real
//! binary against the simulator. Each list stands alone (a key from before the scope split
//! gets a 403 on API keys and still publishes its API tokens), revocations seen in the
//! inventory set `apitoken_revoked_timestamp_seconds{source="org_inventory"}` and the lag
//! until the token stops working, aggregates by status and expiry, `per_token_series`,
//! `max_pages`, and an organization of 250,000 tokens (README "Organization inventory").

use std::time::Duration;

use apitoken_sim::{Behaviour, OrgApiKey, OrgToken, RevokeAs, RunningSimulator};

use crate::harness::*;

const ADMIN_KEY: &str = "ATATT3xINV2026ADMINdoNotLeak";
const ORG: &str = "org-2026";

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn token(id: &str, account: &str, status: &str, expires_in: Option<i64>) -> OrgToken {
    OrgToken {
        id: id.into(),
        label: format!("{id}-label"),
        status: status.into(),
        account_id: account.into(),
        user_name: "Private Person".into(),
        user_email: "person@private.example".into(),
        created_at: now() - 10 * DAY,
        expires_at: expires_in.map(|s| now() + s),
        last_active_at: Some(now() - 3600),
    }
}

fn api_key(id: &str) -> OrgApiKey {
    OrgApiKey {
        id: id.into(),
        label: format!("{id}-label"),
        created_by_name: "Private Person".into(),
        created_by_email: "admin@private.example".into(),
        created_at: now() - 2 * DAY,
        expires_at: Some(now() + 5 * DAY),
    }
}

/// A served simulator with the admin key and `creds` (secret, account) registered, each a
/// valid credential of [`EMAIL`].
async fn org_simulator(creds: &[(&str, &str)]) -> RunningSimulator {
    let all: Vec<_> = [(ADMIN_KEY, "admin-acc")]
        .iter()
        .chain(creds)
        .map(|(secret, account)| (*secret, cred(account, EMAIL, Behaviour::Valid)))
        .collect();
    simulator(&all).await
}

/// The organization `acme` (org id [`ORG`]), its admin key in env var `ADMIN`.
fn acme(base: &str, interval: &str) -> OrgSpec {
    OrgSpec::new("acme", ORG)
        .api_key_env("ADMIN")
        .base_url(base)
        .probe_interval(interval)
}

fn config(tokens: &[TokenSpec], org: OrgSpec) -> String {
    ConfigBuilder::new()
        .global("probe_interval", "1s")
        .tokens(tokens.iter().cloned())
        .org(org)
        .yaml()
}

fn list_success(m: &Metrics, list: &str) -> Option<f64> {
    m.value(
        "apitoken_org_inventory_success",
        &[("org", "acme"), ("list", list)],
    )
}

/// `apitoken_org_tokens` for the list, status and bucket.
fn tokens(m: &Metrics, list: &str, status: &str, bucket: &str) -> Option<f64> {
    m.value(
        "apitoken_org_tokens",
        &[
            ("org", "acme"),
            ("list", list),
            ("status", status),
            ("expires_within", bucket),
        ],
    )
}

/// Starts the exporter on the organization alone (with these fields as is) and waits
/// until both lists ran once.
async fn start_and_list(
    sim: &RunningSimulator,
    interval: &str,
    fields: &[(&'static str, &str)],
) -> (Exporter, Metrics) {
    let org = with_fields(acme(&sim.base_url(), interval), fields);
    let e = Exporter::start(&config(&[], org), &[("ADMIN", ADMIN_KEY)]);
    let m = e
        .wait_for(Duration::from_secs(20), "both lists ran", |m| {
            list_success(m, "api_tokens").is_some() && list_success(m, "api_keys").is_some()
        })
        .await;
    (e, m)
}

fn with_fields(org: OrgSpec, fields: &[(&'static str, &str)]) -> OrgSpec {
    fields.iter().fold(org, |o, (k, v)| o.raw(k, v))
}

const TOKEN_EXPIRY: &str = "apitoken_org_token_expiry_timestamp_seconds";
const TOKEN_CREATED: &str = "apitoken_org_token_created_timestamp_seconds";
const KEY_EXPIRY: &str = "apitoken_org_api_key_expiry_timestamp_seconds";
const KEY_CREATED: &str = "apitoken_org_api_key_created_timestamp_seconds";
const REVOKED: &str = "apitoken_revoked_timestamp_seconds";
const LAG: &str = "apitoken_revocation_lag_seconds";

// ---------------------------------------------------------------------------------------
// Each list stands alone
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_403_on_api_keys_keeps_the_api_tokens_list_publishing() {
    let sim = org_simulator(&[]).await;
    sim.sim.legacy_admin_key(ADMIN_KEY);
    sim.sim.add_org_tokens(
        ORG,
        (0..150)
            .map(|i| token(&format!("t{i:03}"), "acc", "ALLOWED", Some(40 * DAY)))
            .collect(),
    );
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let (e, m) = start_and_list(&sim, "1s", &[]).await;
    assert_eq!(list_success(&m, "api_tokens"), Some(1.0), "{}", m.text());
    assert_eq!(list_success(&m, "api_keys"), Some(0.0));
    assert!(m
        .value(
            "apitoken_org_inventory_last_success_timestamp_seconds",
            &[("org", "acme"), ("list", "api_tokens")]
        )
        .is_some());
    assert!(m
        .value(
            "apitoken_org_inventory_last_success_timestamp_seconds",
            &[("org", "acme"), ("list", "api_keys")]
        )
        .is_none());
    assert_eq!(m.count(TOKEN_EXPIRY, &[("org", "acme")]), 150);
    assert_eq!(m.count(KEY_EXPIRY, &[("org", "acme")]), 0);
    assert_eq!(tokens(&m, "api_tokens", "ALLOWED", "90d"), Some(150.0));
    assert_eq!(m.count("apitoken_org_tokens", &[("list", "api_keys")]), 0);
    let logs = e.output();
    assert!(logs.contains("read:keys:admin"), "{logs}");
    assert!(logs.contains("list=api_keys"), "{logs}");
    assert!(!logs.contains(ADMIN_KEY));

    // Still failing on later runs, the tokens list keeps refreshing.
    let before = sim.sim.org_requests(ORG);
    let m = e
        .wait_for(Duration::from_secs(10), "another run", |_| {
            sim.sim.org_requests(ORG) >= before + 4
        })
        .await;
    assert_eq!(list_success(&m, "api_tokens"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_pages_bounds_each_list_on_its_own() {
    let sim = org_simulator(&[]).await;
    sim.sim.add_org_tokens(
        ORG,
        (0..250)
            .map(|i| token(&format!("t{i:03}"), "acc", "ALLOWED", None))
            .collect(),
    );
    sim.sim
        .add_org_api_keys(ORG, vec![api_key("k1"), api_key("k2")]);
    let (e, m) = start_and_list(&sim, "1h", &[("max_pages", "2")]).await;
    assert_eq!(
        list_success(&m, "api_tokens"),
        Some(0.0),
        "3 pages > max_pages 2"
    );
    assert_eq!(list_success(&m, "api_keys"), Some(1.0));
    assert_eq!(m.count(KEY_EXPIRY, &[("org", "acme")]), 2);
    assert_eq!(tokens(&m, "api_keys", "", "7d"), Some(2.0));
    assert_eq!(sim.sim.org_requests(ORG), 3, "2 token pages + 1 key page");
    assert!(e.output().contains("more than 2 pages"), "{}", e.output());
}

#[test]
fn max_pages_and_per_token_series_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let check = |fields: &[(&'static str, &str)]| {
        let org = with_fields(acme("https://api.example", "1h"), fields);
        let path = write(dir.path(), "c.yaml", &config(&[], org));
        let file = format!("--config.file={}", path.display());
        let (code, _, err) = run_cli(&["--config.check", &file], &[("ADMIN", ADMIN_KEY)]);
        (code, err)
    };
    assert_eq!(
        check(&[("max_pages", "2500"), ("per_token_series", "false")]).0,
        0
    );
    for (bad, message) in [
        (
            ("max_pages", "0"),
            "organizations[0] (acme).max_pages: must be at least 1",
        ),
        (
            ("max_pages", "100001"),
            "organizations[0] (acme).max_pages: must be at most 100000",
        ),
        (("per_token_series", "maybe"), "per_token_series"),
    ] {
        let (code, err) = check(&[bad]);
        assert_eq!(code, 1, "{bad:?}: {err}");
        assert!(err.contains(message), "{bad:?}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Created timestamps, aggregates, per_token_series
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn created_timestamps_and_aggregates_by_status_and_expiry() {
    let sim = org_simulator(&[]).await;
    let h = 3600;
    sim.sim.add_org_tokens(
        ORG,
        vec![
            token("expired", "a1", "ALLOWED", Some(-h)),
            token("in-3d", "a2", "ALLOWED", Some(3 * DAY)),
            token("in-10d", "a3", "ALLOWED", Some(10 * DAY)),
            token("in-10d-b", "a3", "ALLOWED", Some(10 * DAY + h)),
            token("in-60d", "a4", "ALLOWED", Some(60 * DAY)),
            token("in-200d", "a5", "ALLOWED", Some(200 * DAY)),
            token("never", "a6", "ALLOWED", None),
            token("blocked", "a7", "BLOCKED", Some(3 * DAY)),
        ],
    );
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let (_e, m) = start_and_list(&sim, "1h", &[]).await;
    assert_eq!(list_success(&m, "api_tokens"), Some(1.0));
    assert_eq!(list_success(&m, "api_keys"), Some(1.0));
    let created = m
        .value(
            TOKEN_CREATED,
            &[
                ("org", "acme"),
                ("token_id", "in-3d"),
                ("status", "ALLOWED"),
            ],
        )
        .unwrap();
    assert!((created - (now() - 10 * DAY) as f64).abs() < 60.0);
    assert_eq!(m.count(TOKEN_CREATED, &[("org", "acme")]), 8);
    let created = m
        .value(
            KEY_CREATED,
            &[("org", "acme"), ("key_id", "k1"), ("key_label", "k1-label")],
        )
        .unwrap();
    assert!((created - (now() - 2 * DAY) as f64).abs() < 60.0);
    for (bucket, n) in [
        ("expired", 1.0),
        ("7d", 1.0),
        ("30d", 2.0),
        ("90d", 1.0),
        ("later", 1.0),
        ("never", 1.0),
    ] {
        assert_eq!(
            tokens(&m, "api_tokens", "ALLOWED", bucket),
            Some(n),
            "{bucket}\n{}",
            m.text()
        );
    }
    assert_eq!(tokens(&m, "api_tokens", "BLOCKED", "7d"), Some(1.0));
    assert_eq!(tokens(&m, "api_tokens", "BLOCKED", "later"), Some(0.0));
    assert_eq!(tokens(&m, "api_keys", "", "7d"), Some(1.0));
    assert_eq!(tokens(&m, "api_keys", "", "never"), Some(0.0));
    assert!(!m.text().contains("private.example") && !m.text().contains("Private Person"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_per_token_series_only_aggregates_and_health_are_exported_but_links_work() {
    let sim = org_simulator(&[("ATATT3xLINKED", "acc-linked")]).await;
    sim.sim.add_org_tokens(
        ORG,
        (0..120)
            .map(|i| token(&format!("t{i:03}"), "acc", "ALLOWED", Some(100 * DAY)))
            .chain([token("mine", "acc-linked", "ALLOWED", Some(6 * DAY))])
            .collect(),
    );
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let base = sim.base_url();
    let e = Exporter::start(
        &config(
            &[jira("linked", &base, "S")
                .org_token_id("mine")
                .expires_at("2030-01-01")],
            acme(&base, "1s").raw("per_token_series", false),
        ),
        &[("ADMIN", ADMIN_KEY), ("S", "ATATT3xLINKED")],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "linked", |m| {
            m.value(
                "apitoken_info",
                &[("token", "linked"), ("expiry_source", "org_inventory")],
            )
            .is_some()
                && list_success(m, "api_keys") == Some(1.0)
        })
        .await;
    let days = m
        .value("apitoken_days_until_expiry", &[("token", "linked")])
        .unwrap();
    assert!((days - 6.0).abs() < 0.01, "{days}");
    for family in [TOKEN_EXPIRY, TOKEN_CREATED, KEY_EXPIRY, KEY_CREATED] {
        assert!(
            !m.text().contains(family),
            "{family} exported:\n{}",
            m.text()
        );
    }
    assert!(!m
        .text()
        .contains("apitoken_org_token_last_active_timestamp_seconds"));
    assert_eq!(tokens(&m, "api_tokens", "ALLOWED", "later"), Some(120.0));
    assert_eq!(tokens(&m, "api_tokens", "ALLOWED", "7d"), Some(1.0));
    assert_eq!(tokens(&m, "api_keys", "", "7d"), Some(1.0));
    assert_eq!(list_success(&m, "api_tokens"), Some(1.0));

    // Revocation still works without the per-token series.
    assert!(sim.sim.set_org_token_status(ORG, "mine", "BLOCKED"));
    e.wait_for(Duration::from_secs(15), "revoked", |m| {
        m.value(REVOKED, &[("token", "linked"), ("source", "org_inventory")])
            .is_some()
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Revocation from the inventory, and its lag
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_blocked_linked_token_is_revoked_and_the_lag_measured_once_it_stops_working() {
    let secret = "ATATT3xREVOKEDSTILLWORKS";
    let sim = org_simulator(&[(secret, "acc-svc")]).await;
    sim.sim.add_org_tokens(
        ORG,
        vec![
            token("svc-token", "acc-svc", "ALLOWED", Some(30 * DAY)),
            token("other", "acc-other", "ALLOWED", Some(30 * DAY)),
        ],
    );
    let base = sim.base_url();
    let e = Exporter::start(
        &config(
            &[jira("svc", &base, "S").org_token_id("svc-token")],
            acme(&base, "1s"),
        ),
        &[("ADMIN", ADMIN_KEY), ("S", secret)],
    );
    e.wait_for(Duration::from_secs(20), "linked and valid", |m| {
        m.value(
            "apitoken_info",
            &[("token", "svc"), ("expiry_source", "org_inventory")],
        )
        .is_some()
            && m.value("apitoken_valid", &[("token", "svc")]) == Some(1.0)
    })
    .await;
    let m = e.scrape().await;
    assert_eq!(
        m.count(REVOKED, &[]),
        0,
        "nothing revoked yet:\n{}",
        m.text()
    );

    // Revoked by an admin: BLOCKED in the inventory at once, still working for 4 s.
    let revoked_after = now();
    assert!(sim.sim.revoke_org_token(
        ORG,
        "svc-token",
        RevokeAs::Blocked,
        secret,
        Duration::from_secs(4)
    ));
    let m = e
        .wait_for(Duration::from_secs(15), "revoked from the inventory", |m| {
            m.value(REVOKED, &[("token", "svc")]).is_some()
        })
        .await;
    let at = m
        .value(
            REVOKED,
            &[
                ("token", "svc"),
                ("provider", "jira"),
                ("source", "org_inventory"),
            ],
        )
        .unwrap();
    assert!(
        at >= revoked_after as f64 - 1.0 && at <= now() as f64 + 1.0,
        "{at}"
    );
    assert!(
        m.value(LAG, &[("token", "svc")]).is_none(),
        "no lag before it stopped working"
    );
    assert_eq!(
        m.value("apitoken_valid", &[("token", "svc")]),
        Some(1.0),
        "still works"
    );

    let m = e
        .wait_for(Duration::from_secs(20), "the lag", |m| {
            m.value(LAG, &[("token", "svc")]).is_some()
        })
        .await;
    assert_eq!(m.value("apitoken_valid", &[("token", "svc")]), Some(0.0));
    let lag = m
        .value(LAG, &[("token", "svc"), ("provider", "jira")])
        .unwrap();
    assert!((1.5..=8.0).contains(&lag), "lag {lag}");
    // Later listings keep the first time.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = e.scrape().await;
    assert_eq!(
        m.value(REVOKED, &[("token", "svc"), ("source", "org_inventory")]),
        Some(at)
    );
    assert_eq!(m.value(LAG, &[("token", "svc")]), Some(lag));
    assert!(!e.output().contains(secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_token_linked_by_account_is_revoked_and_the_config_wins() {
    let sim = org_simulator(&[("ATATT3xVANISH", "acc-solo"), ("ATATT3xCONF", "acc-conf")]).await;
    sim.sim.add_org_tokens(
        ORG,
        vec![
            token("solo", "acc-solo", "ALLOWED", Some(30 * DAY)),
            token("conf", "acc-conf", "ALLOWED", Some(30 * DAY)),
            token("third", "acc-third", "ALLOWED", Some(30 * DAY)),
        ],
    );
    let base = sim.base_url();
    let e = Exporter::start(
        &config(
            &[
                jira("by-account", &base, "S1").expected_account_id("acc-solo"),
                jira("configured", &base, "S2")
                    .org_token_id("conf")
                    .set("revoked_at", "2026-03-01T00:00:00Z"),
            ],
            acme(&base, "1s"),
        ),
        &[
            ("ADMIN", ADMIN_KEY),
            ("S1", "ATATT3xVANISH"),
            ("S2", "ATATT3xCONF"),
        ],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "linked", |m| {
            m.value(
                "apitoken_info",
                &[("token", "by-account"), ("expiry_source", "org_inventory")],
            )
            .is_some()
        })
        .await;
    assert!(m.value(REVOKED, &[("token", "by-account")]).is_none());
    assert_eq!(
        m.value(REVOKED, &[("token", "configured"), ("source", "config")]),
        Some(1_772_323_200.0)
    );

    assert!(sim.sim.remove_org_token(ORG, "solo"));
    assert!(sim.sim.set_org_token_status(ORG, "conf", "BLOCKED"));
    let m = e
        .wait_for(Duration::from_secs(15), "revoked from the inventory", |m| {
            m.value(
                REVOKED,
                &[("token", "by-account"), ("source", "org_inventory")],
            )
            .is_some()
        })
        .await;
    // The config's revoked_at wins over the inventory's: one series, source="config".
    assert_eq!(m.count(REVOKED, &[("token", "configured")]), 1);
    assert_eq!(
        m.value(REVOKED, &[("token", "configured"), ("source", "config")]),
        Some(1_772_323_200.0)
    );
    // Back to the configured (absent) expiry once the entry is gone.
    assert!(m
        .value(
            "apitoken_info",
            &[("token", "by-account"), ("expiry_source", "none")]
        )
        .is_some());
    // "third" is listed but unrelated to any configured token: nothing revoked for it.
    assert_eq!(m.count(REVOKED, &[]), 2);
}

// ---------------------------------------------------------------------------------------
// Size
// ---------------------------------------------------------------------------------------

/// 250,000 tokens on 2,500 pages (the default `max_pages`): about 15 s in a debug build on
/// 2 cores; `bench/inventory.sh` measures it in release.
#[tokio::test(flavor = "multi_thread")]
async fn an_organization_of_250000_tokens_completes() {
    let sim = org_simulator(&[]).await;
    sim.sim.add_generated_org_tokens(ORG, 250_000);
    sim.sim
        .set_org_rate_limit(ORG, 1_000_000, Duration::from_secs(60));
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let e = Exporter::start(
        &config(
            &[],
            acme(&sim.base_url(), "1h").raw("per_token_series", false),
        ),
        &[("ADMIN", ADMIN_KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(240), "250,000 tokens listed", |m| {
            list_success(m, "api_tokens").is_some()
        })
        .await;
    assert_eq!(list_success(&m, "api_tokens"), Some(1.0), "{}", e.output());
    assert_eq!(sim.sim.org_requests(ORG), 2501);
    let total: f64 = m
        .samples(
            "apitoken_org_tokens",
            &[("org", "acme"), ("list", "api_tokens")],
        )
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 250_000.0);
    assert_eq!(tokens(&m, "api_tokens", "ALLOWED", "never"), Some(25_000.0));
    assert!(
        m.text().len() < 64 * 1024,
        "{} bytes without per-token series",
        m.text().len()
    );
}
