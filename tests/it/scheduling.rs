//! Scheduler behaviour seen from outside: back-off on 429, the concurrency limit, jittered
//! first probes, scrapes that never cause outbound calls, token files re-read on rotation.

use std::time::{Duration, Instant};

use apitoken_exporter::simulator::Behaviour;

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
    // Observe for 7 s after every token's first probe.
    e.wait_for(Duration::from_secs(10), "first probes", |m| {
        cases
            .iter()
            .all(|(n, _)| m.errors(n, "rate_limited") >= 1.0)
    })
    .await;
    let start: Vec<u64> = creds.iter().map(|(s, _)| sim.sim.requests_for(s)).collect();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let delta: Vec<u64> = creds
        .iter()
        .zip(&start)
        .map(|((s, _), n)| sim.sim.requests_for(s) - n)
        .collect();
    // 1 s interval: without back-off ~7 requests. Retry-After 4 s: at most 2.
    assert!(delta[0] <= 2, "seconds form not honoured: {delta:?}");
    // The date is ~30 s ahead of the first probe: nothing more within the window.
    assert_eq!(delta[1], 0, "HTTP-date form not honoured: {delta:?}");
    // Long.MAX clamps to 1 h: no further request, and nothing broke.
    assert_eq!(delta[2], 0, "huge Retry-After: {delta:?}");
    // No header: the normal interval applies.
    assert!(
        delta[3] >= 5,
        "no Retry-After should keep the interval: {delta:?}"
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
    let config = ConfigBuilder::new()
        .global("probe_interval", "30s")
        .token(jira("t", &sim.base_url(), "S"));
    let e = Exporter::start(&config.yaml(), &[("S", "ATATT3xSCRAPE")]);
    e.wait_for(Duration::from_secs(40), "first probe", |m| {
        m.has("apitoken_valid", &[("token", "t")])
    })
    .await;
    let before = sim.sim.stats().requests_total;
    let started = Instant::now();
    for _ in 0..50 {
        e.scrape().await;
        e.get("/").await;
    }
    assert!(started.elapsed() < Duration::from_secs(20));
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
