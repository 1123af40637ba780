//! `apitoken-sim`: the simulator as a process, for benchmarks, manual runs and the alert
//! end-to-end test. Serves on a loopback address:
//!
//! ```text
//! APITOKEN_SIM_ADMIN_KEY=... apitoken-sim [--listen 127.0.0.1:0] [--org-id ORG]
//!     [--tokens 250000] [--api-keys 10] [--rate-limit REQUESTS_PER_MINUTE]
//!     [--scenario alerts-2026 [--revoke-on-listing N] [--still-works-for SECONDS]]
//!     [--exit-after SECONDS]
//! ```
//!
//! Without `--scenario`: one organization (`--org-id`, default `bench-org`) of generated
//! tokens, for bench/ "Organization inventory at scale". The tokens are generated page by
//! page (`generated_org_token`); `--api-keys` keys expire 1, 2, … days from now.
//!
//! The admin key is read from the environment variable `APITOKEN_SIM_ADMIN_KEY` (never
//! from the command line, never printed). Prints `listening http://127.0.0.1:PORT` once it
//! serves, and stops by itself after `--exit-after` (default 3600 s).
//!
//! # `--scenario alerts-2026`
//!
//! What `tests/e2e/alerting_e2e.sh` runs a second exporter against (with a config of its
//! own, see that script), to prove two alerts of `alerts/apitoken.rules.yml` with real
//! Prometheus and Alertmanager. It replaces the generated organization (`--tokens` and
//! `--api-keys` are ignored). The user tokens' secrets are read from the environment too,
//! one variable each, all required:
//!
//! | variable | credential | site | what happens |
//! |---|---|---|---|
//! | `APITOKEN_SIM_FLIP_TOKEN` | `flip@alerts.example`, dead | `/flip-site` (open) | the "flip": `/myself` refuses it, `/project/search` serves it as anonymous, but every 2nd request to `/flip-site/rest/api/3/project/search` answers 429 with `Retry-After: 1` (only that site's, see [`Simulator::flaky_endpoint`]) |
//! | `APITOKEN_SIM_BLOCKED_TOKEN` | `blocked@alerts.example`, valid | `/closed-site` (no anonymous access) | inventory entry `tok-blocked` turns `BLOCKED` on listing N |
//! | `APITOKEN_SIM_DELETED_TOKEN` | `deleted@alerts.example`, valid | `/closed-site` | inventory entry `tok-deleted` is gone from listing N on |
//! | `APITOKEN_SIM_LINKED_TOKEN` | `linked@alerts.example`, valid | `/closed-site` | inventory entry `tok-linked` stays `ALLOWED` (the control) |
//!
//! The organization `--org-id` (default `alerts-2026-org`) lists the three user API
//! tokens, `ALLOWED`, expiring in 200 days and active an hour ago, and one admin API key
//! (`key-ops`, expiring in 300 days): nothing for the inventory alerts. On its N-th listing
//! of `api-tokens` (`--revoke-on-listing`, default 3; see
//! [`Simulator::revoke_org_token_on_listing`]) an admin revokes `tok-blocked` and
//! `tok-deleted`; their credentials keep authenticating for `--still-works-for` seconds
//! (default 30) from then on, and are rejected after that. The admin key authenticates as
//! `alerts-admin` (`GET /admin/v1/orgs`).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apitoken_sim::{Behaviour, Credential, OrgApiKey, OrgToken, RevokeAs, Simulator};

const KEY_ENV: &str = "APITOKEN_SIM_ADMIN_KEY";
const DAY: i64 = 86_400;

/// `--scenario alerts-2026`: the user tokens, by the environment variable of their secret:
/// (variable, account, inventory entry, what happens to it). Which site the exporter uses
/// for each is its config's business (the table in the module doc).
const ALERTS_2026_TOKENS: [(&str, &str, &str, Fate); 4] = [
    ("APITOKEN_SIM_FLIP_TOKEN", "flip", "", Fate::Dead),
    (
        "APITOKEN_SIM_BLOCKED_TOKEN",
        "blocked",
        "tok-blocked",
        Fate::Revoked(RevokeAs::Blocked),
    ),
    (
        "APITOKEN_SIM_DELETED_TOKEN",
        "deleted",
        "tok-deleted",
        Fate::Revoked(RevokeAs::Deleted),
    ),
    (
        "APITOKEN_SIM_LINKED_TOKEN",
        "linked",
        "tok-linked",
        Fate::Stays,
    ),
];

#[derive(Clone, Copy)]
enum Fate {
    /// Expired or revoked long ago: refused, or anonymous where the site allows it.
    Dead,
    /// Revoked by an admin on listing N, keeps working for a while.
    Revoked(RevokeAs),
    /// Valid, its entry `ALLOWED` throughout.
    Stays,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    /// The generated organization of bench/.
    Bench,
    Alerts2026,
}

struct Args {
    listen: SocketAddr,
    org_id: Option<String>,
    tokens: usize,
    api_keys: usize,
    rate_limit: u64,
    scenario: Scenario,
    revoke_on_listing: u64,
    still_works_for: Duration,
    exit_after: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        org_id: None,
        tokens: 250_000,
        api_keys: 10,
        rate_limit: 1_000_000,
        scenario: Scenario::Bench,
        revoke_on_listing: 3,
        still_works_for: Duration::from_secs(30),
        exit_after: Duration::from_secs(3600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag}: a value is required"))?;
        let number = |what: &str| {
            value
                .parse::<u64>()
                .map_err(|_| format!("{what}: not a number: {value:?}"))
        };
        match flag.as_str() {
            "--listen" => {
                args.listen = value
                    .parse()
                    .map_err(|_| format!("--listen: not an address: {value:?}"))?;
            }
            "--org-id" => args.org_id = Some(value.clone()),
            "--tokens" => args.tokens = number("--tokens")? as usize,
            "--api-keys" => args.api_keys = number("--api-keys")? as usize,
            "--rate-limit" => args.rate_limit = number("--rate-limit")?.max(1),
            "--scenario" => {
                args.scenario = match value.as_str() {
                    "alerts-2026" => Scenario::Alerts2026,
                    other => return Err(format!("--scenario: unknown scenario {other:?}")),
                }
            }
            "--revoke-on-listing" => {
                args.revoke_on_listing = number("--revoke-on-listing")?.max(1);
            }
            "--still-works-for" => {
                args.still_works_for = Duration::from_secs(number("--still-works-for")?);
            }
            "--exit-after" => args.exit_after = Duration::from_secs(number("--exit-after")?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if !args.listen.ip().is_loopback() {
        return Err(format!(
            "--listen: {} is not a loopback address; the simulator serves 127.0.0.1 only",
            args.listen
        ));
    }
    Ok(args)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn credential(account: &str, behaviour: Behaviour) -> Credential {
    Credential {
        account_id: format!("{account}-account"),
        email: format!("{account}@alerts.example"),
        username: account.to_string(),
        behaviour,
    }
}

/// The generated organization of bench/.
fn bench(sim: &Simulator, args: &Args, org_id: &str) {
    sim.add_generated_org_tokens(org_id, args.tokens);
    let now = unix_now();
    let keys = (0..args.api_keys)
        .map(|i| OrgApiKey {
            id: format!("key-{i:03}"),
            label: format!("bench key {i}"),
            created_by_name: "Bench Admin".into(),
            created_by_email: "admin@bench.example".into(),
            created_at: now - DAY,
            expires_at: Some(now + (i as i64 + 1) * DAY),
        })
        .collect();
    sim.add_org_api_keys(org_id, keys);
}

/// `--scenario alerts-2026` (module doc); the secrets are (variable, secret) pairs.
fn alerts_2026(sim: &Simulator, args: &Args, org_id: &str, secrets: &[(&str, String)]) {
    let now = unix_now();
    let secret_of = |var: &str| {
        secrets
            .iter()
            .find(|(v, _)| *v == var)
            .map_or(String::new(), |(_, s)| s.clone())
    };
    sim.close_site("/closed-site");
    // Scoped to the flip token's site: the suffix includes the site prefix.
    sim.flaky_endpoint("/flip-site/rest/api/3/project/search", 2, 429, Some("1"));
    let mut entries = Vec::new();
    for (var, account, entry, fate) in ALERTS_2026_TOKENS {
        let secret = secret_of(var);
        let behaviour = match fate {
            Fate::Dead => Behaviour::Dead,
            Fate::Revoked(_) | Fate::Stays => Behaviour::Valid,
        };
        sim.add_credential(&secret, credential(account, behaviour));
        if entry.is_empty() {
            continue;
        }
        entries.push(OrgToken {
            id: entry.to_string(),
            label: format!("{account} integration"),
            status: "ALLOWED".into(),
            account_id: format!("{account}-account"),
            user_name: format!("{account} owner"),
            user_email: format!("{account}@alerts.example"),
            created_at: now - 30 * DAY,
            expires_at: Some(now + 200 * DAY),
            last_active_at: Some(now - 3600),
        });
        if let Fate::Revoked(how) = fate {
            sim.revoke_org_token_on_listing(
                org_id,
                entry,
                how,
                args.revoke_on_listing,
                &secret,
                args.still_works_for,
            );
        }
    }
    sim.add_org_tokens(org_id, entries);
    sim.add_org_api_keys(
        org_id,
        vec![OrgApiKey {
            id: "key-ops".into(),
            label: "alerts e2e key".into(),
            created_by_name: "Alerts Admin".into(),
            created_by_email: "admin@alerts.example".into(),
            created_at: now - DAY,
            expires_at: Some(now + 300 * DAY),
        }],
    );
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("apitoken-sim: {e}");
            std::process::exit(2);
        }
    };
    let Ok(key) = std::env::var(KEY_ENV) else {
        eprintln!("apitoken-sim: set {KEY_ENV} to the admin key the exporter will send");
        std::process::exit(2);
    };
    let mut secrets = Vec::new();
    if args.scenario == Scenario::Alerts2026 {
        for (var, ..) in ALERTS_2026_TOKENS {
            match std::env::var(var) {
                Ok(s) if !s.is_empty() && s != key => secrets.push((var, s)),
                _ => {
                    eprintln!(
                        "apitoken-sim: --scenario alerts-2026 needs {var}: the token's secret, \
                         not empty and not the admin key"
                    );
                    std::process::exit(2);
                }
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apitoken-sim: no runtime: {e}");
            std::process::exit(1);
        }
    };
    runtime.block_on(async move {
        let sim = Simulator::new();
        let (admin, org_id) = match args.scenario {
            Scenario::Bench => ("bench", "bench-org"),
            Scenario::Alerts2026 => ("alerts", "alerts-2026-org"),
        };
        let org_id = args.org_id.clone().unwrap_or_else(|| org_id.to_string());
        let mut admin_cred = credential(admin, Behaviour::Valid);
        admin_cred.account_id = format!("{admin}-admin");
        admin_cred.email = format!("admin@{admin}.example");
        admin_cred.username = "admin".into();
        sim.add_credential(&key, admin_cred);
        match args.scenario {
            Scenario::Bench => bench(&sim, &args, &org_id),
            Scenario::Alerts2026 => alerts_2026(&sim, &args, &org_id, &secrets),
        }
        sim.set_org_rate_limit(&org_id, args.rate_limit, Duration::from_secs(60));
        let running = match sim.start(args.listen).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("apitoken-sim: cannot listen on {}: {e}", args.listen);
                std::process::exit(1);
            }
        };
        println!("listening {}", running.base_url());
        tokio::time::sleep(args.exit_after).await;
        running.shutdown();
    });
}
