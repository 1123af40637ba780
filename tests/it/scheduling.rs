//! Scheduler behaviour seen from outside: back-off on 429, the concurrency limit, jittered
//! first probes, scrapes that never cause outbound calls, token files re-read on rotation,
//! and what a reload keeps.

use std::time::{Duration, Instant};

use apitoken_exporter::scheduler::RELOAD_SPREAD;
use apitoken_sim::Behaviour;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_in_every_form() {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(30));
    let cases = [
        ("seconds", Some("4".to_string())),
        ("date", Some(date)),
        ("huge", Some("9223372036854775807".to_string())),
        ("none", None),
    ];
    let mut creds = vec![];
    let mut tokens = vec![];
    let mut env = vec![];
    for (name, ra) in &cases {
        let secret = format!("ATATT3xRETRY{name}SECRET");
        creds.push((
            secret.clone(),
            cred(
                name,
                EMAIL,
                Behaviour::RateLimited {
                    retry_after: ra.clone(),
                },
            ),
        ));
        env.push((format!("S_{name}"), secret));
    }
    let cred_refs: Vec<(&str, _)> = creds.iter().map(|(s, c)| (s.as_str(), c.clone())).collect();
    let sim = simulator(&cred_refs).await;
    for (name, _) in &cases {
        tokens.push(jira(name, &sim.base_url(), &format!("S_{name}")));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .tokens(tokens);
    let e = Exporter::start(&config.yaml(), &env_refs);
    let m = e
        .wait_for(Duration::from_secs(10), "first probes", |m| {
            cases
                .iter()
                .all(|(n, _)| m.errors(n, "rate_limited") >= 1.0)
        })
        .await;
    // The back-off each form asked for, as the exporter shows it.
    let interval = |n: &str| {
        m.value("apitoken_probe_interval_seconds", &[("token", n)])
            .unwrap()
    };
    assert_eq!(interval("seconds"), 4.0);
    let date_wait = interval("date");
    assert!((20.0..=31.0).contains(&date_wait), "date: {date_wait}");
    assert_eq!(interval("huge"), 3600.0, "Long.MAX clamps to 1 h");
    assert_eq!(interval("none"), 1.0);

    // Watch the simulator's request log until the 4 s form has come round twice and the
    // unthrottled one six times.
    let [seconds, date, huge, none] = [0, 1, 2, 3].map(|i| creds[i].0.as_str());
    eventually(
        Duration::from_secs(20),
        "'seconds' probed 3 times and 'none' 6 times",
        || sim.sim.requests_for(seconds) >= 3 && sim.sim.requests_for(none) >= 6,
    )
    .await;
    let gaps = |secret: &str| -> Vec<f64> {
        let at = sim.sim.request_offsets_for(secret);
        at.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect()
    };
    // Retry-After 4 counts from each answer: never sooner.
    let g = gaps(seconds);
    assert!(
        g.iter().all(|&x| x >= 3.9),
        "seconds form not honoured: {g:?}"
    );
    // The date is ~30 s ahead, Long.MAX clamps to 1 h: nothing since the first probe.
    assert_eq!(
        sim.sim.requests_for(date),
        1,
        "HTTP-date form not honoured: {:?}",
        gaps(date)
    );
    assert_eq!(
        sim.sim.requests_for(huge),
        1,
        "huge Retry-After: {:?}",
        gaps(huge)
    );
    // No header: the normal 1 s interval (fixed cadence: on average, and never hammering).
    let g = gaps(none);
    let mean = g.iter().sum::<f64>() / g.len() as f64;
    assert!(
        mean <= 1.4 && g.iter().all(|&x| x >= 0.5),
        "no Retry-After should keep the interval: {g:?}"
    );
    let (status, _) = e.get("/-/healthy").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_limit_bounds_in_flight_probes() {
    let n = 8;
    let sim = simulator(&[]).await;
    let fleet = Fleet::new(
        &sim,
        n,
        "SLOW",
        Behaviour::Slow {
            delay: Duration::from_millis(400),
        },
    );
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .global("max_concurrency", 2)
        .tokens(fleet.tokens.clone());
    let e = Exporter::start(&config.yaml(), &fleet.env());
    e.wait_for(Duration::from_secs(20), "every token probed twice", |m| {
        (0..n).all(|i| m.probes(&format!("t{i}"), "valid") >= 2.0)
    })
    .await;
    let stats = sim.sim.stats();
    assert_eq!(
        stats.max_in_flight, 2,
        "8 slow tokens with max_concurrency 2: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn first_probes_are_spread_over_the_interval() {
    let n = 16;
    let sim = simulator(&[]).await;
    let fleet = Fleet::new(&sim, n, "JITTER", Behaviour::Valid);
    let config = ConfigBuilder::new()
        .global("probe_interval", "6s")
        .tokens(fleet.tokens.clone());
    let e = Exporter::start(&config.yaml(), &fleet.env());
    e.wait_for(Duration::from_secs(15), "all first probes", |m| {
        (0..n).all(|i| m.has("apitoken_valid", &[("token", &format!("t{i}"))]))
    })
    .await;
    let firsts: Vec<f64> = fleet
        .secrets
        .iter()
        .map(|s| sim.sim.request_offsets_for(s)[0].as_secs_f64())
        .collect();
    let min = firsts.iter().copied().fold(f64::MAX, f64::min);
    let max = firsts.iter().copied().fold(f64::MIN, f64::max);
    // 16 uniform draws over 6 s: all within 1.5 s of each other has probability < 1e-8.
    assert!(max - min > 1.5, "first probes not spread: {firsts:?}");
    assert!(
        max - min < 6.5,
        "first probes beyond one interval: {firsts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scrapes_never_cause_outbound_calls() {
    let sim = simulator(&[("ATATT3xSCRAPE", cred("acc", EMAIL, Behaviour::Valid))]).await;
    // One probe soon after the reload, the next in an hour: however long the scrapes
    // take, any request the simulator sees after the first probe came from a scrape.
    let e = hourly_exporter(&[("S", "ATATT3xSCRAPE")]).await;
    let config = ConfigBuilder::new()
        .global("probe_interval", "1h")
        .token(jira("t", &sim.base_url(), "S"));
    reload_until_probed(&e, &config, &["t"]).await;
    let before = sim.sim.stats().requests_total;
    for _ in 0..50 {
        e.scrape().await;
        e.get("/").await;
    }
    assert_eq!(
        sim.sim.stats().requests_total,
        before,
        "a scrape hit Atlassian"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_token_file_is_picked_up_without_reload() {
    let good = "ATATT3xROTATEDgood";
    let sim = simulator(&[(good, cred("acc", EMAIL, Behaviour::Valid))]).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "token", "ATATT3xOLDrevoked\n");
    let config = ConfigBuilder::new().global("probe_interval", "1s").token(
        TokenSpec::jira("t")
            .site(&format!("{}/closed", sim.base_url()))
            .email(EMAIL)
            .token_file(&file),
    );
    let e = Exporter::start(&config.yaml(), &[]);
    e.wait_for(Duration::from_secs(10), "rejected", |m| {
        m.value("apitoken_valid", &[("token", "t")]) == Some(0.0)
    })
    .await;
    std::fs::write(&file, format!("{good}\n\n")).unwrap();
    e.wait_for(Duration::from_secs(10), "valid after rotation", |m| {
        m.value("apitoken_valid", &[("token", "t")]) == Some(1.0)
    })
    .await;
}

/// The probe grid (`scheduler::token::SLOT`): a probe due at `t` starts at the next
/// whole second.
const GRID: Duration = Duration::from_secs(1);

/// How long after a reload a new or changed token's first probe may start:
/// `RELOAD_SPREAD` of jitter, rounded up to the grid.
fn reload_window() -> Duration {
    RELOAD_SPREAD + GRID
}

/// An exporter with an hour-long interval and no tokens, so that the tokens a reload
/// then adds are probed once within [`reload_window`] and not again for an hour (at
/// start-up, first probes would be spread over that hour).
async fn hourly_exporter(env: &[(&str, &str)]) -> Exporter {
    Exporter::start(
        &ConfigBuilder::new().global("probe_interval", "1h").yaml(),
        env,
    )
}

async fn reload_to(e: &Exporter, config: &ConfigBuilder) -> Instant {
    e.write_config(&config.yaml());
    let at = Instant::now();
    assert_eq!(e.reload().await, (200, "config reloaded\n".to_string()));
    at
}

/// Reloads to `config` and waits until each of `tokens` has had its first probe.
async fn reload_until_probed(e: &Exporter, config: &ConfigBuilder, tokens: &[&str]) -> Metrics {
    reload_to(e, config).await;
    e.wait_for(
        reload_window() + Duration::from_secs(5),
        &format!("first probes of {tokens:?}"),
        |m| tokens.iter().all(|t| last_probe(m, t).is_some()),
    )
    .await
}

fn last_probe(m: &Metrics, token: &str) -> Option<f64> {
    m.value("apitoken_last_probe_timestamp_seconds", &[("token", token)])
}

/// `token`'s last probe and probe count in `now` are exactly those in `before`.
fn assert_unchanged(before: &Metrics, now: &Metrics, token: &str, when: &str) {
    assert_eq!(
        last_probe(now, token),
        last_probe(before, token),
        "{token}: {when}, its last probe changed (was it reset?)"
    );
    assert_eq!(
        now.probes(token, "valid"),
        before.probes(token, "valid"),
        "{token}: {when}, its probe counter changed (was it reset?)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_schedule_and_state_of_unchanged_tokens() {
    let secrets = [
        ("S_KEPT", "ATATT3xRELOADkept"),
        ("S_REL", "ATATT3xRELOADrelabelled"),
        ("S_ADD", "ATATT3xRELOADadded"),
    ];
    let creds: Vec<(&str, _)> = secrets
        .iter()
        .map(|(_, s)| (*s, cred("acc", EMAIL, Behaviour::Valid)))
        .collect();
    let sim = simulator(&creds).await;
    let base = sim.base_url();
    let e = hourly_exporter(&secrets).await;
    let kept = jira("kept", &base, "S_KEPT");
    let relabelled = |team: &str| jira("relabelled", &base, "S_REL").label("team", team);
    let config = ConfigBuilder::new().global("probe_interval", "1h");
    let before = reload_until_probed(
        &e,
        &config.clone().token(kept.clone()).token(relabelled("a")),
        &["kept", "relabelled"],
    )
    .await;
    let requests = |s: &str| sim.sim.request_offsets_for(s);
    let (kept_requests, relabelled_requests) = (requests(secrets[0].1), requests(secrets[1].1));

    // Unchanged, a label changed (not a probe setting), and a new token.
    let reloaded = reload_to(
        &e,
        &config
            .token(kept)
            .token(relabelled("b"))
            .token(jira("added", &base, "S_ADD")),
    )
    .await;
    let after = e.scrape().await;
    for token in ["kept", "relabelled"] {
        assert_unchanged(&before, &after, token, "right after the reload");
    }
    assert!(
        after.has("apitoken_info", &[("token", "relabelled"), ("team", "b")]),
        "the new label is not applied at once:\n{}",
        after.text()
    );

    // The new token is probed within the window; the unchanged ones are not probed again
    // within it (a restarted loop would probe them by its end) nor after.
    eventually(
        reload_window() + Duration::from_secs(2),
        "the added token's first probe",
        || sim.sim.requests_for(secrets[2].1) >= 1,
    )
    .await;
    tokio::time::sleep_until((reloaded + reload_window() + Duration::from_millis(500)).into())
        .await;
    assert_eq!(
        requests(secrets[0].1),
        kept_requests,
        "the unchanged token was probed again after the reload (its schedule restarted)"
    );
    assert_eq!(
        requests(secrets[1].1),
        relabelled_requests,
        "the relabelled token was probed again after the reload (its schedule restarted)"
    );
    let end = e.scrape().await;
    for token in ["kept", "relabelled"] {
        assert_unchanged(&before, &end, token, "once the reload window has passed");
        assert_eq!(end.probes(token, "valid"), 1.0, "{token}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_reprobes_a_changed_token_within_the_reload_window() {
    let secret = "ATATT3xRELOADchanged";
    let sim = simulator(&[(secret, cred("acc", EMAIL, Behaviour::Valid))]).await;
    let e = hourly_exporter(&[("S", secret)]).await;
    let changed = |account: &str| {
        jira("changed", &sim.base_url(), "S")
            .probe_interval("1h")
            .expected_account_id(account)
    };
    let config = ConfigBuilder::new().global("probe_interval", "1h");
    reload_until_probed(&e, &config.clone().token(changed("acc-old")), &["changed"]).await;
    assert_eq!(sim.sim.requests_for(secret), 1);

    // A credential setting changes (the expected account): the token restarts with a
    // fresh state, and is probed again within the window (not after an hour). (A change
    // of the interval alone keeps the state: `hardening::a_reload_that_only_changes_the_interval_keeps_state_and_counters`.)
    let reloaded = reload_to(&e, &config.token(changed("acc"))).await;
    eventually(
        // The window, plus a little for the request to arrive on a busy machine.
        reload_window() + Duration::from_millis(700),
        "the changed token's probe after the reload",
        || sim.sim.requests_for(secret) >= 2,
    )
    .await;
    println!(
        "changed token re-probed {:?} after the reload",
        reloaded.elapsed()
    );
    let m = e
        .wait_for(Duration::from_secs(5), "the probe recorded", |m| {
            m.probes("changed", "valid") >= 1.0
        })
        .await;
    assert_eq!(
        m.probes("changed", "valid"),
        1.0,
        "a changed token starts with fresh counters"
    );
    assert_eq!(sim.sim.requests_for(secret), 2);
}
