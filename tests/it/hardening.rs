//! Hardening against the real binary: a SIGHUP during a slow start-up queues a reload
//! instead of killing the process, a reload that only changes a token's interval keeps
//! its state and counters, and out-of-range numbers are refused before they can stop
//! probing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apitoken_sim::Behaviour;

use crate::harness::{cred, simulator, ConfigBuilder, Exporter, TokenSpec};

const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");

/// The `listen=` address the exporter logs once it serves, from its log file.
fn wait_listening(log: &std::path::Path, child: &mut std::process::Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = text.split_whitespace().find_map(|w| {
            w.strip_prefix("listen=")
                .map(|a| a.trim_matches('"').to_string())
        }) {
            return format!("http://{addr}");
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the exporter exited: {:?}\n{text}",
            child.try_wait()
        );
        assert!(Instant::now() < deadline, "not listening:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_sighup_during_a_slow_start_up_does_not_kill_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let mut yaml =
        String::from("global: {allow_insecure_http: true, probe_interval: 1h}\ntokens:\n");
    for i in 0..10_000 {
        yaml.push_str(&format!(
            "  - {{name: t{i}, provider: jira, site: \"http://127.0.0.1:9\", email: e@x, token_env: T{i}, labels: {{team: t{}}}}}\n",
            i % 50
        ));
    }
    std::fs::write(&path, yaml).unwrap();
    let log = dir.path().join("log");
    let _gate = crate::harness::gate::shared();
    let mut child = Command::new(BIN)
        .arg(format!("--config.file={}", path.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // While the 10,000-token config is still being parsed.
    std::thread::sleep(Duration::from_millis(30));
    let sent = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(sent.success());
    let base = wait_listening(&log, &mut child);
    let ready = plain_http::get_status(&format!("{base}/-/ready"));
    assert_eq!(ready, 200, "{}", std::fs::read_to_string(&log).unwrap());
    let _ = child.kill();
    let _ = child.wait();
}

mod plain_http {
    /// A plain HTTP GET over a std TCP stream: the status code.
    pub fn get_status(url: &str) -> u16 {
        use std::io::{Read, Write};
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').map_or((rest, "/"), |(h, p)| (h, p));
        let mut s = std::net::TcpStream::connect(host).unwrap();
        write!(
            s,
            "GET /{} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            path.trim_start_matches('/')
        )
        .unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_only_changes_the_interval_keeps_state_and_counters() {
    let secret = "ATATT3xKEEPSTATE";
    let sim = simulator(&[(secret, cred("acc-keep", "k@x", Behaviour::Valid))]).await;
    let config = |interval: &str| {
        ConfigBuilder::new()
            .token(
                TokenSpec::jira("keep")
                    .site(&sim.base_url())
                    .email("k@x")
                    .token_env("KEEP")
                    .probe_interval(interval),
            )
            .yaml()
    };
    let e = Exporter::start(&config("1s"), &[("KEEP", secret)]);
    let before = e
        .wait_for(Duration::from_secs(30), "3 valid probes", |m| {
            m.probes("keep", "valid") >= 3.0
        })
        .await;
    e.write_config(&config("1h"));
    assert_eq!(e.reload().await.0, 200);
    let after = e.scrape().await;
    // Counters and the last conclusive state survive; a reset would drop them to nothing.
    assert!(
        after.probes("keep", "valid") >= before.probes("keep", "valid"),
        "counters were reset:\nbefore {}\nafter {}",
        before.text(),
        after.text()
    );
    assert_eq!(
        after.value("apitoken_valid", &[("token", "keep")]),
        Some(1.0)
    );
    assert!(
        after.has(
            "apitoken_last_probe_timestamp_seconds",
            &[("token", "keep")]
        ),
        "the last probe was forgotten:\n{}",
        after.text()
    );
    // The new interval applies.
    e.wait_for(Duration::from_secs(10), "the 1h interval", |m| {
        m.value("apitoken_probe_interval_seconds", &[("token", "keep")]) == Some(3600.0)
    })
    .await;
}
