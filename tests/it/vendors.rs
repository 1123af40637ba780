//! GitHub and GitLab end to end: the real `apitoken_exporter` binary probing the
//! simulator's GitHub and GitLab over 127.0.0.1. One test per rule of README "GitHub and
//! GitLab" (classification, identity, expiry and its precedence, lifetime, last use,
//! scopes, GitHub Enterprise Server) and per error reason; `check`, `--config.check`,
//! reload, the status page, the demo; no secret in any output; a Jira + GitHub + GitLab
//! config through `promtool check metrics`.

use std::time::Duration;

use apitoken_sim::{Behaviour, Credential, RunningSimulator, TokenDetails};

use crate::harness::*;

/// The simulator's GitHub user id and GitLab user id of every credential here.
const GH_ID: &str = "583231";
const GL_ID: &str = "1234";
/// How long a test waits for what it expects on /metrics.
const WAIT: Duration = Duration::from_secs(20);

// ------------------------------------------------------------------------------ fixtures

/// One watched token as the exporter's config names it: its entry and its env var.
struct Tok {
    name: &'static str,
    spec: TokenSpec,
    env: Option<(String, String)>,
}

/// A token of `provider` on `site`, its secret in `VENDORS_<NAME>`; `extra` are more
/// config fields (`key: value`, written as is).
fn tok(
    name: &'static str,
    provider: &str,
    site: &str,
    secret: &str,
    extra: &[&'static str],
) -> Tok {
    let var = format!("VENDORS_{}", name.to_uppercase().replace('-', "_"));
    let mut spec = TokenSpec::new(provider, name).site(site).token_env(&var);
    for line in extra {
        let (key, value) = line.split_once(": ").expect("a `key: value` line");
        spec = spec.raw(key, value);
    }
    Tok {
        name,
        spec,
        env: Some((var, secret.to_string())),
    }
}

fn config(tokens: &[Tok]) -> String {
    ConfigBuilder::new()
        .global("probe_interval", "2s")
        .global("probe_timeout", "1s")
        .tokens(tokens.iter().map(|t| t.spec.clone()))
        .yaml()
}

fn env_of(tokens: &[Tok]) -> Vec<(&str, &str)> {
    tokens
        .iter()
        .filter_map(|t| t.env.as_ref())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Every secret here carries this marker, so no output may ever contain it.
const MARK: &str = "s3cr3t";

/// One GitHub or GitLab token of a test: the simulator's credential (and what the vendor
/// reports about it) and the exporter's config entry.
struct Case {
    name: &'static str,
    provider: &'static str,
    secret: String,
    behaviour: Behaviour,
    details: Option<TokenDetails>,
    /// Appended to the simulator's URL (GitHub Enterprise Server: `/api/v3`).
    path: &'static str,
    /// Instead of the simulator (an unreachable port, https:// to it).
    site: Option<String>,
    extra: Vec<&'static str>,
    /// False: the token's env var stays unset.
    in_env: bool,
}

fn case(name: &'static str, provider: &'static str, prefix: &str, behaviour: Behaviour) -> Case {
    Case {
        name,
        provider,
        secret: format!("{prefix}{MARK}{}0123456789abcdef", name.replace('-', "")),
        behaviour,
        details: None,
        path: "",
        site: None,
        extra: Vec::new(),
        in_env: true,
    }
}

/// A classic GitHub personal access token.
fn github(name: &'static str, behaviour: Behaviour) -> Case {
    case(name, "github", "ghp_", behaviour)
}

/// A GitLab personal access token.
fn gitlab(name: &'static str, behaviour: Behaviour) -> Case {
    case(name, "gitlab", "glpat-", behaviour)
}

impl Case {
    fn reports(self, details: TokenDetails) -> Self {
        Case {
            details: Some(details),
            ..self
        }
    }

    /// The vendor reports this expiry and these scopes (None: no scopes header).
    fn expiring(self, expires_at: i64, scopes: Option<&[&str]>) -> Self {
        self.reports(TokenDetails {
            expires_at: Some(expires_at),
            scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
            ..TokenDetails::default()
        })
    }

    fn with(self, lines: &[&'static str]) -> Self {
        Case {
            extra: lines.to_vec(),
            ..self
        }
    }
}

/// The simulator's credential of a GitHub or GitLab token.
fn vendor_cred(account: &str, email: &str, behaviour: Behaviour) -> Credential {
    Credential {
        account_id: account.into(),
        email: email.into(),
        username: "acme-bot".into(),
        behaviour,
    }
}

/// The simulator with every case's credential, and the tokens watching them.
async fn setup(cases: Vec<Case>) -> (RunningSimulator, Vec<Tok>) {
    let creds: Vec<(&str, Credential)> = cases
        .iter()
        .map(|c| {
            let account = if c.provider == "gitlab" { GL_ID } else { GH_ID };
            let cred = vendor_cred(account, "bot@acme.example", c.behaviour.clone());
            (c.secret.as_str(), cred)
        })
        .collect();
    let running = simulator(&creds).await;
    for c in &cases {
        if let Some(d) = &c.details {
            running.sim.set_token_details(&c.secret, d.clone());
        }
    }
    let tokens = cases
        .into_iter()
        .map(|c| {
            let site = c
                .site
                .unwrap_or_else(|| format!("{}{}", running.base_url(), c.path));
            let t = tok(c.name, c.provider, &site, &c.secret, &c.extra);
            Tok {
                env: t.env.filter(|_| c.in_env),
                ..t
            }
        })
        .collect();
    (running, tokens)
}

/// Registers (or replaces) the credential of `secret` with another behaviour.
fn now_behaves(sim: &RunningSimulator, secret: &str, behaviour: Behaviour) {
    sim.sim
        .add_credential(secret, vendor_cred(GH_ID, "", behaviour));
}

// ------------------------------------------------------------------------------ exporter

/// The exporter watching `tokens`, with their secrets in its environment.
fn start(tokens: &[Tok]) -> Exporter {
    Exporter::start(&config(tokens), &env_of(tokens))
}

/// Waits until every token of `tokens` finished a probe.
async fn probed(e: &Exporter, tokens: &[Tok]) -> Metrics {
    e.wait_for(WAIT, "every token probed", |m| {
        tokens.iter().all(|t| {
            m.has(
                "apitoken_last_probe_timestamp_seconds",
                &[("token", t.name)],
            )
        })
    })
    .await
}

fn assert_close(got: f64, want: i64, slack: i64, what: &str) {
    assert!(
        (got - want as f64).abs() <= slack as f64,
        "{what}: got {got}, want {want} ± {slack}"
    );
}

// ------------------------------------------------------------------------------ GitHub

#[tokio::test(flavor = "multi_thread")]
async fn github_classic_token_is_valid_with_its_identity_expiry_and_scopes() {
    let expires = now() + 40 * DAY;
    let (_sim, tokens) = setup(vec![github("gh-classic", Behaviour::Valid)
        .expiring(expires, Some(&["repo", "read:org"]))
        // The config's expiry loses to the one GitHub reports.
        .with(&["expected_account_id: \"583231\"", "expires_at: 2030-01-01"])])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.for_token("apitoken_valid", "gh-classic"), 1.0);
    assert_eq!(m.for_token("apitoken_identity_mismatch", "gh-classic"), 0.0);
    assert_eq!(
        m.for_token("apitoken_expiry_timestamp_seconds", "gh-classic"),
        expires as f64
    );
    let info = m.info("gh-classic");
    assert_eq!(info["expiry_source"], "provider");
    assert_eq!(info["account_id"], GH_ID);
    assert_eq!(info["auth"], "bearer");
    assert_eq!(info["provider"], "github");
    assert_eq!(m.scopes("gh-classic"), ["repo", "read:org"]);
    // GitHub reports no creation or last use.
    assert!(m
        .value("apitoken_lifetime_seconds", &[("token", "gh-classic")])
        .is_none());
    assert!(m
        .value(
            "apitoken_last_used_timestamp_seconds",
            &[("token", "gh-classic")]
        )
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn github_token_of_another_account_is_a_mismatch() {
    let (_sim, tokens) = setup(vec![
        github("gh-other", Behaviour::Valid).with(&["expected_account_id: \"1\""])
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.for_token("apitoken_valid", "gh-other"), 1.0);
    assert_eq!(m.for_token("apitoken_identity_mismatch", "gh-other"), 1.0);
    assert!(m.probes("gh-other", "mismatch") >= 1.0);
    assert_eq!(m.info("gh-other")["account_id"], GH_ID);
}

#[tokio::test(flavor = "multi_thread")]
async fn github_fine_grained_token_has_no_scopes_and_a_missing_expiry_keeps_the_config() {
    let expires = now() + 10 * DAY;
    let (_sim, tokens) = setup(vec![
        case("gh-fine", "github", "github_pat_", Behaviour::Valid).expiring(expires, None),
        case("gh-noexp", "github", "github_pat_", Behaviour::Valid)
            .with(&["expires_at: 2030-01-01", "created_at: 2029-01-01"]),
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.for_token("apitoken_valid", "gh-fine"), 1.0);
    assert_eq!(
        m.for_token("apitoken_expiry_timestamp_seconds", "gh-fine"),
        expires as f64
    );
    assert!(
        m.scopes("gh-fine").is_empty(),
        "fine-grained tokens send no scopes"
    );
    assert_eq!(m.for_token("apitoken_valid", "gh-noexp"), 1.0);
    assert_eq!(m.info("gh-noexp")["expiry_source"], "config");
    assert_eq!(
        m.for_token("apitoken_expiry_timestamp_seconds", "gh-noexp"),
        1_893_456_000.0
    );
    assert_eq!(
        m.for_token("apitoken_lifetime_seconds", "gh-noexp"),
        365.0 * 86_400.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn github_enterprise_server_is_probed_under_its_api_v3_prefix() {
    let (sim, tokens) = setup(vec![
        Case {
            path: "/api/v3",
            ..github("ghes", Behaviour::Valid)
        },
        // A site that is no GitHub API root: GitHub Enterprise Server answers 404 there.
        Case {
            path: "/api/v4",
            ..github("ghes-wrong", Behaviour::Valid)
        },
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.for_token("apitoken_valid", "ghes"), 1.0);
    assert_eq!(m.info("ghes")["site"], format!("{}/api/v3", sim.base_url()));
    assert!(m.errors("ghes-wrong", "bad_response") >= 1.0);
    assert!(m
        .value("apitoken_valid", &[("token", "ghes-wrong")])
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn github_401_is_rejected_and_keeps_the_last_reported_expiry() {
    let dead = github("gh-dead", Behaviour::Valid).expiring(now() + DAY, None);
    let secret = dead.secret.clone();
    let (sim, tokens) = setup(vec![dead]).await;
    let e = start(&tokens);
    e.wait_for(WAIT, "valid", |m| {
        m.value("apitoken_valid", &[("token", "gh-dead")]) == Some(1.0)
    })
    .await;
    now_behaves(&sim, &secret, Behaviour::Dead);
    let m = e
        .wait_for(WAIT, "rejected", |m| m.probes("gh-dead", "rejected") >= 1.0)
        .await;
    assert_eq!(m.for_token("apitoken_valid", "gh-dead"), 0.0);
    assert_eq!(m.for_token("apitoken_anonymous_fallback", "gh-dead"), 0.0);
    assert_eq!(m.for_token("apitoken_probe_success", "gh-dead"), 1.0);
    assert_eq!(m.info("gh-dead")["expiry_source"], "provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_rate_limits_both_ways_are_rate_limited_and_back_off() {
    let (_sim, tokens) = setup(vec![
        // Primary limit: 403, x-ratelimit-remaining: 0, reset in 900 s, no Retry-After.
        github("gh-primary", Behaviour::RateLimited { retry_after: None }),
        // Secondary limit: 429 with Retry-After.
        github(
            "gh-secondary",
            Behaviour::RateLimited {
                retry_after: Some("120".into()),
            },
        ),
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    for t in ["gh-primary", "gh-secondary"] {
        assert!(m.errors(t, "rate_limited") >= 1.0, "{t}");
        assert_eq!(m.errors(t, "forbidden"), 0.0, "{t}");
        assert_eq!(m.for_token("apitoken_probe_success", t), 0.0);
        assert!(
            m.value("apitoken_valid", &[("token", t)]).is_none(),
            "{t}: no conclusion yet"
        );
    }
    // The next probe waits for x-ratelimit-reset (900 s) / Retry-After (120 s).
    assert_close(
        m.for_token("apitoken_probe_interval_seconds", "gh-primary"),
        900,
        10,
        "reset",
    );
    assert_eq!(
        m.for_token("apitoken_probe_interval_seconds", "gh-secondary"),
        120.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn github_other_403_is_forbidden_and_the_status_page_says_why() {
    let (_sim, tokens) = setup(vec![case(
        "gh-forbidden",
        "github",
        "ghs_",
        Behaviour::Forbidden,
    )])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert!(m.errors("gh-forbidden", "forbidden") >= 1.0);
    assert_eq!(
        m.for_token("apitoken_probe_interval_seconds", "gh-forbidden"),
        2.0,
        "no back-off"
    );
    let (_, page) = e.get("/").await;
    assert!(
        page.contains("gh-forbidden") && page.contains("forbidden"),
        "{page}"
    );
}

// ------------------------------------------------------------------------------ GitLab

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_token_reports_identity_expiry_lifetime_last_use_and_scopes() {
    let (created, expires, used) = (now() - 30 * DAY, now() + 60 * DAY, now() - 3600);
    let d = TokenDetails {
        created_at: Some(created),
        expires_at: Some(expires),
        last_used_at: Some(used),
        scopes: Some(vec!["read_api".into(), "read_user".into()]),
    };
    let (_sim, tokens) = setup(vec![
        gitlab("gl-header", Behaviour::Valid)
            .reports(d.clone())
            .with(&["expected_account_id: \"1234\""]),
        gitlab("gl-bearer", Behaviour::Valid)
            .reports(d)
            .with(&["auth: bearer", "expected_account_id: \"99\""]),
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    // GitLab's expiry is a date: the token stops at that day's midnight UTC.
    let midnight = expires / DAY * DAY;
    for (t, auth) in [("gl-header", "header"), ("gl-bearer", "bearer")] {
        assert_eq!(m.for_token("apitoken_valid", t), 1.0, "{t}");
        assert_eq!(
            m.for_token("apitoken_expiry_timestamp_seconds", t),
            midnight as f64
        );
        assert_eq!(
            m.for_token("apitoken_lifetime_seconds", t),
            (midnight - created) as f64
        );
        assert_eq!(
            m.for_token("apitoken_last_used_timestamp_seconds", t),
            used as f64
        );
        assert_eq!(m.scopes(t), ["read_api", "read_user"]);
        let info = m.info(t);
        assert_eq!(
            (info["auth"].as_str(), info["expiry_source"].as_str()),
            (auth, "provider")
        );
        assert_eq!(info["account_id"], GL_ID);
    }
    assert_eq!(m.for_token("apitoken_identity_mismatch", "gl-header"), 0.0);
    assert_eq!(m.for_token("apitoken_identity_mismatch", "gl-bearer"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_token_without_expiry_keeps_the_configured_one() {
    let (_sim, tokens) = setup(vec![
        gitlab("gl-noexp", Behaviour::Valid).with(&["expires_at: 2030-01-01"])
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.for_token("apitoken_valid", "gl-noexp"), 1.0);
    assert_eq!(m.info("gl-noexp")["expiry_source"], "config");
    assert_eq!(
        m.for_token("apitoken_expiry_timestamp_seconds", "gl-noexp"),
        1_893_456_000.0
    );
    assert_eq!(m.scopes("gl-noexp"), ["api"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_inactive_revoked_and_401_tokens_are_rejected() {
    let expired = now() - 2 * DAY;
    let (_sim, tokens) = setup(vec![
        gitlab("gl-inactive", Behaviour::Inactive { revoked: false })
            .expiring(expired, Some(&["api"])),
        gitlab("gl-revoked", Behaviour::Inactive { revoked: true }),
        gitlab("gl-dead", Behaviour::Dead),
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    for t in ["gl-inactive", "gl-revoked", "gl-dead"] {
        assert_eq!(m.for_token("apitoken_valid", t), 0.0, "{t}");
        assert_eq!(m.for_token("apitoken_anonymous_fallback", t), 0.0, "{t}");
        assert!(m.probes(t, "rejected") >= 1.0, "{t}");
    }
    // The inactive token's description still tells when it expired.
    let midnight = (expired / DAY * DAY) as f64;
    assert_eq!(
        m.for_token("apitoken_expiry_timestamp_seconds", "gl-inactive"),
        midnight
    );
    assert!(m.for_token("apitoken_days_until_expiry", "gl-inactive") < 0.0);
    let (_, page) = e.get("/").await;
    assert!(page.contains("expired"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_429_waits_for_retry_after_else_ratelimit_reset_and_403_is_forbidden() {
    let (_sim, tokens) = setup(vec![
        gitlab(
            "gl-rl-ra",
            Behaviour::RateLimited {
                retry_after: Some("45".into()),
            },
        ),
        // No Retry-After: RateLimit-Reset (epoch seconds, 60 s ahead) is the wait.
        gitlab("gl-rl-reset", Behaviour::RateLimited { retry_after: None }),
        gitlab("gl-forbidden", Behaviour::Forbidden),
    ])
    .await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    assert_eq!(m.errors("gl-rl-ra", "rate_limited"), 1.0);
    assert_eq!(
        m.for_token("apitoken_probe_interval_seconds", "gl-rl-ra"),
        45.0
    );
    assert_eq!(m.errors("gl-rl-reset", "rate_limited"), 1.0);
    assert_close(
        m.for_token("apitoken_probe_interval_seconds", "gl-rl-reset"),
        60,
        5,
        "reset",
    );
    assert!(m.errors("gl-forbidden", "forbidden") >= 1.0);
    assert!(m
        .value("apitoken_valid", &[("token", "gl-forbidden")])
        .is_none());
}

// ------------------------------------------------------------------------------ every error reason

#[tokio::test(flavor = "multi_thread")]
async fn every_error_reason_for_github_and_gitlab() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let (sim, mut tokens) = setup(vec![
        github("gh-5xx", Behaviour::ServerError { status: 502 }),
        gitlab(
            "gl-timeout",
            Behaviour::Slow {
                delay: Duration::from_secs(3),
            },
        ),
        github("gh-noid", Behaviour::NoAccountId),
        gitlab("gl-noid", Behaviour::NoAccountId),
        gitlab("gl-html", Behaviour::NonJson),
        Case {
            site: Some(unreachable),
            ..github("gh-connect", Behaviour::Valid)
        },
        Case {
            in_env: false,
            ..github("gh-nosecret", Behaviour::Valid)
        },
    ])
    .await;
    // https:// to the plain-HTTP simulator: the TLS handshake fails.
    let tls = sim.base_url().replace("http://", "https://");
    tokens.push(tok(
        "gl-tls",
        "gitlab",
        &tls,
        "glpat-s3cr3ttls0123456789",
        &[],
    ));
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    for (t, reason) in [
        ("gh-5xx", "http_5xx"),
        ("gl-timeout", "timeout"),
        ("gh-noid", "bad_response"),
        ("gl-noid", "bad_response"),
        ("gl-html", "bad_response"),
        ("gh-connect", "connect"),
        ("gl-tls", "tls"),
        ("gh-nosecret", "credential_unavailable"),
    ] {
        assert!(m.errors(t, reason) >= 1.0, "{t}: {reason}\n{}", m.text());
        assert_eq!(m.for_token("apitoken_probe_success", t), 0.0, "{t}");
        assert!(m.value("apitoken_valid", &[("token", t)]).is_none(), "{t}");
    }
}

// ------------------------------------------------------------------------------ CLI, reload, demo

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_github_and_gitlab_and_shows_the_reported_expiry() {
    let (_sim, tokens) = setup(vec![
        github("gh-check", Behaviour::Valid).expiring(now() + 20 * DAY, Some(&["repo"])),
        gitlab("gl-check", Behaviour::Dead),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.yaml", &config(&tokens));
    let file = format!("--config.file={}", path.display());
    let env = env_of(&tokens);
    let (code, out, err) = run_cli_off_runtime(&["check", &file, "--output=json"], &env).await;
    assert_eq!(code, 1, "one token is not valid\n{out}{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["token"], "gh-check");
    assert_eq!(rows[0]["provider"], "github");
    assert_eq!(rows[0]["outcome"], "valid");
    assert_eq!(rows[0]["account_id"], GH_ID);
    assert_eq!(rows[0]["expiry_source"], "provider");
    assert_eq!(rows[0]["days_until_expiry"], 20.0);
    assert_eq!(rows[1]["outcome"], "rejected");
    assert_eq!(rows[1]["detail"], "HTTP 401");
    let (code, table, _) = run_cli_off_runtime(&["check", &file], &env).await;
    assert_eq!(code, 1);
    let gh = table.lines().find(|l| l.starts_with("gh-check")).unwrap();
    assert!(
        gh.contains("github") && gh.contains("valid") && gh.contains("20.0"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("gl-check") && l.contains("rejected")),
        "{table}"
    );
    for text in [&out, &err, &table] {
        assert!(!text.contains(MARK), "secret in check output:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_accepts_github_and_gitlab_and_refuses_email_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = |name: &str, text: &str| {
        let p = write(dir.path(), name, text);
        format!("--config.file={}", p.display())
    };
    let good = config_file(
        "good.yaml",
        "tokens:\n  - {name: gh, provider: github, token_env: GH}\n  - {name: ghes, provider: github, site: \"https://ghe.acme.example/api/v3\", token_env: GH}\n  - {name: gl, provider: gitlab, token_env: GL}\n  - {name: glb, provider: gitlab, auth: bearer, site: \"https://gitlab.acme.example\", token_env: GL}\n",
    );
    let env = [("GH", "x"), ("GL", "y")];
    let (code, out, err) = run_cli_off_runtime(&["--config.check", &good], &env).await;
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("OK:") && out.contains("4 tokens"), "{out}");

    let bad = config_file(
        "bad.yaml",
        &format!("tokens:\n  - {{name: gh, provider: github, email: a@b.c, token_env: GH}}\n  - {{name: gl, provider: gitlab, email: a@b.c, token_env: GL}}\n  - {{name: pasted, provider: gitlab, token_env: glpat-{MARK}pasted0123456789}}\n  - {{name: hdr, provider: github, auth: header, token_env: GH}}\n"),
    );
    let (code, out, err) = run_cli_off_runtime(&["--config.check", &bad], &env).await;
    assert_eq!(code, 1, "{out}{err}");
    for needle in [
        "tokens[0] (gh).email: not used by provider github",
        "tokens[1] (gl).email: not used by provider gitlab",
        "set expected_account_id",
        "tokens[2] (pasted).token_env: this looks like a token itself",
        "tokens[3] (hdr).auth: provider github does not accept auth header (it accepts: bearer)",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    assert!(!err.contains(MARK) && !out.contains(MARK), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_a_github_token() {
    let (_sim, both) = setup(vec![
        gitlab("gl-first", Behaviour::Valid),
        github("gh-added", Behaviour::Valid).expiring(now() + 5 * DAY, None),
    ])
    .await;
    // Both secrets are in the environment from the start; the first config names one.
    let e = Exporter::start(&config(&both[..1]), &env_of(&both));
    probed(&e, &both[..1]).await;
    e.write_config(&config(&both));
    let (status, body) = e.reload().await;
    assert_eq!(status, 200, "{body}");
    let m = e
        .wait_for(WAIT, "the added token probed", |m| {
            m.value("apitoken_valid", &[("token", "gh-added")])
                .is_some()
        })
        .await;
    assert_eq!(m.for_token("apitoken_valid", "gh-added"), 1.0);
    assert_eq!(m.info("gh-added")["expiry_source"], "provider");
    assert_close(
        m.for_token("apitoken_days_until_expiry", "gh-added"),
        5,
        1,
        "days",
    );
    assert!(
        m.text()
            .lines()
            .any(|l| l == "apitoken_exporter_config_last_reload_successful 1"),
        "{}",
        m.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_its_github_and_gitlab_tokens_and_never_their_secrets() {
    let e = Exporter::start_with_args("", &[], &["demo"]);
    let m = e
        .wait_for(WAIT, "the GitHub and GitLab demo tokens probed", |m| {
            ["github-valid", "gitlab-valid"]
                .iter()
                .all(|t| m.value("apitoken_valid", &[("token", t)]).is_some())
        })
        .await;
    for t in ["github-valid", "gitlab-valid"] {
        assert_eq!(m.for_token("apitoken_valid", t), 1.0, "{t}");
        assert_eq!(m.info(t)["expiry_source"], "provider", "{t}");
        assert!(!m.scopes(t).is_empty(), "{t}");
    }
    assert!(m
        .value("apitoken_lifetime_seconds", &[("token", "gitlab-valid")])
        .is_some());
    let (_, page) = e.get("/").await;
    // Demo secrets are random; every one has this marker after the vendor's prefix.
    for (what, text) in [
        ("/metrics", m.text()),
        ("/", page.as_str()),
        ("output", e.output().as_str()),
    ] {
        assert!(!text.contains("3xDEMO"), "demo secret in {what}:\n{text}");
    }
}

// ------------------------------------------------------------------------------ secrets, promtool

#[tokio::test(flavor = "multi_thread")]
async fn no_github_or_gitlab_secret_appears_in_any_output() {
    let cases = vec![
        github("l0", Behaviour::Valid),
        case("l1", "github", "github_pat_", Behaviour::Dead),
        github("l2", Behaviour::RateLimited { retry_after: None }),
        github("l3", Behaviour::Forbidden),
        gitlab("l4", Behaviour::Valid),
        gitlab("l5", Behaviour::Inactive { revoked: true }),
        gitlab(
            "l6",
            Behaviour::RateLimited {
                retry_after: Some("5".into()),
            },
        ),
        gitlab("l7", Behaviour::ServerError { status: 503 }),
    ];
    let cases = cases
        .into_iter()
        .map(|c| c.expiring(now() + DAY, Some(&["api"])))
        .collect();
    let (_sim, tokens) = setup(cases).await;
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    // A reload with a broken config names the problem, never a secret from the env.
    e.write_config("tokens:\n  - {name: x, provider: github, email: e, token_env: VENDORS_L0}\n");
    let (status, reload) = e.reload().await;
    assert_eq!(status, 500, "{reload}");
    let (_, page) = e.get("/").await;
    let (_, ready) = e.get("/-/ready").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let printed = e.output();
    assert!(printed.contains("started"), "{printed}");
    for (what, text) in [
        ("/metrics", m.text()),
        ("/", page.as_str()),
        ("/-/ready", ready.as_str()),
        ("/-/reload", reload.as_str()),
        ("output", printed.as_str()),
    ] {
        assert!(!text.contains(MARK), "a secret in {what}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jira_github_and_gitlab_config_passes_promtool_check_metrics() {
    let (sim, mut tokens) = setup(vec![
        github("github", Behaviour::Valid).expiring(now() + 9 * DAY, Some(&["repo", "gist"])),
        gitlab("gitlab", Behaviour::Valid).reports(TokenDetails {
            created_at: Some(now() - 9 * DAY),
            expires_at: Some(now() + 90 * DAY),
            last_used_at: Some(now() - 60),
            scopes: Some(vec!["read_api".into()]),
        }),
        gitlab("gitlab-rl", Behaviour::RateLimited { retry_after: None }),
    ])
    .await;
    let jira_secret = format!("ATATT3x{MARK}jira");
    // Username `jira-bot`, from the email.
    let jira_bot = cred(
        "5b10a2844c20165700ede21g",
        "jira-bot@acme.example",
        Behaviour::Valid,
    );
    sim.sim.add_credential(&jira_secret, jira_bot);
    tokens.push(tok(
        "jira",
        "jira",
        &sim.base_url(),
        &jira_secret,
        &["email: jira-bot@acme.example", "expires_at: 2030-01-01"],
    ));
    let e = start(&tokens);
    let m = probed(&e, &tokens).await;
    for t in ["jira", "github", "gitlab"] {
        assert_eq!(m.for_token("apitoken_valid", t), 1.0, "{t}");
    }
    for family in [
        "apitoken_scope_info",
        "apitoken_lifetime_seconds",
        "apitoken_last_used_timestamp_seconds",
        "apitoken_probe_errors_total",
    ] {
        assert!(
            m.text().contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            m.text()
        );
    }
    assert_promtool_accepts(m.text());
}

/// The real `promtool check metrics` accepts the exposition.
fn assert_promtool_accepts(exposition: &str) {
    let (status, said) = promtool_check_metrics(exposition);
    // The one lint promtool raises is the name README's metric table fixes for good
    // (`apitoken_days_until_expiry`, not in seconds); anything else, a parse error above
    // all, fails.
    const KNOWN: &str = "apitoken_days_until_expiry use base unit \"seconds\" instead of \"days\"";
    let other: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != KNOWN)
        .collect();
    assert!(
        other.is_empty() && (status.success() || said.contains(KNOWN)),
        "promtool check metrics ({status}):\n{said}\n{exposition}"
    );
}
