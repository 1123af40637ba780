//! `apitoken-sim`: the simulator as a process, for benchmarks and manual runs (bench/
//! "Organization inventory at scale"). Serves one organization on a loopback address:
//!
//! ```text
//! APITOKEN_SIM_ADMIN_KEY=... apitoken-sim [--listen 127.0.0.1:0] [--org-id ORG]
//!     [--tokens 250000] [--api-keys 10] [--rate-limit REQUESTS_PER_MINUTE]
//!     [--exit-after SECONDS]
//! ```
//!
//! The admin key is read from the environment variable `APITOKEN_SIM_ADMIN_KEY` (never
//! from the command line, never printed). The tokens are generated page by page
//! (`generated_org_token`). Prints `listening http://127.0.0.1:PORT` once it serves, and
//! stops by itself after `--exit-after` (default 3600 s).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apitoken_sim::{Behaviour, Credential, OrgApiKey, Simulator};

const KEY_ENV: &str = "APITOKEN_SIM_ADMIN_KEY";

struct Args {
    listen: SocketAddr,
    org_id: String,
    tokens: usize,
    api_keys: usize,
    rate_limit: u64,
    exit_after: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        org_id: "bench-org".to_string(),
        tokens: 250_000,
        api_keys: 10,
        rate_limit: 1_000_000,
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
            "--org-id" => args.org_id = value.clone(),
            "--tokens" => args.tokens = number("--tokens")? as usize,
            "--api-keys" => args.api_keys = number("--api-keys")? as usize,
            "--rate-limit" => args.rate_limit = number("--rate-limit")?.max(1),
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
        sim.add_credential(
            &key,
            Credential {
                account_id: "bench-admin".into(),
                email: "admin@bench.example".into(),
                username: "admin".into(),
                behaviour: Behaviour::Valid,
            },
        );
        sim.add_generated_org_tokens(&args.org_id, args.tokens);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let keys = (0..args.api_keys)
            .map(|i| OrgApiKey {
                id: format!("key-{i:03}"),
                label: format!("bench key {i}"),
                created_by_name: "Bench Admin".into(),
                created_by_email: "admin@bench.example".into(),
                created_at: now - 86_400,
                expires_at: Some(now + (i as i64 + 1) * 86_400),
            })
            .collect();
        sim.add_org_api_keys(&args.org_id, keys);
        sim.set_org_rate_limit(&args.org_id, args.rate_limit, Duration::from_secs(60));
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
