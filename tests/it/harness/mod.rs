//! What the suites share, compiled once: the real binary on 127.0.0.1:0 ([`Exporter`]:
//! reload, scrape), `/metrics` parsed into samples ([`Metrics`]), typed configs
//! ([`ConfigBuilder`]), the in-process Atlassian simulator, the binary's commands run to
//! completion ([`run_cli`]), `promtool check metrics`, a raw-TCP fault server
//! ([`faults`]), and the exporter's router in-process ([`inproc`]).

mod config;
mod exporter;
pub mod faults;
pub mod gate;
pub mod inproc;
mod metrics;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apitoken_sim::{Behaviour, Credential, RunningSimulator, Simulator};

pub use config::{ConfigBuilder, OrgSpec, TokenSpec};
pub use exporter::Exporter;
pub use metrics::{Metrics, Sample};

pub const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");

/// The email most simulated credentials authenticate with.
pub const EMAIL: &str = "svc@acme.example";

/// A day in seconds.
pub const DAY: i64 = 86_400;

/// The wall clock in whole Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A credential for the simulator, with the email the config must use.
pub fn cred(account: &str, email: &str, behaviour: Behaviour) -> Credential {
    Credential {
        account_id: account.into(),
        email: email.into(),
        username: email.split('@').next().unwrap_or(email).into(),
        behaviour,
    }
}

/// The simulator on 127.0.0.1:0 with these credentials; `/closed` is a site without
/// anonymous access.
pub async fn simulator(creds: &[(&str, Credential)]) -> RunningSimulator {
    let sim = Simulator::new();
    sim.close_site("/closed");
    for (secret, c) in creds {
        sim.add_credential(secret, c.clone());
    }
    sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A jira token `name` on `site` authenticating as [`EMAIL`] with the secret in `env`.
pub fn jira(name: &str, site: &str, env: &str) -> TokenSpec {
    TokenSpec::jira(name).site(site).email(EMAIL).token_env(env)
}

/// Polls `cond` every 50 ms until it holds; fails the test after `timeout`, naming `what`.
pub async fn eventually(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run_cli`] on a blocking thread, off the runtime (which may be serving the simulator
/// the command probes).
pub async fn run_cli_off_runtime(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_cli(&args, &env)
    })
    .await
    .unwrap()
}

/// Runs the real `promtool check metrics` on `exposition`: its exit status and what it
/// said (stdout then stderr). A missing promtool fails the test:
/// `scripts/install-test-deps.sh` installs it.
pub fn promtool_check_metrics(exposition: &str) -> (ExitStatus, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool is required (run scripts/install-test-deps.sh): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(exposition.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status, said)
}

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// `n` jira tokens named `t0..tN` on the simulator, each with its own secret (registered
/// with `behaviour`) in its own env var.
pub struct Fleet {
    pub secrets: Vec<String>,
    pub tokens: Vec<TokenSpec>,
    env: Vec<(String, String)>,
}

impl Fleet {
    pub fn new(sim: &RunningSimulator, n: usize, tag: &str, behaviour: Behaviour) -> Fleet {
        let secrets: Vec<String> = (0..n).map(|i| format!("ATATT3x{tag}{i}")).collect();
        for s in &secrets {
            sim.sim
                .add_credential(s, cred("acc", EMAIL, behaviour.clone()));
        }
        let tokens = (0..n)
            .map(|i| jira(&format!("t{i}"), &sim.base_url(), &format!("S{i}")))
            .collect();
        let env = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("S{i}"), s.clone()))
            .collect();
        Fleet {
            secrets,
            tokens,
            env,
        }
    }

    pub fn env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}
