//! The real `apitoken_exporter` binary as a child process on 127.0.0.1:0, with its config
//! in a temp dir, its output captured, and the HTTP calls the tests make to it.

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::gate;
use super::metrics::Metrics;
use super::BIN;

/// Every request the harness makes is bounded by this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The proxy settings the exporter honours, removed from the environment it inherits.
const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// Appends each line of `from` to `into` as it arrives (invalid UTF-8 replaced, so no
/// line ends the reading early), after showing it to `see`.
fn collect_lines(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    mut see: impl FnMut(&str) + Send + 'static,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut from = BufReader::new(from);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match from.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&buf);
            let line = text.strip_suffix('\n').unwrap_or(&text);
            see(line);
            let mut o = into.lock().unwrap();
            o.push_str(line);
            o.push('\n');
        }
    })
}

/// A running exporter process; killed (by its own PID) on drop.
pub struct Exporter {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub config_path: PathBuf,
    /// Holds the config file; removed when the exporter is dropped.
    _dir: tempfile::TempDir,
    output: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    client: reqwest::Client,
    /// The soak runs alone: no other exporter while it holds the gate exclusively.
    _gate: gate::Shared,
}

impl Exporter {
    /// Starts the exporter with `config` (YAML) and extra env vars; waits until it listens.
    pub fn start(config: &str, env: &[(&str, &str)]) -> Exporter {
        Self::start_with_args(config, env, &[])
    }

    pub fn start_with_args(config: &str, env: &[(&str, &str)], args: &[&str]) -> Exporter {
        Self::spawn(config, env, args, gate::shared())
    }

    /// As [`Exporter::start`], for a test that already holds the gate exclusively.
    pub fn start_alone(config: &str, env: &[(&str, &str)], alone: &gate::Exclusive) -> Exporter {
        Self::spawn(config, env, &[], alone.shared())
    }

    fn spawn(config: &str, env: &[(&str, &str)], args: &[&str], gate: gate::Shared) -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = Command::new(BIN);
        // Every upstream is on 127.0.0.1: a proxy from the test's own environment must not
        // apply (a test that wants one passes it in `env`).
        for var in PROXY_VARS {
            command.env_remove(var);
        }
        let mut child = command
            .arg(format!("--config.file={}", config_path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg("--log.level=debug")
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        let err_reader = collect_lines(stderr, output.clone(), move |line| {
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
        });
        let out_reader = collect_lines(child.stdout.take().unwrap(), output.clone(), |_| {});
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
            config_path,
            _dir: dir,
            output,
            readers: vec![err_reader, out_reader],
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap(),
            _gate: gate,
        }
    }

    /// `127.0.0.1:PORT`, for raw TCP clients.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// stdout and stderr so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends a request: the status and the body.
    async fn call(&self, request: reqwest::RequestBuilder) -> (u16, String) {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.call(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    /// `GET /metrics` (200 expected), parsed.
    pub async fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200, "GET /metrics: {body}");
        Metrics::parse(body).unwrap_or_else(|e| panic!("/metrics does not parse: {e}"))
    }

    /// `POST /-/reload`: the status and the body.
    pub async fn reload(&self) -> (u16, String) {
        self.call(self.client.post(format!("{}/-/reload", self.base)))
            .await
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
            let m = self.scrape().await;
            if cond(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last /metrics:\n{}\noutput:\n{}",
                    m.text(),
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls the output until it contains `needle` (at most `timeout`).
    pub async fn wait_for_output(&self, timeout: Duration, needle: &str) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.output();
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {needle:?} in the output:\n{out}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
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

    /// SIGTERM, then waits up to `within` for the process to exit (killing it if it does
    /// not); returns its exit status if it exited in time, and its whole output (read to
    /// the end, so a check on it misses nothing).
    pub async fn terminate(mut self, within: Duration) -> (Option<ExitStatus>, String) {
        self.signal("TERM");
        let deadline = Instant::now() + within;
        let mut status = None;
        while status.is_none() && Instant::now() < deadline {
            status = self.child.try_wait().unwrap();
            if status.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The pipes are closed now: the readers reach the end of the output.
        let readers_done = Instant::now() + Duration::from_secs(10);
        while !self.readers.iter().all(JoinHandle::is_finished) {
            assert!(
                Instant::now() < readers_done,
                "output readers did not finish"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (status, self.output())
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
