//! Atlassian as it is at the end of 2026, against the real binary and the simulator over
//! 127.0.0.1: a rate-limited side probe never flips a dead token between "anonymous" and
//! "rejected", a 403 is `forbidden` (not a dead token), scoped Bitbucket API tokens report
//! their scopes, and service accounts authenticate with OAuth 2.0 client credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use apitoken_sim::{Behaviour, Credential, RunningSimulator, ScopedToken, Simulator};

use crate::harness::Exporter;

const EMAIL: &str = "svc@acme.example";
const CLIENT_SECRET: &str = "oauth-client-secret-NEVER-SHOWN";

fn cred(account: &str, behaviour: Behaviour) -> Credential {
    Credential {
        account_id: account.into(),
        email: EMAIL.into(),
        username: "svc".into(),
        behaviour,
    }
}

/// The `/metrics` text.
async fn metrics(e: &Exporter) -> String {
    e.scrape().await.text().to_string()
}

/// Polls `/metrics` until `ready` holds on its text (at most `within`).
async fn wait_for(e: &Exporter, within: Duration, ready: impl Fn(&str) -> bool) -> String {
    e.wait_for(within, "the condition", |m| ready(m.text()))
        .await
        .text()
        .to_string()
}

/// The value of the sample whose name and labels start with `series` (e.g.
/// `apitoken_valid{token="a"`), if present.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample of `series` (a counter over its label values).
fn sum(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn start_sim(sim: &Simulator) -> RunningSimulator {
    sim.clone()
        .start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn jira_token(name: &str, site: &str, env: &str, extra: &str) -> String {
    format!(
        "  - {{name: {name}, provider: jira, site: \"{site}\", email: {EMAIL}, token_env: {env}, probe_interval: 1s{extra}}}\n"
    )
}

fn config(tokens: &[String]) -> String {
    format!(
        "global: {{allow_insecure_http: true, probe_timeout: 5s}}\ntokens:\n{}",
        tokens.concat()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_token_whose_side_probe_fails_every_second_probe_stays_anonymous_for_20_probes() {
    let sim = Simulator::new();
    sim.add_credential("ATATT3xFLIPDEAD", cred("acc-dead", Behaviour::Dead));
    // Atlassian's API-token rate limits hit the anonymous side probe every other time.
    sim.flaky_endpoint("/rest/api/3/project/search", 2, 503, None);
    let running = start_sim(&sim).await;
    let exporter = Exporter::start(
        &config(&[jira_token("flip", &running.base_url(), "FLIP", "")]),
        &[("FLIP", "ATATT3xFLIPDEAD")],
    );
    let probes = |m: &str| sum(m, "apitoken_probes_total{token=\"flip\"");
    let mut seen_anonymous = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = metrics(&exporter).await;
        if let Some(v) = value(&m, "apitoken_anonymous_fallback{token=\"flip\"") {
            seen_anonymous = true;
            assert_eq!(
                v,
                1.0,
                "anonymous_fallback flipped after {} probes:\n{m}",
                probes(&m)
            );
            assert_eq!(value(&m, "apitoken_valid{token=\"flip\""), Some(0.0));
        }
        assert_eq!(
            value(
                &m,
                "apitoken_probes_total{token=\"flip\",provider=\"jira\",result=\"rejected\""
            ),
            None,
            "a failing side probe must not conclude `rejected`:\n{m}"
        );
        if probes(&m) >= 20.0 {
            assert!(seen_anonymous, "{m}");
            let errors = value(
                &m,
                "apitoken_probe_errors_total{token=\"flip\",provider=\"jira\",reason=\"http_5xx\"",
            );
            assert!(
                errors.unwrap_or(0.0) >= 8.0,
                "the failed side probes are errors:\n{m}"
            );
            assert!(
                value(
                    &m,
                    "apitoken_probes_total{token=\"flip\",provider=\"jira\",result=\"anonymous\""
                )
                .unwrap_or(0.0)
                    >= 8.0
            );
            break;
        }
        assert!(Instant::now() < deadline, "20 probes did not happen:\n{m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(running);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limited_side_probe_is_rate_limited_and_its_retry_after_honoured() {
    let sim = Simulator::new();
    sim.add_credential("ATATT3xSIDE429", cred("acc-dead", Behaviour::Dead));
    sim.flaky_endpoint("/rest/api/3/project/search", 1, 429, Some("120"));
    let running = start_sim(&sim).await;
    let exporter = Exporter::start(
        &config(&[jira_token("side", &running.base_url(), "SIDE", "")]),
        &[("SIDE", "ATATT3xSIDE429")],
    );
    let m = wait_for(&exporter, Duration::from_secs(20), |m| {
        value(
            m,
            "apitoken_probe_errors_total{token=\"side\",provider=\"jira\",reason=\"rate_limited\"",
        )
        .is_some()
    })
    .await;
    assert_eq!(
        value(&m, "apitoken_probe_interval_seconds{token=\"side\""),
        Some(120.0),
        "{m}"
    );
    assert_eq!(
        value(&m, "apitoken_valid{token=\"side\""),
        None,
        "no conclusion yet:\n{m}"
    );
    let page = exporter.get("/").await.1;
    assert!(page.contains("rate_limited"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bitbucket_api_token_without_read_user_is_forbidden_and_shows_its_scopes() {
    let sim = Simulator::new();
    let scoped = |scopes: &[&str]| ScopedToken {
        credential_type: "api_token".into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    sim.add_credential("ATATT3xBBREPO", cred("acc-bb", Behaviour::Valid));
    sim.set_scoped_token("ATATT3xBBREPO", scoped(&["read:repository:bitbucket"]));
    sim.add_credential("ATATT3xBBFULL", cred("acc-bb2", Behaviour::Valid));
    sim.set_scoped_token(
        "ATATT3xBBFULL",
        scoped(&["read:user:bitbucket", "read:repository:bitbucket"]),
    );
    let running = start_sim(&sim).await;
    let base = running.base_url();
    let bb = |name: &str, env: &str| {
        format!("  - {{name: {name}, provider: bitbucket, site: \"{base}\", email: {EMAIL}, token_env: {env}, probe_interval: 1s}}\n")
    };
    let exporter = Exporter::start(
        &config(&[bb("repo-only", "REPO"), bb("full", "FULL")]),
        &[("REPO", "ATATT3xBBREPO"), ("FULL", "ATATT3xBBFULL")],
    );
    let m = wait_for(&exporter, Duration::from_secs(20), |m| {
        value(m, "apitoken_probe_errors_total{token=\"repo-only\",provider=\"bitbucket\",reason=\"forbidden\"").is_some()
            && value(m, "apitoken_valid{token=\"full\"").is_some()
    }).await;
    // A 403 is not a dead token: no `valid 0`, nothing rejected.
    assert_eq!(value(&m, "apitoken_valid{token=\"repo-only\""), None, "{m}");
    assert_eq!(
        value(&m, "apitoken_probe_success{token=\"repo-only\""),
        Some(0.0)
    );
    assert_eq!(value(&m, "apitoken_valid{token=\"full\""), Some(1.0));
    for line in [
        "apitoken_scope_info{token=\"repo-only\",provider=\"bitbucket\",scope=\"read:repository:bitbucket\"} 1",
        "apitoken_scope_info{token=\"full\",provider=\"bitbucket\",scope=\"read:user:bitbucket\"} 1",
    ] {
        assert!(m.contains(line), "missing {line}:\n{m}");
    }
    assert!(
        m.contains("token=\"repo-only\"") && m.contains("credential_type=\"api_token\""),
        "{m}"
    );
    let page = exporter.get("/").await.1;
    assert!(
        page.contains("forbidden") && page.contains("read:user:bitbucket"),
        "{page}"
    );
    let logs = exporter.output();
    assert!(
        logs.contains("read:user:bitbucket"),
        "the log names the missing scope:\n{logs}"
    );
}

fn oauth_token(name: &str, base: &str, client_id: &str) -> String {
    format!(
        "  - name: {name}\n    provider: jira\n    site: \"{base}/ex/jira/c10d-1\"\n    auth: oauth2\n    oauth2: {{client_id: {client_id}, token_url: \"{base}/oauth/token\", scopes: [read:jira-user]}}\n    token_env: CLIENT_SECRET\n    expected_account_id: sa-1\n    probe_interval: 1s\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_account_authenticates_with_client_credentials_and_reuses_its_access_token() {
    let sim = Simulator::new();
    sim.add_oauth_client(
        "sa-client",
        CLIENT_SECRET,
        cred("sa-1", Behaviour::Valid),
        Duration::from_secs(3600),
    );
    let running = start_sim(&sim).await;
    let exporter = Exporter::start(
        &config(&[oauth_token("sa", &running.base_url(), "sa-client")]),
        &[("CLIENT_SECRET", CLIENT_SECRET)],
    );
    let m = wait_for(&exporter, Duration::from_secs(20), |m| {
        value(
            m,
            "apitoken_probes_total{token=\"sa\",provider=\"jira\",result=\"valid\"",
        )
        .unwrap_or(0.0)
            >= 3.0
    })
    .await;
    assert_eq!(
        sim.oauth_exchanges("sa-client"),
        1,
        "the access token is cached between probes"
    );
    assert!(
        m.contains("auth=\"oauth2\"") && m.contains("account_id=\"sa-1\""),
        "{m}"
    );
    // The vendor revokes the access tokens early: the next probe re-exchanges and stays valid.
    sim.expire_access_tokens();
    let before = sum(&m, "apitoken_probes_total{token=\"sa\"");
    let m = wait_for(&exporter, Duration::from_secs(20), |m| {
        sum(m, "apitoken_probes_total{token=\"sa\"") >= before + 2.0
    })
    .await;
    assert_eq!(sim.oauth_exchanges("sa-client"), 2);
    assert_eq!(
        value(
            &m,
            "apitoken_probes_total{token=\"sa\",provider=\"jira\",result=\"rejected\""
        ),
        None,
        "{m}"
    );
    assert_eq!(value(&m, "apitoken_valid{token=\"sa\""), Some(1.0));
    // Neither the client secret nor an access token shows anywhere.
    let shown = format!("{m}{}{}", exporter.get("/").await.1, exporter.output());
    assert!(!shown.contains(CLIENT_SECRET), "the client secret leaked");
    assert!(!shown.contains("sim-access-"), "an access token leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_client_is_rejected_and_its_secret_never_shown() {
    let sim = Simulator::new();
    sim.add_oauth_client(
        "sa-client",
        "the-real-secret",
        cred("sa-1", Behaviour::Valid),
        Duration::from_secs(3600),
    );
    let running = start_sim(&sim).await;
    let exporter = Exporter::start(
        &config(&[oauth_token("sa", &running.base_url(), "sa-client")]),
        &[("CLIENT_SECRET", CLIENT_SECRET)],
    );
    let m = wait_for(&exporter, Duration::from_secs(20), |m| {
        value(m, "apitoken_valid{token=\"sa\"").is_some()
    })
    .await;
    assert_eq!(
        value(&m, "apitoken_valid{token=\"sa\""),
        Some(0.0),
        "invalid_client is a refusal:\n{m}"
    );
    assert_eq!(
        value(&m, "apitoken_anonymous_fallback{token=\"sa\""),
        Some(0.0)
    );
    let shown = format!("{m}{}{}", exporter.get("/").await.1, exporter.output());
    assert!(
        !shown.contains(CLIENT_SECRET) && !shown.contains("the-real-secret"),
        "a secret leaked"
    );
}
