//! GitHub and GitLab end to end: the real `apitoken_exporter` binary probing the
//! simulator's GitHub and GitLab over 127.0.0.1. One test per rule of README "GitHub and
//! GitLab" (classification, identity, expiry and its precedence, lifetime, last use,
//! scopes, GitHub Enterprise Server) and per error reason; `check`, `--config.check`,
//! reload, the status page, the demo; no secret in any output; a Jira + GitHub + GitLab
//! config through `promtool check metrics`.
//!
//! Self-contained on purpose (its own small helpers, no `tests/common`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitoken_sim::{Behaviour, Credential, RunningSimulator, Simulator, TokenDetails};

const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");
/// The simulator's GitHub user id and GitLab user id of every credential here.
const GH_ID: &str = "583231";
const GL_ID: &str = "1234";
const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

// ------------------------------------------------------------------------------ fixtures

/// One watched token: its config lines and the secret its env var holds.
struct Tok {
    name: &'static str,
    yaml: String,
    env: Option<(String, String)>,
}

/// A token of `provider` on `site`, its secret in `VENDORS_<NAME>`; `extra` are more
/// config lines (`key: value`, one per line).
fn tok(name: &'static str, provider: &str, site: &str, secret: &str, extra: &[&str]) -> Tok {
    let var = format!("VENDORS_{}", name.to_uppercase().replace('-', "_"));
    let mut yaml = format!(
        "  - name: {name}\n    provider: {provider}\n    site: \"{site}\"\n    token_env: {var}\n"
    );
    for line in extra {
        yaml.push_str(&format!("    {line}\n"));
    }
    Tok {
        name,
        yaml,
        env: Some((var, secret.to_string())),
    }
}

fn config(tokens: &[Tok]) -> String {
    let mut c = String::from(
        "global:\n  allow_insecure_http: true\n  probe_interval: 2s\n  probe_timeout: 1s\ntokens:\n",
    );
    for t in tokens {
        c.push_str(&t.yaml);
    }
    c
}

/// The simulator with GitHub/GitLab credentials: (secret, behaviour, what the vendor says).
async fn simulator(creds: &[(&str, Behaviour, Option<TokenDetails>)]) -> RunningSimulator {
    let sim = Simulator::new();
    for (secret, behaviour, details) in creds {
        let account = if secret.starts_with("gl") {
            GL_ID
        } else {
            GH_ID
        };
        sim.add_credential(
            secret,
            Credential {
                account_id: account.into(),
                email: "bot@acme.example".into(),
                username: "acme-bot".into(),
                behaviour: behaviour.clone(),
            },
        );
        if let Some(d) = details {
            sim.set_token_details(secret, d.clone());
        }
    }
    sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

fn details(expires_at: Option<i64>, scopes: Option<&[&str]>) -> Option<TokenDetails> {
    Some(TokenDetails {
        expires_at,
        scopes: scopes.map(|s| s.iter().map(|x| x.to_string()).collect()),
        ..TokenDetails::default()
    })
}

// ------------------------------------------------------------------------------ exporter

/// The exporter process (killed by its own handle on drop) and everything it printed.
struct Exporter {
    child: Child,
    url: String,
    printed: Arc<Mutex<String>>,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
}

fn env_of(tokens: &[Tok]) -> Vec<(String, String)> {
    tokens.iter().filter_map(|t| t.env.clone()).collect()
}

impl Exporter {
    fn start(tokens: &[Tok]) -> Exporter {
        Self::start_args(&config(tokens), &env_of(tokens), &[])
    }

    fn start_args(config: &str, env: &[(String, String)], args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .arg(format!("--config.file={}", path.display()))
            .args(["--web.listen-address=127.0.0.1:0", "--log.level=debug"])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let printed = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), printed.clone());
        collect(child.stderr.take().unwrap(), printed.clone());
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let text = printed.lock().unwrap().clone();
            let found = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
                .map(|a| a.trim_matches('"').to_string());
            if let Some(a) = found.filter(|a| a.rsplit(':').next().is_some_and(|p| p != "0")) {
                break a;
            }
            if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("exporter did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Exporter {
            child,
            url: format!("http://{addr}"),
            printed,
            config: path,
            _dir: dir,
        }
    }

    fn printed(&self) -> String {
        self.printed.lock().unwrap().clone()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::get(format!("{}{path}", self.url)).await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn reload(&self) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(format!("{}/-/reload", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Scrapes until `done` holds (at most 20 s) and returns that scrape.
    async fn until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.get("/metrics").await;
            assert_eq!(status, 200);
            let s = Scrape(body);
            if done(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}\n{}",
                s.0,
                self.printed()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every token of `tokens` finished a probe.
    async fn probed(&self, tokens: &[Tok]) -> Scrape {
        self.until("every token probed", |s| {
            tokens.iter().all(|t| {
                s.value("apitoken_last_probe_timestamp_seconds", t.name, &[])
                    .is_some()
            })
        })
        .await
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------------ /metrics

/// A /metrics body.
struct Scrape(String);

/// `name{k="v",…} value` → (name, labels, value); None for comments and blank lines.
fn parse_line(line: &str) -> Option<(&str, BTreeMap<&str, &str>, f64)> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let (name, labels) = match series.split_once('{') {
        Some((n, rest)) => (n, rest.strip_suffix('}')?),
        None => (series, ""),
    };
    let mut map = BTreeMap::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let end = after.find('"')?;
        map.insert(key.trim_start_matches(','), &after[..end]);
        rest = &after[end + 1..];
    }
    Some((name, map, value.parse().ok()?))
}

impl Scrape {
    /// The value of `name` for `token` whose labels include all of `labels`.
    fn value(&self, name: &str, token: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0.lines().filter_map(parse_line).find_map(|(n, l, v)| {
            (n == name
                && l.get("token") == Some(&token)
                && labels.iter().all(|(k, want)| l.get(k) == Some(want)))
            .then_some(v)
        })
    }

    fn get(&self, name: &str, token: &str) -> f64 {
        self.value(name, token, &[])
            .unwrap_or_else(|| panic!("no {name} for {token}:\n{}", self.0))
    }

    /// The labels of `token`'s `apitoken_info`.
    fn info(&self, token: &str) -> BTreeMap<String, String> {
        self.0
            .lines()
            .filter_map(parse_line)
            .find(|(n, l, _)| *n == "apitoken_info" && l.get("token") == Some(&token))
            .map(|(_, l, _)| {
                l.into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_else(|| panic!("no apitoken_info for {token}:\n{}", self.0))
    }

    fn scopes(&self, token: &str) -> Vec<String> {
        self.0
            .lines()
            .filter_map(parse_line)
            .filter(|(n, l, _)| *n == "apitoken_scope_info" && l.get("token") == Some(&token))
            .map(|(_, l, _)| l["scope"].to_string())
            .collect()
    }

    fn errors(&self, token: &str, reason: &str) -> f64 {
        self.value("apitoken_probe_errors_total", token, &[("reason", reason)])
            .unwrap_or(0.0)
    }

    fn result(&self, token: &str, result: &str) -> f64 {
        self.value("apitoken_probes_total", token, &[("result", result)])
            .unwrap_or(0.0)
    }
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
    let sim = simulator(&[(
        "ghp_VENDORSclassic0000000000000000000000",
        Behaviour::Valid,
        details(Some(expires), Some(&["repo", "read:org"])),
    )])
    .await;
    let tokens = [tok(
        "gh-classic",
        "github",
        &sim.base_url(),
        "ghp_VENDORSclassic0000000000000000000000",
        // The config's expiry loses to the one GitHub reports.
        &["expected_account_id: \"583231\"", "expires_at: 2030-01-01"],
    )];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "gh-classic"), 1.0);
    assert_eq!(m.get("apitoken_identity_mismatch", "gh-classic"), 0.0);
    assert_eq!(
        m.get("apitoken_expiry_timestamp_seconds", "gh-classic"),
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
        .value("apitoken_lifetime_seconds", "gh-classic", &[])
        .is_none());
    assert!(m
        .value("apitoken_last_used_timestamp_seconds", "gh-classic", &[])
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn github_token_of_another_account_is_a_mismatch() {
    let sim = simulator(&[(
        "ghp_VENDORSother00000000000000000000000",
        Behaviour::Valid,
        None,
    )])
    .await;
    let tokens = [tok(
        "gh-other",
        "github",
        &sim.base_url(),
        "ghp_VENDORSother00000000000000000000000",
        &["expected_account_id: \"1\""],
    )];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "gh-other"), 1.0);
    assert_eq!(m.get("apitoken_identity_mismatch", "gh-other"), 1.0);
    assert_eq!(m.result("gh-other", "mismatch"), 1.0);
    assert_eq!(m.info("gh-other")["account_id"], GH_ID);
}

#[tokio::test(flavor = "multi_thread")]
async fn github_fine_grained_token_has_no_scopes_and_a_missing_expiry_keeps_the_config() {
    let expires = now() + 10 * DAY;
    let sim = simulator(&[
        (
            "github_pat_VENDORSfine000000000000000000",
            Behaviour::Valid,
            details(Some(expires), None),
        ),
        (
            "github_pat_VENDORSnoexp00000000000000000",
            Behaviour::Valid,
            None,
        ),
    ])
    .await;
    let tokens = [
        tok(
            "gh-fine",
            "github",
            &sim.base_url(),
            "github_pat_VENDORSfine000000000000000000",
            &[],
        ),
        tok(
            "gh-noexp",
            "github",
            &sim.base_url(),
            "github_pat_VENDORSnoexp00000000000000000",
            &["expires_at: 2030-01-01", "created_at: 2029-01-01"],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "gh-fine"), 1.0);
    assert_eq!(
        m.get("apitoken_expiry_timestamp_seconds", "gh-fine"),
        expires as f64
    );
    assert!(
        m.scopes("gh-fine").is_empty(),
        "fine-grained tokens send no scopes"
    );
    assert_eq!(m.get("apitoken_valid", "gh-noexp"), 1.0);
    assert_eq!(m.info("gh-noexp")["expiry_source"], "config");
    assert_eq!(
        m.get("apitoken_expiry_timestamp_seconds", "gh-noexp"),
        1_893_456_000.0
    );
    assert_eq!(
        m.get("apitoken_lifetime_seconds", "gh-noexp"),
        365.0 * 86_400.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn github_enterprise_server_is_probed_under_its_api_v3_prefix() {
    let sim = simulator(&[(
        "ghp_VENDORSghes000000000000000000000000",
        Behaviour::Valid,
        None,
    )])
    .await;
    let base = sim.base_url();
    let tokens = [
        tok(
            "ghes",
            "github",
            &format!("{base}/api/v3"),
            "ghp_VENDORSghes000000000000000000000000",
            &[],
        ),
        // A site that is no GitHub API root: GitHub Enterprise Server answers 404 there.
        tok(
            "ghes-wrong",
            "github",
            &format!("{base}/api/v4"),
            "ghp_VENDORSghes000000000000000000000000",
            &[],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "ghes"), 1.0);
    assert_eq!(m.info("ghes")["site"], format!("{base}/api/v3"));
    assert_eq!(m.errors("ghes-wrong", "bad_response"), 1.0);
    assert!(m.value("apitoken_valid", "ghes-wrong", &[]).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn github_401_is_rejected_and_keeps_the_last_reported_expiry() {
    let sim = simulator(&[(
        "ghp_VENDORSdead000000000000000000000000",
        Behaviour::Valid,
        details(Some(now() + DAY), None),
    )])
    .await;
    let tokens = [tok(
        "gh-dead",
        "github",
        &sim.base_url(),
        "ghp_VENDORSdead000000000000000000000000",
        &[],
    )];
    let e = Exporter::start(&tokens);
    e.until("valid", |m| {
        m.value("apitoken_valid", "gh-dead", &[]) == Some(1.0)
    })
    .await;
    sim.sim.add_credential(
        "ghp_VENDORSdead000000000000000000000000",
        Credential {
            account_id: GH_ID.into(),
            email: String::new(),
            username: "acme-bot".into(),
            behaviour: Behaviour::Dead,
        },
    );
    let m = e
        .until("rejected", |m| m.result("gh-dead", "rejected") >= 1.0)
        .await;
    assert_eq!(m.get("apitoken_valid", "gh-dead"), 0.0);
    assert_eq!(m.get("apitoken_anonymous_fallback", "gh-dead"), 0.0);
    assert_eq!(m.get("apitoken_probe_success", "gh-dead"), 1.0);
    assert_eq!(m.info("gh-dead")["expiry_source"], "provider");
}

#[tokio::test(flavor = "multi_thread")]
async fn github_rate_limits_both_ways_are_rate_limited_and_back_off() {
    let sim = simulator(&[
        // Primary limit: 403, x-ratelimit-remaining: 0, reset in 900 s, no Retry-After.
        (
            "ghp_VENDORSprimary0000000000000000000000",
            Behaviour::RateLimited { retry_after: None },
            None,
        ),
        // Secondary limit: 429 with Retry-After.
        (
            "ghp_VENDORSsecondary00000000000000000000",
            Behaviour::RateLimited {
                retry_after: Some("120".into()),
            },
            None,
        ),
    ])
    .await;
    let tokens = [
        tok(
            "gh-primary",
            "github",
            &sim.base_url(),
            "ghp_VENDORSprimary0000000000000000000000",
            &[],
        ),
        tok(
            "gh-secondary",
            "github",
            &sim.base_url(),
            "ghp_VENDORSsecondary00000000000000000000",
            &[],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    for t in ["gh-primary", "gh-secondary"] {
        assert_eq!(m.errors(t, "rate_limited"), 1.0, "{t}");
        assert_eq!(m.errors(t, "forbidden"), 0.0, "{t}");
        assert_eq!(m.get("apitoken_probe_success", t), 0.0);
        assert!(
            m.value("apitoken_valid", t, &[]).is_none(),
            "{t}: no conclusion yet"
        );
    }
    // The next probe waits for x-ratelimit-reset (900 s) / Retry-After (120 s).
    assert_close(
        m.get("apitoken_probe_interval_seconds", "gh-primary"),
        900,
        10,
        "reset",
    );
    assert_eq!(
        m.get("apitoken_probe_interval_seconds", "gh-secondary"),
        120.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn github_other_403_is_forbidden_and_the_status_page_says_why() {
    let sim = simulator(&[(
        "ghs_VENDORSinstallation0000000000000000",
        Behaviour::Forbidden,
        None,
    )])
    .await;
    let tokens = [tok(
        "gh-forbidden",
        "github",
        &sim.base_url(),
        "ghs_VENDORSinstallation0000000000000000",
        &[],
    )];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.errors("gh-forbidden", "forbidden"), 1.0);
    assert_eq!(
        m.get("apitoken_probe_interval_seconds", "gh-forbidden"),
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
    let sim = simulator(&[
        (
            "glpat-VENDORSheader000000000",
            Behaviour::Valid,
            Some(d.clone()),
        ),
        ("glpat-VENDORSbearer000000000", Behaviour::Valid, Some(d)),
    ])
    .await;
    let tokens = [
        tok(
            "gl-header",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSheader000000000",
            &["expected_account_id: \"1234\""],
        ),
        tok(
            "gl-bearer",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSbearer000000000",
            &["auth: bearer", "expected_account_id: \"99\""],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    // GitLab's expiry is a date: the token stops at that day's midnight UTC.
    let midnight = expires / DAY * DAY;
    for (t, auth) in [("gl-header", "header"), ("gl-bearer", "bearer")] {
        assert_eq!(m.get("apitoken_valid", t), 1.0, "{t}");
        assert_eq!(
            m.get("apitoken_expiry_timestamp_seconds", t),
            midnight as f64
        );
        assert_eq!(
            m.get("apitoken_lifetime_seconds", t),
            (midnight - created) as f64
        );
        assert_eq!(
            m.get("apitoken_last_used_timestamp_seconds", t),
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
    assert_eq!(m.get("apitoken_identity_mismatch", "gl-header"), 0.0);
    assert_eq!(m.get("apitoken_identity_mismatch", "gl-bearer"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_token_without_expiry_keeps_the_configured_one() {
    let sim = simulator(&[("glpat-VENDORSnoexp0000000000", Behaviour::Valid, None)]).await;
    let tokens = [tok(
        "gl-noexp",
        "gitlab",
        &sim.base_url(),
        "glpat-VENDORSnoexp0000000000",
        &["expires_at: 2030-01-01"],
    )];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "gl-noexp"), 1.0);
    assert_eq!(m.info("gl-noexp")["expiry_source"], "config");
    assert_eq!(
        m.get("apitoken_expiry_timestamp_seconds", "gl-noexp"),
        1_893_456_000.0
    );
    assert_eq!(m.scopes("gl-noexp"), ["api"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_inactive_revoked_and_401_tokens_are_rejected() {
    let expired = now() - 2 * DAY;
    let sim = simulator(&[
        (
            "glpat-VENDORSinactive00000000",
            Behaviour::Inactive { revoked: false },
            details(Some(expired), Some(&["api"])),
        ),
        (
            "glpat-VENDORSrevoked000000000",
            Behaviour::Inactive { revoked: true },
            None,
        ),
        ("glpat-VENDORSdead00000000000", Behaviour::Dead, None),
    ])
    .await;
    let tokens = [
        tok(
            "gl-inactive",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSinactive00000000",
            &[],
        ),
        tok(
            "gl-revoked",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSrevoked000000000",
            &[],
        ),
        tok(
            "gl-dead",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSdead00000000000",
            &[],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    for t in ["gl-inactive", "gl-revoked", "gl-dead"] {
        assert_eq!(m.get("apitoken_valid", t), 0.0, "{t}");
        assert_eq!(m.get("apitoken_anonymous_fallback", t), 0.0, "{t}");
        assert_eq!(m.result(t, "rejected"), 1.0, "{t}");
    }
    // The inactive token's description still tells when it expired.
    let midnight = (expired / DAY * DAY) as f64;
    assert_eq!(
        m.get("apitoken_expiry_timestamp_seconds", "gl-inactive"),
        midnight
    );
    assert!(m.get("apitoken_days_until_expiry", "gl-inactive") < 0.0);
    let (_, page) = e.get("/").await;
    assert!(page.contains("expired"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn gitlab_429_waits_for_retry_after_else_ratelimit_reset_and_403_is_forbidden() {
    let sim = simulator(&[
        (
            "glpat-VENDORSrl-ra0000000000",
            Behaviour::RateLimited {
                retry_after: Some("45".into()),
            },
            None,
        ),
        // No Retry-After: RateLimit-Reset (epoch seconds, 60 s ahead) is the wait.
        (
            "glpat-VENDORSrl-reset0000000",
            Behaviour::RateLimited { retry_after: None },
            None,
        ),
        ("glpat-VENDORSforbidden000000", Behaviour::Forbidden, None),
    ])
    .await;
    let tokens = [
        tok(
            "gl-rl-ra",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSrl-ra0000000000",
            &[],
        ),
        tok(
            "gl-rl-reset",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSrl-reset0000000",
            &[],
        ),
        tok(
            "gl-forbidden",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSforbidden000000",
            &[],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.errors("gl-rl-ra", "rate_limited"), 1.0);
    assert_eq!(m.get("apitoken_probe_interval_seconds", "gl-rl-ra"), 45.0);
    assert_eq!(m.errors("gl-rl-reset", "rate_limited"), 1.0);
    assert_close(
        m.get("apitoken_probe_interval_seconds", "gl-rl-reset"),
        60,
        5,
        "reset",
    );
    assert_eq!(m.errors("gl-forbidden", "forbidden"), 1.0);
    assert!(m.value("apitoken_valid", "gl-forbidden", &[]).is_none());
}

// ------------------------------------------------------------------------------ every error reason

#[tokio::test(flavor = "multi_thread")]
async fn every_error_reason_for_github_and_gitlab() {
    let sim = simulator(&[
        (
            "ghp_VENDORS5xx0000000000000000000000000",
            Behaviour::ServerError { status: 502 },
            None,
        ),
        (
            "glpat-VENDORSslow00000000000",
            Behaviour::Slow {
                delay: Duration::from_secs(3),
            },
            None,
        ),
        (
            "ghp_VENDORSnoid000000000000000000000000",
            Behaviour::NoAccountId,
            None,
        ),
        ("glpat-VENDORSnoid00000000000", Behaviour::NoAccountId, None),
        ("glpat-VENDORShtml00000000000", Behaviour::NonJson, None),
        (
            "ghp_VENDORSvalid00000000000000000000000",
            Behaviour::Valid,
            None,
        ),
    ])
    .await;
    let base = sim.base_url();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let unreachable = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let tls = base.replace("http://", "https://");
    let tokens = [
        tok(
            "gh-5xx",
            "github",
            &base,
            "ghp_VENDORS5xx0000000000000000000000000",
            &[],
        ),
        tok(
            "gl-timeout",
            "gitlab",
            &base,
            "glpat-VENDORSslow00000000000",
            &[],
        ),
        tok(
            "gh-noid",
            "github",
            &base,
            "ghp_VENDORSnoid000000000000000000000000",
            &[],
        ),
        tok(
            "gl-noid",
            "gitlab",
            &base,
            "glpat-VENDORSnoid00000000000",
            &[],
        ),
        tok(
            "gl-html",
            "gitlab",
            &base,
            "glpat-VENDORShtml00000000000",
            &[],
        ),
        tok(
            "gh-connect",
            "github",
            &unreachable,
            "ghp_VENDORSvalid00000000000000000000000",
            &[],
        ),
        tok(
            "gl-tls",
            "gitlab",
            &tls,
            "glpat-VENDORSslow00000000000",
            &[],
        ),
        Tok {
            env: None,
            ..tok("gh-nosecret", "github", &base, "", &[])
        },
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
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
        assert_eq!(m.errors(t, reason), 1.0, "{t}: {reason}\n{}", m.0);
        assert_eq!(m.get("apitoken_probe_success", t), 0.0, "{t}");
        assert!(m.value("apitoken_valid", t, &[]).is_none(), "{t}");
    }
}

// ------------------------------------------------------------------------------ CLI, reload, demo

/// Runs the binary to completion (off the runtime that serves the simulator).
async fn run(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env = env.to_vec();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(BIN)
            .args(&args)
            .envs(env)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_github_and_gitlab_and_shows_the_reported_expiry() {
    let gh_exp = now() + 20 * DAY;
    let sim = simulator(&[
        (
            "ghp_VENDORScheck000000000000000000000000",
            Behaviour::Valid,
            details(Some(gh_exp), Some(&["repo"])),
        ),
        ("glpat-VENDORScheck0000000000", Behaviour::Dead, None),
    ])
    .await;
    let tokens = [
        tok(
            "gh-check",
            "github",
            &sim.base_url(),
            "ghp_VENDORScheck000000000000000000000000",
            &[],
        ),
        tok(
            "gl-check",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORScheck0000000000",
            &[],
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, config(&tokens)).unwrap();
    let file = format!("--config.file={}", path.display());
    let env = env_of(&tokens);
    let (code, out, err) = run(&["check", &file, "--output=json"], &env).await;
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
    let (code, table, _) = run(&["check", &file], &env).await;
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
        assert!(
            !text.contains("VENDORScheck"),
            "secret in check output:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn config_check_accepts_github_and_gitlab_and_refuses_email_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        format!("--config.file={}", p.display())
    };
    let good = write(
        "good.yaml",
        "tokens:\n  - {name: gh, provider: github, token_env: GH}\n  - {name: ghes, provider: github, site: \"https://ghe.acme.example/api/v3\", token_env: GH}\n  - {name: gl, provider: gitlab, token_env: GL}\n  - {name: glb, provider: gitlab, auth: bearer, site: \"https://gitlab.acme.example\", token_env: GL}\n",
    );
    let env = [
        ("GH".to_string(), "x".to_string()),
        ("GL".to_string(), "y".to_string()),
    ];
    let (code, out, err) = run(&["--config.check", &good], &env).await;
    assert_eq!((code, err.as_str()), (0, ""), "{out}");
    assert!(out.starts_with("OK:") && out.contains("4 tokens"), "{out}");

    let bad = write(
        "bad.yaml",
        "tokens:\n  - {name: gh, provider: github, email: a@b.c, token_env: GH}\n  - {name: gl, provider: gitlab, email: a@b.c, token_env: GL}\n  - {name: pasted, provider: gitlab, token_env: glpat-VENDORSpasted0000000000}\n  - {name: hdr, provider: github, auth: header, token_env: GH}\n",
    );
    let (code, out, err) = run(&["--config.check", &bad], &env).await;
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
    assert!(
        !err.contains("VENDORSpasted") && !out.contains("VENDORSpasted"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_adds_a_github_token() {
    let sim = simulator(&[
        ("glpat-VENDORSreload000000000", Behaviour::Valid, None),
        (
            "ghp_VENDORSreload00000000000000000000000",
            Behaviour::Valid,
            details(Some(now() + 5 * DAY), None),
        ),
    ])
    .await;
    let both = [
        tok(
            "gl-first",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSreload000000000",
            &[],
        ),
        tok(
            "gh-added",
            "github",
            &sim.base_url(),
            "ghp_VENDORSreload00000000000000000000000",
            &[],
        ),
    ];
    // Both secrets are in the environment from the start; the first config names one.
    let e = Exporter::start_args(&config(&both[..1]), &env_of(&both), &[]);
    e.probed(&both[..1]).await;
    std::fs::write(&e.config, config(&both)).unwrap();
    let (status, body) = e.reload().await;
    assert_eq!(status, 200, "{body}");
    let m = e
        .until("the added token probed", |m| {
            m.value("apitoken_valid", "gh-added", &[]).is_some()
        })
        .await;
    assert_eq!(m.get("apitoken_valid", "gh-added"), 1.0);
    assert_eq!(m.info("gh-added")["expiry_source"], "provider");
    assert_close(
        m.get("apitoken_days_until_expiry", "gh-added"),
        5,
        1,
        "days",
    );
    assert!(
        m.0.lines()
            .any(|l| l == "apitoken_exporter_config_last_reload_successful 1"),
        "{}",
        m.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_shows_its_github_and_gitlab_tokens_and_never_their_secrets() {
    let e = Exporter::start_args("", &[], &["demo"]);
    let m = e
        .until("the GitHub and GitLab demo tokens probed", |m| {
            ["github-valid", "gitlab-valid"]
                .iter()
                .all(|t| m.value("apitoken_valid", t, &[]).is_some())
        })
        .await;
    for t in ["github-valid", "gitlab-valid"] {
        assert_eq!(m.get("apitoken_valid", t), 1.0, "{t}");
        assert_eq!(m.info(t)["expiry_source"], "provider", "{t}");
        assert!(!m.scopes(t).is_empty(), "{t}");
    }
    assert!(m
        .value("apitoken_lifetime_seconds", "gitlab-valid", &[])
        .is_some());
    let (_, page) = e.get("/").await;
    // Demo secrets are random; every one has this marker after the vendor's prefix.
    for (what, text) in [("/metrics", &m.0), ("/", &page), ("output", &e.printed())] {
        assert!(!text.contains("3xDEMO"), "demo secret in {what}:\n{text}");
    }
}

// ------------------------------------------------------------------------------ secrets, promtool

#[tokio::test(flavor = "multi_thread")]
async fn no_github_or_gitlab_secret_appears_in_any_output() {
    let secrets = [
        ("ghp_VENDORSleak-valid000000000000000000", Behaviour::Valid),
        ("github_pat_VENDORSleak-dead000000000000", Behaviour::Dead),
        (
            "ghp_VENDORSleak-rl0000000000000000000000",
            Behaviour::RateLimited { retry_after: None },
        ),
        (
            "ghp_VENDORSleak-forbidden000000000000000",
            Behaviour::Forbidden,
        ),
        ("glpat-VENDORSleak-valid0000000", Behaviour::Valid),
        (
            "glpat-VENDORSleak-inactive000",
            Behaviour::Inactive { revoked: true },
        ),
        (
            "glpat-VENDORSleak-rl000000000",
            Behaviour::RateLimited {
                retry_after: Some("5".into()),
            },
        ),
        (
            "glpat-VENDORSleak-5xx00000000",
            Behaviour::ServerError { status: 503 },
        ),
    ];
    let creds: Vec<_> = secrets
        .iter()
        .map(|(s, b)| (*s, b.clone(), details(Some(now() + DAY), Some(&["api"]))))
        .collect();
    let sim = simulator(&creds).await;
    const NAMES: [&str; 8] = ["l0", "l1", "l2", "l3", "l4", "l5", "l6", "l7"];
    let tokens: Vec<Tok> = secrets
        .iter()
        .zip(NAMES)
        .map(|((s, _), name)| {
            let provider = if s.starts_with("gl") {
                "gitlab"
            } else {
                "github"
            };
            tok(name, provider, &sim.base_url(), s, &[])
        })
        .collect();
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    // A reload with a broken config names the problem, never a secret from the env.
    std::fs::write(
        &e.config,
        "tokens:\n  - {name: x, provider: github, email: e, token_env: VENDORS_L0}\n",
    )
    .unwrap();
    let (status, reload) = e.reload().await;
    assert_eq!(status, 500, "{reload}");
    let (_, page) = e.get("/").await;
    let (_, ready) = e.get("/-/ready").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let printed = e.printed();
    assert!(printed.contains("started"), "{printed}");
    for (what, text) in [
        ("/metrics", &m.0),
        ("/", &page),
        ("/-/ready", &ready),
        ("/-/reload", &reload),
        ("output", &printed),
    ] {
        for (secret, _) in &secrets {
            assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
            // Nor any recognisable part of it.
            assert!(
                !text.contains("VENDORSleak"),
                "a secret's body in {what}:\n{text}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jira_github_and_gitlab_config_passes_promtool_check_metrics() {
    let sim = simulator(&[
        (
            "ghp_VENDORSprom00000000000000000000000000",
            Behaviour::Valid,
            details(Some(now() + 9 * DAY), Some(&["repo", "gist"])),
        ),
        (
            "glpat-VENDORSprom0000000000",
            Behaviour::Valid,
            Some(TokenDetails {
                created_at: Some(now() - 9 * DAY),
                expires_at: Some(now() + 90 * DAY),
                last_used_at: Some(now() - 60),
                scopes: Some(vec!["read_api".into()]),
            }),
        ),
        (
            "glpat-VENDORSprom-rl000000000",
            Behaviour::RateLimited { retry_after: None },
            None,
        ),
    ])
    .await;
    sim.sim.add_credential(
        "ATATT3xVENDORSprom",
        Credential {
            account_id: "5b10a2844c20165700ede21g".into(),
            email: "jira-bot@acme.example".into(),
            username: "jira-bot".into(),
            behaviour: Behaviour::Valid,
        },
    );
    let tokens = [
        tok(
            "jira",
            "jira",
            &sim.base_url(),
            "ATATT3xVENDORSprom",
            &["email: jira-bot@acme.example", "expires_at: 2030-01-01"],
        ),
        tok(
            "github",
            "github",
            &sim.base_url(),
            "ghp_VENDORSprom00000000000000000000000000",
            &[],
        ),
        tok(
            "gitlab",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSprom0000000000",
            &[],
        ),
        tok(
            "gitlab-rl",
            "gitlab",
            &sim.base_url(),
            "glpat-VENDORSprom-rl000000000",
            &[],
        ),
    ];
    let e = Exporter::start(&tokens);
    let m = e.probed(&tokens).await;
    assert_eq!(m.get("apitoken_valid", "jira"), 1.0);
    assert_eq!(m.get("apitoken_valid", "github"), 1.0);
    assert_eq!(m.get("apitoken_valid", "gitlab"), 1.0);
    for family in [
        "apitoken_scope_info",
        "apitoken_lifetime_seconds",
        "apitoken_last_used_timestamp_seconds",
        "apitoken_probe_errors_total",
    ] {
        assert!(
            m.0.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{}",
            m.0
        );
    }
    // A missing promtool fails the test (scripts/install-test-deps.sh installs it).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: run scripts/install-test-deps.sh");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(m.0.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The one lint promtool raises is the name README's metric table fixes for good
    // (`apitoken_days_until_expiry`, not in seconds); anything else, a parse error above
    // all, fails.
    const KNOWN: &str = "apitoken_days_until_expiry use base unit \"seconds\" instead of \"days\"";
    let other: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty() && l.trim() != KNOWN)
        .collect();
    assert!(
        other.is_empty() && (out.status.success() || said.contains(KNOWN)),
        "promtool check metrics ({}):\n{said}\n{}",
        out.status,
        m.0
    );
}
