//! Blocking work kept off the probe runtime (issue #15 item 4): a token file that never
//! answers (a FIFO without a writer, as a hung NFS mount would be) must not stall the
//! probes of the other tokens, and reports an error naming the file, never a secret.

use std::time::{Duration, Instant};

use apitoken_sim::Behaviour;

use crate::harness::*;

/// Threads of a process (`/proc/PID/status`).
fn threads(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Probes of `token` so far (every result).
fn probes(m: &Metrics, token: &str) -> f64 {
    m.samples("apitoken_probes_total", &[("token", token)])
        .map(|s| s.value)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_token_file_does_not_stall_the_other_tokens() {
    const FIFO_SECRET: &str = "ATATT3xFIFOSECRETVALUE";
    let sim = simulator(&[]).await;
    let fleet = Fleet::new(&sim, 10, "BLOCKING", Behaviour::Valid);
    sim.sim
        .add_credential(FIFO_SECRET, cred("acc", EMAIL, Behaviour::Valid));
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("hung-token");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo failed");
    let config = ConfigBuilder::new()
        .global("probe_interval", "2s")
        .global("probe_timeout", "1s")
        .tokens(fleet.tokens.clone())
        .token(
            TokenSpec::jira("fifo")
                .site(&sim.base_url())
                .email(EMAIL)
                .token_file(&fifo),
        )
        .yaml();
    let e = Exporter::start(&config, &fleet.env());

    // Every token's first probe falls within the first 2 s (the interval) and the FIFO
    // token's hangs in open(2) until a writer appears. Meanwhile every other token keeps
    // its 2 s cadence: over 8 s each gets at least 3 probes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = e.scrape().await;
    let before: Vec<f64> = (0..10).map(|i| probes(&m, &format!("t{i}"))).collect();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let m = e.scrape().await;
    for (i, b) in before.iter().enumerate() {
        let got = probes(&m, &format!("t{i}")) - b;
        assert!(
            got >= 3.0,
            "t{i} was probed {got} times in {:?} beside a hung token file (expected ≥ 3)",
            window.elapsed()
        );
    }
    // Each of the FIFO token's probes gives up after the probe timeout, and says why.
    let threads_before = threads(e.pid());
    let m = e
        .wait_for(
            Duration::from_secs(10),
            "more errors of the fifo token",
            |later| {
                later.errors("fifo", "credential_unavailable")
                    >= m.errors("fifo", "credential_unavailable") + 2.0
            },
        )
        .await;
    // The hung token is an error (never rejected or invalid), counted on every probe.
    assert!(m.errors("fifo", "credential_unavailable") >= 5.0);
    assert_eq!(m.probes("fifo", "rejected"), 0.0);
    m.assert_absent("apitoken_valid", &[("token", "fifo")]);
    // One read is outstanding, not one per probe: no new thread for each failed probe.
    let threads_after = threads(e.pid());
    assert!(
        threads_after <= threads_before + 2,
        "threads grew from {threads_before} to {threads_after}: a read per probe"
    );
    let (_, page) = e.get("/").await;
    let path = fifo.display().to_string();
    assert!(
        page.contains(&format!("token file {path} has not answered")),
        "the status page does not name the hung file:\n{page}"
    );
    assert!(
        e.output()
            .contains(&format!("token file {path} has not answered")),
        "no log line names the hung file:\n{}",
        e.output()
    );

    // A writer appears: the outstanding read returns the secret, and a probe uses it.
    let writer_path = fifo.clone();
    let writer = std::thread::spawn(move || {
        std::fs::write(&writer_path, format!("{FIFO_SECRET}\n")).unwrap();
    });
    e.wait_for(Duration::from_secs(10), "the fifo token valid", |m| {
        m.value("apitoken_valid", &[("token", "fifo")]) == Some(1.0)
    })
    .await;
    writer.join().unwrap();

    let (_, page) = e.get("/").await;
    let metrics = e.scrape().await;
    for shown in [e.output(), page, metrics.text().to_string()] {
        assert!(!shown.contains(FIFO_SECRET), "the secret was shown");
    }
}
