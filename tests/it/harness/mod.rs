//! Test harness: the real `apitoken_exporter` binary, started on 127.0.0.1:0 with a config
//! written to a temp dir, talking to the in-process Atlassian simulator.

pub mod faults;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitoken_exporter::simulator::{Behaviour, Credential, RunningSimulator, Simulator};

pub const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");

/// A credential for the simulator, with the email the config must use.
pub fn cred(account: &str, email: &str, behaviour: Behaviour) -> Credential {
    Credential {
        account_id: account.into(),
        email: email.into(),
        username: email.split('@').next().unwrap_or(email).into(),
        behaviour,
    }
}

pub async fn simulator(creds: &[(&str, Credential)]) -> RunningSimulator {
    let sim = Simulator::new();
    sim.close_site("/closed");
    for (secret, c) in creds {
        sim.add_credential(secret, c.clone());
    }
    sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// A running exporter process; killed (by its own PID) on drop.
pub struct Exporter {
    child: Child,
    pub base: String,
    /// Holds the config file; removed when the exporter is dropped.
    _dir: tempfile::TempDir,
    pub config_path: PathBuf,
    output: Arc<Mutex<String>>,
}

impl Exporter {
    /// Starts the exporter with `config` (YAML) and extra env vars; waits until it listens.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Exporter {
        Self::start_with_args(config, env, &[])
    }

    pub fn start_with_args(config: &str, env: &[(&str, &str)], args: &[&str]) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=debug")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let out2 = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // logfmt `listen=ADDR` or JSON `"listen":"ADDR"`
                let addr = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                    .map(|a| a.trim_matches('"').to_string())
                    .or_else(|| {
                        let rest = line.split("\"listen\":\"").nth(1)?;
                        rest.split('"').next().map(str::to_string)
                    });
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
                let mut o = out2.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
        });
        let mut stdout = child.stdout.take().unwrap();
        let out3 = output.clone();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            out3.lock().unwrap().push_str(&s);
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "exporter did not start; output:\n{}",
                    output.lock().unwrap()
                );
            }
        };
        Exporter {
            child,
            base: format!("http://{addr}"),
            _dir: dir,
            config_path,
            output,
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub async fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        Metrics(body)
    }

    /// Polls /metrics until `cond` holds (at most `timeout`), returning the last scrape.
    pub async fn wait_for(
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
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last /metrics:\n{}\noutput:\n{}",
                    m.0,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal to this exporter only (by its PID).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(&self.config_path, config).unwrap();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A /metrics body with helpers to read samples.
#[derive(Debug, Clone)]
pub struct Metrics(pub String);

impl Metrics {
    /// The value of `name` for `token` with any extra `labels` (exact `k="v"` matches).
    pub fn get(&self, name: &str, token: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let prefix = format!("{name}{{token=\"{token}\",");
        self.0.lines().find_map(|l| {
            if !l.starts_with(&prefix) {
                return None;
            }
            let (series, value) = l.rsplit_once(' ')?;
            labels
                .iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse().ok())
                .flatten()
        })
    }

    pub fn has(&self, name: &str, token: &str) -> bool {
        self.get(name, token, &[]).is_some()
    }

    pub fn errors(&self, token: &str, reason: &str) -> f64 {
        self.get("apitoken_probe_errors_total", token, &[("reason", reason)])
            .unwrap_or(0.0)
    }

    pub fn probes(&self, token: &str, result: &str) -> f64 {
        self.get("apitoken_probes_total", token, &[("result", result)])
            .unwrap_or(0.0)
    }

    pub fn line(&self, name: &str, token: &str) -> Option<&str> {
        let prefix = format!("{name}{{token=\"{token}\",");
        self.0.lines().find(|l| l.starts_with(&prefix))
    }
}

/// A YAML token entry for jira/confluence/bitbucket with the secret in env var `env`.
pub fn token_yaml(name: &str, provider: &str, site: &str, email: &str, env: &str) -> String {
    format!(
        "  - name: {name}\n    provider: {provider}\n    site: \"{site}\"\n    email: \"{email}\"\n    token_env: {env}\n"
    )
}

pub fn config_yaml(global: &str, tokens: &[String]) -> String {
    format!(
        "global:\n  allow_insecure_http: true\n{global}tokens:\n{}",
        tokens.concat()
    )
}

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

pub fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// `n` jira tokens named `t0..tN` on the simulator, each with its own secret (registered
/// with `behaviour`) in its own env var.
pub struct Fleet {
    pub secrets: Vec<String>,
    pub tokens: Vec<String>,
    env: Vec<(String, String)>,
}

impl Fleet {
    pub fn new(sim: &RunningSimulator, n: usize, tag: &str, behaviour: Behaviour) -> Fleet {
        let email = "svc@acme.example";
        let secrets: Vec<String> = (0..n).map(|i| format!("ATATT3x{tag}{i}")).collect();
        for s in &secrets {
            sim.sim
                .add_credential(s, cred("acc", email, behaviour.clone()));
        }
        let tokens = (0..n)
            .map(|i| {
                token_yaml(
                    &format!("t{i}"),
                    "jira",
                    &sim.base_url(),
                    email,
                    &format!("S{i}"),
                )
            })
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
