//! One test per probe outcome and error reason (README.md, "How tokens are classified"): the
//! real binary probing the simulator over 127.0.0.1, asserted through /metrics.

use std::time::Duration;

use apitoken_sim::{Behaviour, RunningSimulator};

use crate::harness::*;

const SECRET: &str = "ATATT3xOUTCOMEtestSECRET0123456789=ABCDEF01";
const ACCOUNT: &str = "5b10a2844c20165700ede21g";

struct Case<'a> {
    provider: &'a str,
    /// Appended to the simulator's base URL (`/closed` = anonymous access off).
    site_path: &'a str,
    /// None: the simulator does not know the secret (a mistyped token).
    behaviour: Option<Behaviour>,
    config_email: &'a str,
    expected_account_id: Option<&'a str>,
    timeout: &'a str,
}

impl Default for Case<'_> {
    fn default() -> Self {
        Case {
            provider: "jira",
            site_path: "",
            behaviour: Some(Behaviour::Valid),
            config_email: EMAIL,
            expected_account_id: None,
            timeout: "2s",
        }
    }
}

/// Starts simulator + exporter for one token `t` and waits for its first probe.
async fn first_probe(case: Case<'_>) -> (Metrics, Exporter, RunningSimulator) {
    let creds: Vec<(&str, _)> = case
        .behaviour
        .clone()
        .map(|b| vec![(SECRET, cred(ACCOUNT, EMAIL, b))])
        .unwrap_or_default();
    let sim = simulator(&creds).await;
    let site = format!("{}{}", sim.base_url(), case.site_path);
    let mut token = TokenSpec::new(case.provider, "t")
        .site(&site)
        .token_env("SECRET_T");
    if case.provider != "atlassian_admin" {
        token = token.email(case.config_email);
    }
    if let Some(account) = case.expected_account_id {
        token = token.expected_account_id(account);
    }
    let (m, exporter) = probe_once(token, case.timeout).await;
    (m, exporter, sim)
}

/// An exporter probing the one token `t` every second (secret [`SECRET`] in
/// `SECRET_T`), once its first probe has finished.
async fn probe_once(token: TokenSpec, timeout: &str) -> (Metrics, Exporter) {
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .global("probe_timeout", timeout)
        .token(token);
    let exporter = Exporter::start(&config.yaml(), &[("SECRET_T", SECRET)]);
    let m = exporter
        .wait_for(Duration::from_secs(10), "first probe", |m| {
            m.has("apitoken_last_probe_timestamp_seconds", &[("token", "t")])
        })
        .await;
    (m, exporter)
}

fn assert_state(m: &Metrics, valid: f64, anonymous: f64, mismatch: f64) {
    assert_eq!(
        m.value("apitoken_valid", &[("token", "t")]),
        Some(valid),
        "{}",
        m.text()
    );
    assert_eq!(
        m.value("apitoken_anonymous_fallback", &[("token", "t")]),
        Some(anonymous),
        "{}",
        m.text()
    );
    assert_eq!(
        m.value("apitoken_identity_mismatch", &[("token", "t")]),
        Some(mismatch),
        "{}",
        m.text()
    );
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", "t")]),
        Some(1.0)
    );
}

/// An error outcome: probe_success 0, the reason counted, and no conclusive series.
fn assert_error(m: &Metrics, reason: &str) {
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", "t")]),
        Some(0.0),
        "{}",
        m.text()
    );
    assert!(
        m.errors("t", reason) >= 1.0,
        "no {reason} error:\n{}",
        m.text()
    );
    assert!(m.probes("t", "error") >= 1.0);
    assert!(
        !m.has("apitoken_valid", &[("token", "t")]),
        "an error before any conclusive probe must leave valid absent:\n{}",
        m.text()
    );
}

// ---- valid / mismatch ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jira_valid_token_reads_valid_with_its_account_id() {
    let (m, _e, _s) = first_probe(Case::default()).await;
    assert_state(&m, 1.0, 0.0, 0.0);
    assert!(m.probes("t", "valid") >= 1.0);
    assert!(m.has("apitoken_last_valid_timestamp_seconds", &[("token", "t")]));
    assert!(
        m.has("apitoken_info", &[("token", "t"), ("account_id", ACCOUNT)]),
        "{}",
        m.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jira_email_comparison_is_case_insensitive() {
    let (m, _e, _s) = first_probe(Case {
        config_email: "SVC@Acme.Example",
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn jira_unexpected_account_is_a_mismatch() {
    let (m, _e, _s) = first_probe(Case {
        expected_account_id: Some("someone-else"),
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 1.0);
    assert!(m.probes("t", "mismatch") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn confluence_valid_and_an_unexpected_account_is_a_mismatch() {
    let (m, _e, _s) = first_probe(Case {
        provider: "confluence",
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 0.0);
    let (m, _e, _s) = first_probe(Case {
        provider: "confluence",
        expected_account_id: Some("not-this-one"),
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn bitbucket_app_password_is_valid_with_the_username() {
    // Bitbucket app passwords authenticate with the username, not the email.
    let (m, _e, _s) = first_probe(Case {
        provider: "bitbucket",
        config_email: "svc",
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_key_valid_reads_valid() {
    let (m, _e, _s) = first_probe(Case {
        provider: "atlassian_admin",
        ..Case::default()
    })
    .await;
    assert_state(&m, 1.0, 0.0, 0.0);
}

// ---- anonymous fallback ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jira_dead_token_served_as_anonymous() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::Dead),
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 1.0, 0.0);
    assert!(m.probes("t", "anonymous") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn jira_valid_token_with_wrong_email_is_anonymous() {
    let (m, _e, _s) = first_probe(Case {
        config_email: "someone.else@acme.example",
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 1.0, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn jira_200_without_account_id_is_anonymous() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::NoAccountId),
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 1.0, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn confluence_anonymous_user_is_an_anonymous_fallback() {
    let (m, _e, _s) = first_probe(Case {
        provider: "confluence",
        behaviour: Some(Behaviour::Dead),
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 1.0, 0.0);
}

// ---- rejected ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn jira_dead_token_on_closed_site_is_rejected() {
    let (m, _e, _s) = first_probe(Case {
        site_path: "/closed",
        behaviour: Some(Behaviour::Dead),
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 0.0, 0.0);
    assert!(m.probes("t", "rejected") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn jira_mistyped_token_is_rejected_even_on_open_site() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: None,
        ..Case::default()
    })
    .await;
    assert_state(&m, 0.0, 0.0, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn closed_confluence_dead_bitbucket_and_unknown_admin_key_are_rejected() {
    for case in [
        Case {
            provider: "confluence",
            site_path: "/closed",
            behaviour: Some(Behaviour::Dead),
            ..Case::default()
        },
        Case {
            provider: "bitbucket",
            behaviour: Some(Behaviour::Dead),
            ..Case::default()
        },
        Case {
            provider: "atlassian_admin",
            behaviour: None,
            ..Case::default()
        },
    ] {
        let provider = case.provider;
        let (m, _e, _s) = first_probe(case).await;
        assert!(m.probes("t", "rejected") >= 1.0, "{provider}: {}", m.text());
        assert_state(&m, 0.0, 0.0, 0.0);
    }
}

// ---- errors ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn slow_answer_is_a_timeout() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::Slow {
            delay: Duration::from_secs(5),
        }),
        timeout: "300ms",
        ..Case::default()
    })
    .await;
    assert_error(&m, "timeout");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_connection_is_connect() {
    let sim = simulator(&[]).await;
    let port = sim.addr.port();
    sim.shutdown();
    eventually(
        Duration::from_secs(10),
        "the simulator stops listening",
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
    )
    .await;
    let site = format!("http://127.0.0.1:{port}");
    let (m, _e) = probe_once(jira("t", &site, "SECRET_T"), "2s").await;
    assert_error(&m, "connect");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_to_a_plain_http_server_is_tls() {
    let sim = simulator(&[(SECRET, cred(ACCOUNT, EMAIL, Behaviour::Valid))]).await;
    let site = sim.base_url().replace("http://", "https://");
    let (m, _e) = probe_once(jira("t", &site, "SECRET_T"), "2s").await;
    assert_error(&m, "tls");
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_requests_is_rate_limited() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::RateLimited {
            retry_after: Some("30".into()),
        }),
        ..Case::default()
    })
    .await;
    assert_error(&m, "rate_limited");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_is_http_5xx() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::ServerError { status: 503 }),
        ..Case::default()
    })
    .await;
    assert_error(&m, "http_5xx");
}

#[tokio::test(flavor = "multi_thread")]
async fn non_json_body_is_bad_response() {
    let (m, _e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::NonJson),
        ..Case::default()
    })
    .await;
    assert_error(&m, "bad_response");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_over_one_mebibyte_is_bad_response() {
    let (m, e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::HugeBody {
            bytes: 2 * 1024 * 1024,
        }),
        ..Case::default()
    })
    .await;
    assert_error(&m, "bad_response");
    let (_, page) = e.get("/").await;
    assert!(page.contains("larger than 1048576 bytes"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_just_under_the_1_mib_cap_is_read_not_cut() {
    // Valid JSON is not produced by HugeBody, so a sub-cap body fails parsing — but as a
    // parse error, not as the size cap: the cap must not cut bodies that fit.
    let (_m, e, _s) = first_probe(Case {
        behaviour: Some(Behaviour::HugeBody {
            bytes: 1024 * 1024 - 16,
        }),
        ..Case::default()
    })
    .await;
    let (_, page) = e.get("/").await;
    assert!(page.contains("not JSON"), "{page}");
    assert!(!page.contains("larger than"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_credentials_stay_home() {
    let sim = simulator(&[]).await;
    let target = format!("{}/redirect-target/rest/api/3/myself", sim.base_url());
    sim.sim.add_credential(
        SECRET,
        cred(ACCOUNT, EMAIL, Behaviour::Redirect { location: target }),
    );
    let (_, e) = probe_once(jira("t", &sim.base_url(), "SECRET_T"), "2s").await;
    let m = e
        .wait_for(Duration::from_secs(10), "two probes", |m| {
            m.probes("t", "error") >= 2.0
        })
        .await;
    assert_error(&m, "bad_response");
    let stats = sim.sim.stats();
    assert_eq!(stats.redirect_target_hits, 0, "redirect was followed");
    assert_eq!(stats.redirect_target_auth_headers, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_env_var_is_credential_unavailable_and_others_keep_working() {
    let sim = simulator(&[(SECRET, cred(ACCOUNT, EMAIL, Behaviour::Valid))]).await;
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .token(jira("t", &sim.base_url(), "APITOKEN_TEST_NOT_SET"))
        .token(jira("ok", &sim.base_url(), "SECRET_OK"));
    let e = Exporter::start(&config.yaml(), &[("SECRET_OK", SECRET)]);
    let m = e
        .wait_for(Duration::from_secs(10), "both probed", |m| {
            m.has("apitoken_last_probe_timestamp_seconds", &[("token", "t")])
                && m.has("apitoken_valid", &[("token", "ok")])
        })
        .await;
    assert_error(&m, "credential_unavailable");
    assert_eq!(m.value("apitoken_valid", &[("token", "ok")]), Some(1.0));
    assert!(e.output().contains("APITOKEN_TEST_NOT_SET is not set"));
}

// ---- keep the last conclusive state ----------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn errors_keep_the_last_conclusive_state_until_a_conclusive_answer() {
    let (_m, e, sim) = first_probe(Case::default()).await;
    let n = e.scrape().await.probes("t", "valid");
    assert!(n >= 1.0);

    // Outage: every request 503. valid must stay 1 (an outage must not page "invalid").
    sim.sim.add_credential(
        SECRET,
        cred(ACCOUNT, EMAIL, Behaviour::ServerError { status: 503 }),
    );
    let m = e
        .wait_for(Duration::from_secs(10), "5xx errors", |m| {
            m.errors("t", "http_5xx") >= 2.0
        })
        .await;
    assert_eq!(m.value("apitoken_valid", &[("token", "t")]), Some(1.0));
    assert_eq!(
        m.value("apitoken_anonymous_fallback", &[("token", "t")]),
        Some(0.0)
    );
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", "t")]),
        Some(0.0)
    );

    // Other error kinds keep it too.
    sim.sim.add_credential(
        SECRET,
        cred(ACCOUNT, EMAIL, Behaviour::RateLimited { retry_after: None }),
    );
    let m = e
        .wait_for(Duration::from_secs(10), "429", |m| {
            m.errors("t", "rate_limited") >= 1.0
        })
        .await;
    assert_eq!(m.value("apitoken_valid", &[("token", "t")]), Some(1.0));

    // A conclusive answer changes it: now served as anonymous.
    sim.sim
        .add_credential(SECRET, cred(ACCOUNT, EMAIL, Behaviour::Dead));
    let m = e
        .wait_for(Duration::from_secs(10), "anonymous", |m| {
            m.value("apitoken_anonymous_fallback", &[("token", "t")]) == Some(1.0)
        })
        .await;
    assert_eq!(m.value("apitoken_valid", &[("token", "t")]), Some(0.0));
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", "t")]),
        Some(1.0)
    );
    let out = e.output();
    assert!(
        out.contains("probe failing; keeping the last conclusive state"),
        "{out}"
    );
    assert!(out.contains("token is no longer valid"), "{out}");
}
