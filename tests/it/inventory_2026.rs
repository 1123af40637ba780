//! The organization inventory as Atlassian has it since 2026, seen from outside: the real
//! binary against the simulator. Each list stands alone (a key from before the scope split
//! gets a 403 on API keys and still publishes its API tokens), revocations seen in the
//! inventory set `apitoken_revoked_timestamp_seconds{source="org_inventory"}` and the lag
//! until the token stops working, aggregates by status and expiry, `per_token_series`,
//! `max_pages`, and an organization of 250,000 tokens (README "Organization inventory").
//!
//! Self-contained: its own small harness (the exporter process, a /metrics reader).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apitoken_sim::{
    Behaviour, Credential, OrgApiKey, OrgToken, RevokeAs, RunningSimulator, Simulator,
};

const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");
const ADMIN_KEY: &str = "ATATT3xINV2026ADMINdoNotLeak";
const ORG: &str = "org-2026";
const DAY: i64 = 86_400;
const EMAIL: &str = "svc@acme.example";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn credential(account: &str) -> Credential {
    Credential {
        account_id: account.into(),
        email: EMAIL.into(),
        username: "svc".into(),
        behaviour: Behaviour::Valid,
    }
}

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

/// A served simulator with the admin key (and `creds`) registered.
async fn simulator(creds: &[(&str, &str)]) -> RunningSimulator {
    let sim = Simulator::new();
    sim.add_credential(ADMIN_KEY, credential("admin-acc"));
    for (secret, account) in creds {
        sim.add_credential(secret, credential(account));
    }
    sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// The organization `acme` (org id [`ORG`]) with `extra` YAML lines (indented 4).
fn org_yaml(base: &str, interval: &str, extra: &str) -> String {
    format!(
        "organizations:\n  - name: acme\n    org_id: {ORG}\n    api_key_env: ADMIN\n    base_url: \"{base}\"\n    probe_interval: {interval}\n{extra}"
    )
}

/// A jira token `name` on the simulator with the secret in env var `env`, plus `extra`.
fn jira_yaml(name: &str, base: &str, env: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    provider: jira\n    site: \"{base}\"\n    email: \"{EMAIL}\"\n    token_env: {env}\n{extra}"
    )
}

fn config(tokens: &[String], orgs: &str) -> String {
    let mut y = "global:\n  allow_insecure_http: true\n  probe_interval: 1s\n".to_string();
    if !tokens.is_empty() {
        y.push_str("tokens:\n");
        y.push_str(&tokens.concat());
    }
    y.push_str(orgs);
    y
}

/// The exporter process, killed (by its own PID) on drop.
struct Exporter {
    /// Held while this exporter runs, so the soak can have the machine to itself.
    _gate: crate::harness::gate::Shared,
    child: Child,
    base: String,
    output: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Exporter {
    fn start(config: &str, env: &[(&str, &str)]) -> Exporter {
        let gate = crate::harness::gate::shared();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(BIN)
            .arg(format!("--config.file={}", path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let log = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                {
                    let _ = tx.send(addr.trim_matches('"').to_string());
                }
                let mut o = log.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            let _ = child.kill();
            panic!("exporter did not start:\n{}", output.lock().unwrap());
        };
        Exporter {
            _gate: gate,
            child,
            base: format!("http://{addr}"),
            output,
            _dir: dir,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    async fn metrics(&self) -> Metrics {
        let r = reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        Metrics(r.text().await.unwrap())
    }

    /// Polls /metrics until `cond` holds, at most `timeout`; returns the last scrape.
    async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        cond: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics().await;
            if cond(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last /metrics:\n{}\nlogs:\n{}",
                m.0,
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A /metrics body.
struct Metrics(String);

/// `name{k="v",…} value` → (labels, value); None for other lines.
fn parse_sample<'a>(line: &'a str, name: &str) -> Option<(Vec<(&'a str, String)>, f64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, value) = match rest.strip_prefix('{') {
        Some(r) => r.rsplit_once("} ")?,
        None => ("", rest.strip_prefix(' ')?),
    };
    let mut out = Vec::new();
    let mut rest = labels;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| if c == 'n' { '\n' } else { c })),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(','), value));
        rest = &after[end..];
    }
    Some((out, value.trim().parse().ok()?))
}

impl Metrics {
    /// Every sample of family `name` whose labels include all of `labels`.
    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.0
            .lines()
            .filter_map(|l| parse_sample(l, name))
            .filter(|(have, _)| {
                labels
                    .iter()
                    .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
            })
            .map(|(_, v)| v)
            .collect()
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let all = self.samples(name, labels);
        assert!(all.len() <= 1, "{name} {labels:?}: {} samples", all.len());
        all.first().copied()
    }

    fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.samples(name, labels).len()
    }

    fn list_success(&self, list: &str) -> Option<f64> {
        self.get(
            "apitoken_org_inventory_success",
            &[("org", "acme"), ("list", list)],
        )
    }

    /// `apitoken_org_tokens` for the list, status and bucket.
    fn tokens(&self, list: &str, status: &str, bucket: &str) -> Option<f64> {
        self.get(
            "apitoken_org_tokens",
            &[
                ("org", "acme"),
                ("list", list),
                ("status", status),
                ("expires_within", bucket),
            ],
        )
    }
}

/// Starts the exporter on the organization alone and waits until both lists ran once.
async fn start_and_list(
    sim: &RunningSimulator,
    interval: &str,
    extra: &str,
) -> (Exporter, Metrics) {
    let e = Exporter::start(
        &config(&[], &org_yaml(&sim.base_url(), interval, extra)),
        &[("ADMIN", ADMIN_KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "both lists ran", |m| {
            m.list_success("api_tokens").is_some() && m.list_success("api_keys").is_some()
        })
        .await;
    (e, m)
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
    let sim = simulator(&[]).await;
    sim.sim.legacy_admin_key(ADMIN_KEY);
    sim.sim.add_org_tokens(
        ORG,
        (0..150)
            .map(|i| token(&format!("t{i:03}"), "acc", "ALLOWED", Some(40 * DAY)))
            .collect(),
    );
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let (e, m) = start_and_list(&sim, "1s", "").await;
    assert_eq!(m.list_success("api_tokens"), Some(1.0), "{}", m.0);
    assert_eq!(m.list_success("api_keys"), Some(0.0));
    assert!(m
        .get(
            "apitoken_org_inventory_last_success_timestamp_seconds",
            &[("org", "acme"), ("list", "api_tokens")]
        )
        .is_some());
    assert!(m
        .get(
            "apitoken_org_inventory_last_success_timestamp_seconds",
            &[("org", "acme"), ("list", "api_keys")]
        )
        .is_none());
    assert_eq!(m.count(TOKEN_EXPIRY, &[("org", "acme")]), 150);
    assert_eq!(m.count(KEY_EXPIRY, &[("org", "acme")]), 0);
    assert_eq!(m.tokens("api_tokens", "ALLOWED", "90d"), Some(150.0));
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
    assert_eq!(m.list_success("api_tokens"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_pages_bounds_each_list_on_its_own() {
    let sim = simulator(&[]).await;
    sim.sim.add_org_tokens(
        ORG,
        (0..250)
            .map(|i| token(&format!("t{i:03}"), "acc", "ALLOWED", None))
            .collect(),
    );
    sim.sim
        .add_org_api_keys(ORG, vec![api_key("k1"), api_key("k2")]);
    let (e, m) = start_and_list(&sim, "1h", "    max_pages: 2\n").await;
    assert_eq!(
        m.list_success("api_tokens"),
        Some(0.0),
        "3 pages > max_pages 2"
    );
    assert_eq!(m.list_success("api_keys"), Some(1.0));
    assert_eq!(m.count(KEY_EXPIRY, &[("org", "acme")]), 2);
    assert_eq!(m.tokens("api_keys", "", "7d"), Some(2.0));
    assert_eq!(sim.sim.org_requests(ORG), 3, "2 token pages + 1 key page");
    assert!(e.output().contains("more than 2 pages"), "{}", e.output());
}

#[test]
fn max_pages_and_per_token_series_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let check = |extra: &str| {
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            config(&[], &org_yaml("https://api.example", "1h", extra)),
        )
        .unwrap();
        let out = Command::new(BIN)
            .arg("--config.check")
            .arg(format!("--config.file={}", path.display()))
            .env("ADMIN", ADMIN_KEY)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(
        check("    max_pages: 2500\n    per_token_series: false\n").0,
        Some(0)
    );
    for (bad, message) in [
        (
            "    max_pages: 0\n",
            "organizations[0] (acme).max_pages: must be at least 1",
        ),
        (
            "    max_pages: 100001\n",
            "organizations[0] (acme).max_pages: must be at most 100000",
        ),
        ("    per_token_series: maybe\n", "per_token_series"),
    ] {
        let (code, err) = check(bad);
        assert_eq!(code, Some(1), "{bad}: {err}");
        assert!(err.contains(message), "{bad}: {err}");
    }
}

// ---------------------------------------------------------------------------------------
// Created timestamps, aggregates, per_token_series
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn created_timestamps_and_aggregates_by_status_and_expiry() {
    let sim = simulator(&[]).await;
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
    let (_e, m) = start_and_list(&sim, "1h", "").await;
    assert_eq!(m.list_success("api_tokens"), Some(1.0));
    assert_eq!(m.list_success("api_keys"), Some(1.0));
    let created = m
        .get(
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
        .get(
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
            m.tokens("api_tokens", "ALLOWED", bucket),
            Some(n),
            "{bucket}\n{}",
            m.0
        );
    }
    assert_eq!(m.tokens("api_tokens", "BLOCKED", "7d"), Some(1.0));
    assert_eq!(m.tokens("api_tokens", "BLOCKED", "later"), Some(0.0));
    assert_eq!(m.tokens("api_keys", "", "7d"), Some(1.0));
    assert_eq!(m.tokens("api_keys", "", "never"), Some(0.0));
    assert!(!m.0.contains("private.example") && !m.0.contains("Private Person"));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_per_token_series_only_aggregates_and_health_are_exported_but_links_work() {
    let sim = simulator(&[("ATATT3xLINKED", "acc-linked")]).await;
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
            &[jira_yaml(
                "linked",
                &base,
                "S",
                "    org_token_id: mine\n    expires_at: 2030-01-01\n",
            )],
            &org_yaml(&base, "1s", "    per_token_series: false\n"),
        ),
        &[("ADMIN", ADMIN_KEY), ("S", "ATATT3xLINKED")],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "linked", |m| {
            m.get(
                "apitoken_info",
                &[("token", "linked"), ("expiry_source", "org_inventory")],
            )
            .is_some()
                && m.list_success("api_keys") == Some(1.0)
        })
        .await;
    let days = m
        .get("apitoken_days_until_expiry", &[("token", "linked")])
        .unwrap();
    assert!((days - 6.0).abs() < 0.01, "{days}");
    for family in [TOKEN_EXPIRY, TOKEN_CREATED, KEY_EXPIRY, KEY_CREATED] {
        assert!(!m.0.contains(family), "{family} exported:\n{}", m.0);
    }
    assert!(!m
        .0
        .contains("apitoken_org_token_last_active_timestamp_seconds"));
    assert_eq!(m.tokens("api_tokens", "ALLOWED", "later"), Some(120.0));
    assert_eq!(m.tokens("api_tokens", "ALLOWED", "7d"), Some(1.0));
    assert_eq!(m.tokens("api_keys", "", "7d"), Some(1.0));
    assert_eq!(m.list_success("api_tokens"), Some(1.0));

    // Revocation still works without the per-token series.
    assert!(sim.sim.set_org_token_status(ORG, "mine", "BLOCKED"));
    e.wait_for(Duration::from_secs(15), "revoked", |m| {
        m.get(REVOKED, &[("token", "linked"), ("source", "org_inventory")])
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
    let sim = simulator(&[(secret, "acc-svc")]).await;
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
            &[jira_yaml(
                "svc",
                &base,
                "S",
                "    org_token_id: svc-token\n",
            )],
            &org_yaml(&base, "1s", ""),
        ),
        &[("ADMIN", ADMIN_KEY), ("S", secret)],
    );
    e.wait_for(Duration::from_secs(20), "linked and valid", |m| {
        m.get(
            "apitoken_info",
            &[("token", "svc"), ("expiry_source", "org_inventory")],
        )
        .is_some()
            && m.get("apitoken_valid", &[("token", "svc")]) == Some(1.0)
    })
    .await;
    let m = e.metrics().await;
    assert_eq!(m.count(REVOKED, &[]), 0, "nothing revoked yet:\n{}", m.0);

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
            m.get(REVOKED, &[("token", "svc")]).is_some()
        })
        .await;
    let at = m
        .get(
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
        m.get(LAG, &[("token", "svc")]).is_none(),
        "no lag before it stopped working"
    );
    assert_eq!(
        m.get("apitoken_valid", &[("token", "svc")]),
        Some(1.0),
        "still works"
    );

    let m = e
        .wait_for(Duration::from_secs(20), "the lag", |m| {
            m.get(LAG, &[("token", "svc")]).is_some()
        })
        .await;
    assert_eq!(m.get("apitoken_valid", &[("token", "svc")]), Some(0.0));
    let lag = m
        .get(LAG, &[("token", "svc"), ("provider", "jira")])
        .unwrap();
    assert!((1.5..=8.0).contains(&lag), "lag {lag}");
    // Later listings keep the first time.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = e.metrics().await;
    assert_eq!(
        m.get(REVOKED, &[("token", "svc"), ("source", "org_inventory")]),
        Some(at)
    );
    assert_eq!(m.get(LAG, &[("token", "svc")]), Some(lag));
    assert!(!e.output().contains(secret));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vanished_token_linked_by_account_is_revoked_and_the_config_wins() {
    let sim = simulator(&[("ATATT3xVANISH", "acc-solo"), ("ATATT3xCONF", "acc-conf")]).await;
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
                jira_yaml(
                    "by-account",
                    &base,
                    "S1",
                    "    expected_account_id: acc-solo\n",
                ),
                jira_yaml(
                    "configured",
                    &base,
                    "S2",
                    "    org_token_id: conf\n    revoked_at: 2026-03-01T00:00:00Z\n",
                ),
            ],
            &org_yaml(&base, "1s", ""),
        ),
        &[
            ("ADMIN", ADMIN_KEY),
            ("S1", "ATATT3xVANISH"),
            ("S2", "ATATT3xCONF"),
        ],
    );
    let m = e
        .wait_for(Duration::from_secs(20), "linked", |m| {
            m.get(
                "apitoken_info",
                &[("token", "by-account"), ("expiry_source", "org_inventory")],
            )
            .is_some()
        })
        .await;
    assert!(m.get(REVOKED, &[("token", "by-account")]).is_none());
    assert_eq!(
        m.get(REVOKED, &[("token", "configured"), ("source", "config")]),
        Some(1_772_323_200.0)
    );

    assert!(sim.sim.remove_org_token(ORG, "solo"));
    assert!(sim.sim.set_org_token_status(ORG, "conf", "BLOCKED"));
    let m = e
        .wait_for(Duration::from_secs(15), "revoked from the inventory", |m| {
            m.get(
                REVOKED,
                &[("token", "by-account"), ("source", "org_inventory")],
            )
            .is_some()
        })
        .await;
    // The config's revoked_at wins over the inventory's: one series, source="config".
    assert_eq!(m.count(REVOKED, &[("token", "configured")]), 1);
    assert_eq!(
        m.get(REVOKED, &[("token", "configured"), ("source", "config")]),
        Some(1_772_323_200.0)
    );
    // Back to the configured (absent) expiry once the entry is gone.
    assert!(m
        .get(
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
    let sim = simulator(&[]).await;
    sim.sim.add_generated_org_tokens(ORG, 250_000);
    sim.sim
        .set_org_rate_limit(ORG, 1_000_000, Duration::from_secs(60));
    sim.sim.add_org_api_keys(ORG, vec![api_key("k1")]);
    let e = Exporter::start(
        &config(
            &[],
            &org_yaml(&sim.base_url(), "1h", "    per_token_series: false\n"),
        ),
        &[("ADMIN", ADMIN_KEY)],
    );
    let m = e
        .wait_for(Duration::from_secs(240), "250,000 tokens listed", |m| {
            m.list_success("api_tokens").is_some()
        })
        .await;
    assert_eq!(m.list_success("api_tokens"), Some(1.0), "{}", e.output());
    assert_eq!(sim.sim.org_requests(ORG), 2501);
    let total: f64 = m
        .samples(
            "apitoken_org_tokens",
            &[("org", "acme"), ("list", "api_tokens")],
        )
        .iter()
        .sum();
    assert_eq!(total, 250_000.0);
    assert_eq!(m.tokens("api_tokens", "ALLOWED", "never"), Some(25_000.0));
    assert!(
        m.0.len() < 64 * 1024,
        "{} bytes without per-token series",
        m.0.len()
    );
}
