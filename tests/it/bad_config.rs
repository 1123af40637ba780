//! Broken configurations, one row per rule of the config schema (README.md,
//! "Configuration") plus hostile inputs (YAML bomb, deep nesting, oversize, non-UTF-8, a
//! directory). Each must be refused at start-up (exit 1, quickly, within 1 GiB of address
//! space, the message naming file and field/line) and at reload (`POST /-/reload` → 500,
//! the running config kept, reload gauge 0).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use apitoken_sim::Behaviour;

use crate::harness::*;

const EMAIL: &str = "svc@acme.example";
/// A start-up that takes longer than this is treated as a hang.
const STARTUP_BOUND: Duration = Duration::from_secs(10);
/// Address-space limit for start-up: a bomb must not eat gigabytes (the idle exporter
/// maps ~160 MiB, most of it thread stacks).
const ADDRESS_SPACE_KIB: u64 = 1024 * 1024;

enum Input {
    Yaml(String),
    Bytes(Vec<u8>),
    /// The config path is a directory.
    Directory,
    /// The config path is a symlink to this (a device that never ends).
    Symlink(&'static str),
}

struct Row {
    rule: &'static str,
    input: Input,
    /// Every one of these must appear in the error text.
    expect: Vec<&'static str>,
}

fn row(rule: &'static str, yaml: impl Into<String>, expect: &[&'static str]) -> Row {
    Row {
        rule,
        input: Input::Yaml(yaml.into()),
        expect: expect.to_vec(),
    }
}

/// `tokens:` with one jira token `a` (https, email, token_env) plus `extra` lines.
fn token(extra: &str) -> String {
    format!("tokens:\n  - name: a\n    provider: jira\n    site: https://acme.atlassian.net\n    email: {EMAIL}\n    token_env: X\n{extra}")
}

/// Billion laughs: nine levels of nine aliases (9^9 "lol"s if anything expanded it).
fn yaml_bomb(under: &str) -> String {
    let mut lines = vec![format!("{under}a0: &a0 [{}]", ["\"lol\""; 9].join(","))];
    for i in 1..9 {
        let refs = vec![format!("*a{}", i - 1); 9].join(",");
        lines.push(format!("{under}a{i}: &a{i} [{refs}]"));
    }
    lines.push(format!("{under}a9: [*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8,*a8]"));
    lines.join("\n") + "\n"
}

fn rows() -> Vec<Row> {
    vec![
        row(
            "unknown key",
            "tokens:\n  - name: a\n    provider: jira\n    tokn_env: X\n",
            &["tokens[0]: unknown field `tokn_env`", "line 4"],
        ),
        row(
            "bad duration",
            "global:\n  probe_interval: 5 minutes please\n",
            &["global.probe_interval: invalid duration", "line 2"],
        ),
        row(
            "bad date",
            token("    expires_at: 31/12/2026\n"),
            &["tokens[0].expires_at: invalid timestamp \"31/12/2026\""],
        ),
        row(
            "duplicate names",
            format!(
                "{}  - {{name: a, provider: bitbucket, email: u, token_env: Y}}\n",
                token("")
            ),
            &["tokens[1] (a).name: duplicate token name \"a\" (first used by tokens[0])"],
        ),
        row(
            "invalid name characters",
            "tokens:\n  - {name: \"a b/c\", provider: jira}\n",
            &["tokens[0].name: invalid name \"a b/c\"", "line 2"],
        ),
        row(
            "unknown provider",
            "tokens:\n  - {name: a, provider: gitea}\n",
            &["tokens[0].provider: unknown variant `gitea`"],
        ),
        row(
            "http:// without allow_insecure_http",
            token("").replace("https://", "http://"),
            &["tokens[0] (a).site: http:// would send credentials in clear text"],
        ),
        row(
            "organization base_url http://",
            "organizations:\n  - {name: acme, org_id: o1, api_key_env: K, base_url: \"http://admin.example\"}\n",
            &["organizations[0] (acme).base_url: http:// would send credentials"],
        ),
        row(
            "both token_env and token_file",
            token("    token_file: /run/secrets/a\n"),
            &["tokens[0] (a): set exactly one of token_env / token_file, not both"],
        ),
        row(
            "neither token_env nor token_file",
            "tokens:\n  - {name: a, provider: jira, site: \"https://x\", email: e}\n",
            &["tokens[0] (a): one of token_env / token_file is required"],
        ),
        row(
            "email missing",
            "tokens:\n  - {name: a, provider: confluence, site: \"https://x\", token_env: X}\n",
            &["tokens[0] (a).email: required for provider confluence"],
        ),
        row(
            "email forbidden",
            "tokens:\n  - {name: a, provider: atlassian_admin, email: e, token_env: X}\n",
            &["tokens[0] (a).email: not used by provider atlassian_admin"],
        ),
        row(
            "bad label name",
            token("    labels: {\"bad-label\": v}\n"),
            &["tokens[0].labels", "invalid label name \"bad-label\""],
        ),
        row(
            "reserved label",
            token("    labels: {provider: x}\n"),
            &["tokens[0] (a).labels.provider: reserved label name"],
        ),
        row(
            "expires_at before created_at",
            token("    expires_at: 2025-12-31\n    created_at: 2026-01-01\n"),
            &["tokens[0] (a).expires_at: is before created_at"],
        ),
        row(
            "lifetime without created_at",
            token("    lifetime: 90d\n"),
            &["tokens[0] (a).lifetime: set created_at to use lifetime"],
        ),
        row(
            "YAML syntax error",
            "global:\n  probe_interval: 5m\ntokens: [\n",
            &["tokens: did not find expected node content at line 4"],
        ),
        row(
            "YAML bomb (top level)",
            yaml_bomb(""),
            &["a0: unknown field `a0`"],
        ),
        row(
            "YAML bomb (inside tokens)",
            format!("tokens:\n{}", yaml_bomb("  - ")),
            &["tokens[0]", "line 2"],
        ),
        row(
            "deeply nested input",
            format!("tokens: {}\n", "[".repeat(10_000)),
            &["nested deeper than 64 levels at line 1 column 73"],
        ),
        Row {
            rule: "file over 16 MiB",
            input: Input::Bytes({
                let mut big = b"tokens: []\n".to_vec();
                big.resize(20 * 1024 * 1024, b'#');
                big
            }),
            expect: vec!["file is 20971520 bytes; the limit is 16777216"],
        },
        Row {
            rule: "non-UTF-8 bytes",
            input: Input::Bytes(b"tokens:\n  - name: caf\xe9\n".to_vec()),
            expect: vec!["not valid UTF-8 (first bad byte at offset 21)"],
        },
        Row {
            rule: "directory instead of file",
            input: Input::Directory,
            expect: vec!["cannot read", "directory"],
        },
        Row {
            rule: "endless device (/dev/zero)",
            input: Input::Symlink("/dev/zero"),
            expect: vec!["more than 16777216 bytes; the limit is 16777216"],
        },
    ]
}

/// Puts `input` at `path` (replacing a file or directory there).
fn place(path: &Path, input: &Input) {
    if path.is_symlink() || path.is_file() {
        std::fs::remove_file(path).unwrap();
    } else if path.is_dir() {
        std::fs::remove_dir(path).unwrap();
    }
    match input {
        Input::Yaml(y) => std::fs::write(path, y).unwrap(),
        Input::Bytes(b) => std::fs::write(path, b).unwrap(),
        Input::Directory => std::fs::create_dir(path).unwrap(),
        Input::Symlink(target) => std::os::unix::fs::symlink(target, path).unwrap(),
    }
}

/// Runs the exporter on `config` under an address-space limit; (exit code, stderr, time).
fn start_up(config: &Path) -> (i32, String, Duration) {
    let started = Instant::now();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v {ADDRESS_SPACE_KIB}; exec \"$0\" \"$@\""))
        .arg(BIN)
        .arg(format!("--config.file={}", config.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

fn assert_names(rule: &str, what: &str, text: &str, file_name: &str, expect: &[&str]) {
    assert!(
        text.contains(file_name),
        "{rule}: {what} does not name the file {file_name}:\n{text}"
    );
    for needle in expect {
        assert!(
            text.contains(needle),
            "{rule}: {what} lacks {needle:?}:\n{text}"
        );
    }
}

#[test]
fn every_broken_config_is_refused_at_start_up_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    for r in rows() {
        let path = dir.path().join("broken.yaml");
        place(&path, &r.input);
        let (code, err, took) = start_up(&path);
        assert_eq!(code, 1, "{}: exit code {code}:\n{err}", r.rule);
        assert!(took < STARTUP_BOUND, "{}: took {took:?}", r.rule);
        assert_names(r.rule, "start-up error", &err, "broken.yaml", &r.expect);
        report.push(format!("{:<40} {:>6} ms", r.rule, took.as_millis()));
    }
    println!("{}", report.join("\n"));
}

#[test]
fn config_check_refuses_the_same_configs_and_warns_about_unreadable_token_files() {
    let dir = tempfile::tempdir().unwrap();
    for r in rows() {
        let path = dir.path().join("check.yaml");
        place(&path, &r.input);
        let (code, out, err) = run_cli(
            &[
                "--config.check",
                &format!("--config.file={}", path.display()),
            ],
            &[],
        );
        assert_eq!(code, 1, "{}: {out}{err}", r.rule);
        assert_names(r.rule, "--config.check", &err, "check.yaml", &r.expect);
    }
    // A token file that cannot be read is a --config.check warning, exit 0 (the running
    // exporter tolerates it per token; CI lints configs without the secrets): a
    // directory, and a missing file.
    let yaml = format!(
        "tokens:\n  - {{name: d, provider: jira, site: \"https://x\", email: e, token_file: \"{}\"}}\n  - {{name: m, provider: jira, site: \"https://x\", email: e, token_file: /nonexistent/tok}}\n",
        dir.path().display()
    );
    let path = write(dir.path(), "files.yaml", &yaml);
    let (code, _, err) = run_cli(
        &[
            "--config.check",
            &format!("--config.file={}", path.display()),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    for needle in [
        "warning: tokens[0] (d): cannot read token file",
        "is a directory",
        "warning: tokens[1] (m): cannot read token file /nonexistent/tok: no such file",
    ] {
        assert!(err.contains(needle), "lacks {needle:?}:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broken_config_is_refused_at_reload_keeping_the_running_one() {
    let secret = "ATATT3xBADCONFIGreload";
    let sim = simulator(&[(secret, cred("acc", EMAIL, Behaviour::Valid))]).await;
    let good = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .token(jira("kept", &sim.base_url(), "S"))
        .yaml();
    let e = Exporter::start(&good, &[("S", secret)]);
    e.wait_for(Duration::from_secs(10), "kept valid", |m| {
        m.value("apitoken_valid", &[("token", "kept")]) == Some(1.0)
    })
    .await;
    for r in rows() {
        place(&e.config_path, &r.input);
        let started = Instant::now();
        let (status, body) = e.reload().await;
        assert_eq!(status, 500, "{}: {body}", r.rule);
        assert!(started.elapsed() < STARTUP_BOUND, "{}: slow reload", r.rule);
        assert_names(r.rule, "reload error", &body, "config.yaml", &r.expect);
        let m = e.scrape().await;
        assert_eq!(
            m.value("apitoken_exporter_config_last_reload_successful", &[]),
            Some(0.0),
            "{}",
            r.rule
        );
        assert_eq!(
            m.value("apitoken_exporter_tokens", &[]),
            Some(1.0),
            "{}",
            r.rule
        );
        assert_eq!(
            m.value("apitoken_valid", &[("token", "kept")]),
            Some(1.0),
            "{}",
            r.rule
        );

        // Back to the good config, so the next row starts from a successful reload.
        place(&e.config_path, &Input::Yaml(good.clone()));
        assert_eq!(e.reload().await.0, 200, "{}: restoring", r.rule);
    }
    let m = e.scrape().await;
    assert_eq!(
        m.value("apitoken_exporter_config_last_reload_successful", &[]),
        Some(1.0)
    );
    assert!(m.probes("kept", "valid") >= 1.0);
    assert_eq!(e.get("/-/healthy").await.0, 200);
}
