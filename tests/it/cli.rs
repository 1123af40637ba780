//! Command-line behaviour: start-up config errors, `--config.check`, `check`, reload,
//! SIGHUP and graceful shutdown with a probe in flight.

use std::time::{Duration, Instant};

use apitoken_sim::Behaviour;

use crate::harness::faults::{Fault, FaultServer, FAULT_EMAIL};
use crate::harness::*;

#[test]
fn broken_config_at_start_up_exits_1_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "global:\n  probe_interval: soon\n",
            "global.probe_interval: invalid duration \"soon\"",
        ),
        (
            "tokens:\n  - name: a\n    provider: jira\n    sight: https://x\n",
            "tokens[0]: unknown field `sight`",
        ),
        (
            "tokens:\n  - {name: a, provider: jira, site: \"http://x\", email: e, token_env: X}\n",
            "tokens[0] (a).site: http:// would send credentials in clear text",
        ),
        (
            "tokens: [\n",
            "did not find expected node content at line 2",
        ),
    ];
    for (yaml, expected) in cases {
        let path = write(dir.path(), "bad.yaml", yaml);
        let (code, _out, err) = run_cli(
            &[
                &format!("--config.file={}", path.display()),
                "--web.listen-address=127.0.0.1:0",
            ],
            &[],
        );
        assert_eq!(code, 1, "{yaml}: {err}");
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        assert!(err.contains("bad.yaml"), "error must name the file:\n{err}");
    }
}

#[test]
fn config_check_reports_ok_or_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.yaml",
        "tokens:\n  - {name: a, provider: jira, site: \"https://acme.atlassian.net\", email: e@x, token_env: CHECK_A}\n",
    );
    let arg = format!("--config.file={}", good.display());
    let (code, out, err) = run_cli(&["--config.check", &arg], &[("CHECK_A", "ATATT3xVALUE")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK"), "{out}");
    // A missing secret source is a warning, not a failure: the exporter tolerates it at
    // run time too, and configs are linted in CI where the secrets are absent.
    let (code, out, err) = run_cli(&["--config.check", &arg], &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("warning: tokens[0] (a): environment variable CHECK_A is not set"),
        "{err}"
    );
    assert!(out.starts_with("OK") && out.contains("1 warning"), "{out}");
    let bad = write(
        dir.path(),
        "bad.yaml",
        "tokens:\n  - {name: a, provider: jira, email: e, token_env: X}\n  - {name: a, provider: bitbucket, token_file: /nonexistent}\n",
    );
    let (code, _out, err) = run_cli(
        &[
            "--config.check",
            &format!("--config.file={}", bad.display()),
        ],
        &[],
    );
    assert_eq!(code, 1);
    for needle in [
        "3 problems",
        "tokens[0] (a).site: required for provider jira",
        "tokens[1] (a).name: duplicate token name",
        "tokens[1] (a).email: required for provider bitbucket",
    ] {
        assert!(err.contains(needle), "missing {needle:?}:\n{err}");
    }
}

#[test]
fn shipped_config_yaml_passes_config_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/config.yaml")).unwrap();
    // Provide every env var the example names, so the check covers the schema.
    let vars: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l
                .strip_prefix("token_env:")
                .or_else(|| l.strip_prefix("api_key_env:"))?;
            Some((rest.trim().to_string(), "dummy".to_string()))
        })
        .collect();
    assert!(!vars.is_empty());
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (code, out, err) = run_cli(
        &[
            "--config.check",
            &format!("--config.file={root}/config.yaml"),
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("warning:"), "{err}");
    // Without any of its variables (a CI lint job): warnings, still exit 0.
    let (code, out, err) = run_cli(
        &[
            "--config.check",
            &format!("--config.file={root}/config.yaml"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(err.matches("warning: ").count(), vars.len(), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn check_probes_once_and_sets_the_exit_code() {
    let sim = simulator(&[
        (
            "ATATT3xCHECKgood",
            cred("acc-good", EMAIL, Behaviour::Valid),
        ),
        ("ATATT3xCHECKdead", cred("acc-dead", EMAIL, Behaviour::Dead)),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let good = jira("good", &sim.base_url(), "G");
    let all_valid = write(
        dir.path(),
        "valid.yaml",
        &ConfigBuilder::new().token(good.clone()).yaml(),
    );
    let mixed = write(
        dir.path(),
        "mixed.yaml",
        &ConfigBuilder::new()
            .token(good)
            .token(jira("dead", &sim.base_url(), "D"))
            .yaml(),
    );
    let env = [("G", "ATATT3xCHECKgood"), ("D", "ATATT3xCHECKdead")];
    let file = |p: &std::path::Path| format!("--config.file={}", p.display());
    let (code, out, _) = run_cli_off_runtime(&["check", &file(&all_valid)], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("TOKEN") && out.contains("good") && out.contains("valid"),
        "{out}"
    );

    let (code, out, _) =
        run_cli_off_runtime(&["check", &file(&mixed), "--output=json"], &env).await;
    assert_eq!(code, 1, "{out}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["token"], "good");
    assert_eq!(rows[0]["outcome"], "valid");
    assert_eq!(rows[1]["token"], "dead");
    assert_eq!(rows[1]["outcome"], "anonymous");

    let broken = write(dir.path(), "broken.yaml", "global: {nope: 1}\n");
    let (code, _, err) = run_cli_off_runtime(&["check", &file(&broken)], &env).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown field `nope`"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_good_configs_and_refuses_broken_ones() {
    let sim = simulator(&[("ATATT3xRELOAD", cred("acc", EMAIL, Behaviour::Valid))]).await;
    let base = sim.base_url();
    let keep = jira("keep", &base, "S");
    let added = TokenSpec::confluence("added")
        .site(&base)
        .email(EMAIL)
        .token_env("S");
    let config = ConfigBuilder::new().global("probe_interval", "1s");
    let e = Exporter::start(
        &config.clone().token(keep.clone()).yaml(),
        &[("S", "ATATT3xRELOAD")],
    );
    e.wait_for(Duration::from_secs(10), "keep valid", |m| {
        m.value("apitoken_valid", &[("token", "keep")]) == Some(1.0)
    })
    .await;

    // GET is not allowed.
    assert_eq!(e.get("/-/reload").await.0, 405);

    // Broken config: 500 with the error text, old config keeps running.
    e.write_config("tokens:\n  - name: keep\n    provider: jira\n    bogus: 1\n");
    let (status, body) = e.reload().await;
    assert_eq!(status, 500);
    assert!(body.contains("unknown field `bogus`"), "{body}");
    let m = e.scrape().await;
    assert_eq!(m.value("apitoken_valid", &[("token", "keep")]), Some(1.0));
    assert_eq!(
        m.value("apitoken_exporter_config_last_reload_successful", &[]),
        Some(0.0)
    );
    assert!(e.output().contains("configuration reload failed"));

    // Good config: a new token appears promptly, the kept one keeps its counters.
    let before = m.probes("keep", "valid");
    e.write_config(&config.clone().token(keep).token(added.clone()).yaml());
    assert_eq!(e.reload().await.0, 200);
    let m = e
        .wait_for(Duration::from_secs(10), "added valid", |m| {
            m.value("apitoken_valid", &[("token", "added")]) == Some(1.0)
        })
        .await;
    assert!(
        m.probes("keep", "valid") >= before,
        "kept token lost its state"
    );
    assert_eq!(
        m.value("apitoken_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(m.value("apitoken_exporter_tokens", &[]), Some(2.0));

    // SIGHUP reload removing a token: its series disappear.
    e.write_config(&config.token(added).yaml());
    e.signal("HUP");
    let m = e
        .wait_for(Duration::from_secs(10), "keep removed", |m| {
            !m.mentions("token", "keep")
        })
        .await;
    assert_eq!(m.value("apitoken_exporter_tokens", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_cancels_an_in_flight_probe_and_exits_0_within_5_s() {
    // An upstream that reads the probe's request and never answers; the probe would wait
    // for its 60 s timeout.
    let upstream = FaultServer::start(0, Fault::Silence).await;
    let e = Exporter::start(
        &ConfigBuilder::new()
            .global("probe_interval", "1s")
            .global("probe_timeout", "60s")
            .token(
                TokenSpec::jira("t")
                    .site(&upstream.http_url())
                    .email(FAULT_EMAIL)
                    .token_env("S"),
            )
            .yaml(),
        &[("S", "ATATT3xTERM")],
    );
    // Provably in flight: its request has arrived, its connection is open, it has no
    // result.
    eventually(
        Duration::from_secs(10),
        "the probe's request upstream",
        || upstream.request_count() == 1,
    )
    .await;
    assert!(upstream.closed_at().is_empty());
    e.scrape()
        .await
        .assert_absent("apitoken_last_probe_timestamp_seconds", &[("token", "t")]);

    let asked = Instant::now();
    let (status, output) = e.terminate(Duration::from_secs(5)).await;
    let status = status.expect("the exporter did not exit within 5 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}\n{output}");
    assert!(output.contains("shutting down"), "{output}");
    // Cancelled, not finished: the upstream saw the connection go, and no probe result
    // was logged.
    eventually(
        Duration::from_secs(2),
        "the probe's connection closed",
        || !upstream.closed_at().is_empty(),
    )
    .await;
    let closed = upstream.closed_at()[0].duration_since(asked);
    assert!(
        closed < Duration::from_secs(5),
        "closed {closed:?} after SIGTERM"
    );
    assert_eq!(upstream.request_count(), 1);
    assert!(
        !output.contains("probe failing"),
        "the in-flight probe finished instead of being cancelled:\n{output}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_reload_picks_up_a_changed_file_and_tries_a_broken_one_once() {
    let sim = simulator(&[("ATATT3xAUTO", cred("acc", EMAIL, Behaviour::Valid))]).await;
    let base = sim.base_url();
    let config = ConfigBuilder::new().global("probe_interval", "1s");
    let e = Exporter::start_with_args(
        &config.yaml(),
        &[("S", "ATATT3xAUTO")],
        &["--config.auto-reload-interval=1s"],
    );
    e.write_config(&config.token(jira("late", &base, "S")).yaml());
    e.wait_for(Duration::from_secs(15), "late token valid", |m| {
        m.value("apitoken_valid", &[("token", "late")]) == Some(1.0)
    })
    .await;
    e.write_config("global: {probe_interval: never}\n");
    e.wait_for(Duration::from_secs(10), "reload failure", |m| {
        m.value("apitoken_exporter_config_last_reload_successful", &[]) == Some(0.0)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = e.output();
    assert_eq!(
        out.matches("configuration reload failed").count(),
        1,
        "a broken file must be tried once, not every tick:\n{out}"
    );
    // The running config stays.
    assert_eq!(
        e.scrape()
            .await
            .value("apitoken_valid", &[("token", "late")]),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_log_format_writes_one_json_object_per_line() {
    let sim = simulator(&[("ATATT3xJSONLOG", cred("acc", EMAIL, Behaviour::Dead))]).await;
    let e = Exporter::start_with_args(
        &ConfigBuilder::new()
            .global("probe_interval", "1s")
            .token(jira("t", &format!("{}/closed", sim.base_url()), "S"))
            .yaml(),
        &[("S", "ATATT3xJSONLOG")],
        &["--log.format=json"],
    );
    e.wait_for(Duration::from_secs(10), "rejected", |m| {
        m.value("apitoken_valid", &[("token", "t")]) == Some(0.0)
    })
    .await;
    let out = e
        .wait_for_output(Duration::from_secs(10), "\"token is not valid\"")
        .await;
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("not JSON: {l}: {err}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["message"] == "token is not valid"
            && v["token"] == "t"
            && v["level"] == "WARN"),
        "{out}"
    );
    assert!(!out.contains("ATATT3xJSONLOG"));
}
