//! The token strings never appear in /metrics, the status page, error responses,
//! stdout/stderr of any command, or error text.

use std::time::Duration;

use apitoken_sim::Behaviour;

use crate::harness::*;

const EMAIL: &str = "svc@acme.example";
/// Distinctive values, so a leak anywhere is found by plain substring search.
const SECRETS: [&str; 6] = [
    "ATATT3xLEAKCANARYvalid0001",
    "ATATT3xLEAKCANARYdead0002",
    "ATATT3xLEAKCANARYslow0003",
    "ATATT3xLEAKCANARYfile0004",
    "ATATT3xLEAKCANARYmistyped5",
    "ATCTT3xLEAKCANARYadmin0006",
];

fn assert_clean(what: &str, text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "secret {s} leaked into {what}:\n{text}");
        // also no base64 of the basic-auth pair
        let b64 = base64_of(&format!("{EMAIL}:{s}"));
        assert!(
            !text.contains(&b64),
            "encoded credential leaked into {what}"
        );
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_never_leak_through_any_channel() {
    let sim = simulator(&[
        (SECRETS[0], cred("acc", EMAIL, Behaviour::Valid)),
        (SECRETS[1], cred("acc", EMAIL, Behaviour::Dead)),
        (
            SECRETS[2],
            cred(
                "acc",
                EMAIL,
                Behaviour::Slow {
                    delay: Duration::from_secs(5),
                },
            ),
        ),
        (SECRETS[3], cred("acc", EMAIL, Behaviour::NonJson)),
        (
            SECRETS[5],
            cred("acc", EMAIL, Behaviour::ServerError { status: 500 }),
        ),
    ])
    .await;
    let base = sim.base_url();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tok", &format!("{}\n", SECRETS[3]));
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .global("probe_timeout", "500ms")
        .token(jira("valid", &base, "S0"))
        .token(
            TokenSpec::confluence("dead")
                .site(&base)
                .email(EMAIL)
                .token_env("S1"),
        )
        .token(
            TokenSpec::bitbucket("slow")
                .site(&base)
                .email(EMAIL)
                .token_env("S2"),
        )
        .token(jira("mistyped", &format!("{base}/closed"), "S4"))
        .token(jira("tls", &base.replace("http:", "https:"), "S0"))
        .token(
            TokenSpec::jira("filetok")
                .site(&base)
                .email(EMAIL)
                .token_file(&file),
        )
        .token(TokenSpec::admin("admin").site(&base).token_env("S5"))
        .yaml();
    let env = [
        ("S0", SECRETS[0]),
        ("S1", SECRETS[1]),
        ("S2", SECRETS[2]),
        ("S4", SECRETS[4]),
        ("S5", SECRETS[5]),
    ];
    let e = Exporter::start(&config, &env);
    let m = e
        .wait_for(Duration::from_secs(15), "every token probed", |m| {
            [
                "valid", "dead", "slow", "mistyped", "tls", "filetok", "admin",
            ]
            .iter()
            .all(|t| m.has("apitoken_last_probe_timestamp_seconds", &[("token", t)]))
        })
        .await;
    assert_clean("/metrics", m.text());
    assert_clean("status page", &e.get("/").await.1);

    // A failed reload's error text (the broken config sits next to env names).
    e.write_config(&format!("{config}  - bogus: {}\n", "x"));
    let (status, body) = e.reload().await;
    assert_eq!(status, 500);
    assert_clean("reload error", &body);

    // check and --config.check print results and errors for the same tokens.
    let path = write(dir.path(), "c.yaml", &config);
    let arg = format!("--config.file={}", path.display());
    for args in [
        vec!["check", arg.as_str()],
        vec!["check", arg.as_str(), "--output=json"],
        vec!["--config.check", arg.as_str()],
    ] {
        let (code, out, err) = run_cli_off_runtime(&args, &env).await;
        assert!(code <= 1, "{out}{err}");
        assert_clean(&format!("{args:?} output"), &format!("{out}{err}"));
    }
    // All of the output, to the last line: the process has exited.
    let (_, output) = e.terminate(Duration::from_secs(10)).await;
    assert_clean("exporter stdout/stderr", &output);
    assert!(output.contains("level=debug") || output.contains("level=info"));
}

#[test]
fn secret_debug_output_is_redacted() {
    use apitoken_exporter::config::Config;
    use apitoken_exporter::secret::{Secret, SecretReader, SecretSource};
    let s = Secret::new(SECRETS[0]);
    let reader = SecretReader::new(SecretSource::Static(s.clone()));
    assert_clean("Debug of Secret", &format!("{s:?} {s} {reader:?}"));

    // A file source's reader caches what it read.
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tok", SECRETS[3]);
    let reader = SecretReader::new(SecretSource::File(file));
    assert_eq!(reader.read().unwrap().expose(), SECRETS[3]);
    let shown = format!("{reader:?}");
    assert_clean("Debug of a file SecretReader that has read", &shown);
    assert!(shown.contains("***"), "{shown}");

    // A whole config holding secrets (as the demo's does), implicit tokens included.
    let mut c = Config::parse(
        "tokens:\n  - {name: a, provider: jira, site: \"https://x\", email: e, token_env: X}\norganizations:\n  - {name: o, org_id: o1, api_key_env: K}\n",
    )
    .unwrap();
    c.tokens[0].secret = SecretSource::Static(Secret::new(SECRETS[0]));
    c.organizations[0].api_key = SecretSource::Static(Secret::new(SECRETS[5]));
    let shown = format!("{c:?} {:?}", c.implicit_admin_tokens());
    assert_clean("Debug of a Config", &shown);
    assert_eq!(
        shown.matches("Static(***)").count(),
        3,
        "the token's, the organization's and its implicit token's secret, redacted: {shown}"
    );
}

// ---- every other command and error path --------------------------------------------------

/// Canaries for the tests below: each names where it sits, so a hit says what leaked.
const CANARY_ENV: &str = "ATATT3xCANARYinEnvVar7f3a";
const CANARY_FILE: &str = "ATATT3xCANARYinTokenFile91c2";
const CANARY_WEB_PASSWORD: &str = "CANARYwebPasswordQ8x4";

fn assert_no_canary(what: &str, text: &str, canaries: &[&str]) {
    for c in canaries {
        assert!(!text.contains(c), "{c} leaked into {what}:\n{text}");
        let b64 = base64_of(&format!("{EMAIL}:{c}"));
        assert!(!text.contains(&b64), "encoded {c} leaked into {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_never_shows_its_secrets() {
    // The demo's credentials are random, but all start with this prefix.
    const DEMO_PREFIX: &str = "ATATT3xDEMO";
    let e = Exporter::start_with_args("", &[], &["demo"]);
    let m = e
        .wait_for(Duration::from_secs(20), "every demo token probed", |m| {
            let infos = m.count("apitoken_info", &[]);
            infos >= 8 && m.count("apitoken_last_probe_timestamp_seconds", &[]) == infos
        })
        .await;
    assert!(!m.text().contains(DEMO_PREFIX), "demo secret in /metrics");
    for path in ["/", "/-/ready", "/-/healthy", "/nope", "/-/reload"] {
        let (_, body) = e.get(path).await;
        assert!(
            !body.contains(DEMO_PREFIX),
            "demo secret in {path}:\n{body}"
        );
    }
    let (_, out) = e.terminate(Duration::from_secs(10)).await;
    assert!(out.contains("demo started"), "{out}");
    assert!(
        !out.contains(DEMO_PREFIX),
        "demo secret in stdout/stderr:\n{out}"
    );
}

/// Broken configs that still name env vars and files holding the canaries.
fn broken_configs(file: &std::path::Path) -> Vec<String> {
    let tok = |extra: &str| {
        format!(
            "tokens:\n  - name: envtok\n    provider: jira\n    site: https://acme.atlassian.net\n    email: {EMAIL}\n    token_env: CANARY_ENV\n{extra}  - name: filetok\n    provider: jira\n    site: https://acme.atlassian.net\n    email: {EMAIL}\n    token_file: {}\n",
            file.display()
        )
    };
    vec![
        tok("    bogus: 1\n"),
        tok("    probe_interval: soon\n"),
        tok("    expires_at: tomorrow\n"),
        tok("    labels: {token: x}\n"),
        tok("    token_file: /also/a/file\n"),
        format!("{}  - {{name: envtok, provider: jira, site: \"https://x\", email: e, token_env: CANARY_ENV}}\n", tok("")),
        tok("").replace("https://acme", "http://acme"),
        format!("{}tokens: [\n", tok("")),
        format!("global:\n  probe_interval: 5m\n{}", tok("")).replace("global:", "global: ["),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_configs_never_print_the_secrets_they_reference() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "tok", &format!("{CANARY_FILE}\n"));
    let env = [("CANARY_ENV", CANARY_ENV)];
    let canaries = [CANARY_ENV, CANARY_FILE];
    for (i, yaml) in broken_configs(&file).iter().enumerate() {
        let path = write(dir.path(), &format!("broken{i}.yaml"), yaml);
        let arg = format!("--config.file={}", path.display());
        for args in [
            vec!["--config.check", arg.as_str()],
            vec!["check", arg.as_str()],
            vec!["check", arg.as_str(), "--output=json"],
            vec![arg.as_str(), "--web.listen-address=127.0.0.1:0"],
        ] {
            let (code, out, err) = run_cli(&args, &env);
            assert!(
                code == 1 || code == 2,
                "{args:?} on broken{i}: {code}\n{err}"
            );
            assert!(!err.is_empty(), "{args:?}: no error text");
            assert_no_canary(
                &format!("{args:?} on broken{i}"),
                &format!("{out}{err}"),
                &canaries,
            );
        }
    }

    // The same configs as failed reloads of a running exporter.
    let site = "https://nonexistent.invalid";
    let good = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .token(jira("envtok", site, "CANARY_ENV"))
        .token(
            TokenSpec::jira("filetok")
                .site(site)
                .email(EMAIL)
                .token_file(&file),
        );
    let e = Exporter::start(&good.yaml(), &env);
    for (i, yaml) in broken_configs(&file).iter().enumerate() {
        e.write_config(yaml);
        let (status, body) = e.reload().await;
        assert_eq!(status, 500, "broken{i}");
        assert_no_canary(&format!("reload of broken{i}"), &body, &canaries);
    }
    e.wait_for(Duration::from_secs(15), "both probed", |m| {
        m.has(
            "apitoken_last_probe_timestamp_seconds",
            &[("token", "envtok")],
        ) && m.has(
            "apitoken_last_probe_timestamp_seconds",
            &[("token", "filetok")],
        )
    })
    .await;
    assert_no_canary("/metrics", e.scrape().await.text(), &canaries);
    assert_no_canary("status page", &e.get("/").await.1, &canaries);
    let (_, output) = e.terminate(Duration::from_secs(10)).await;
    assert_no_canary("exporter output", &output, &canaries);
}

#[test]
fn a_secret_pasted_where_a_source_belongs_is_not_echoed() {
    // A common slip: the token itself written into token_env / token_file / api_key_env.
    let dir = tempfile::tempdir().unwrap();
    let pasted = "ATATT3xCANARYpasted-in_config=ABCD1234";
    let plain = "ATATT3xCANARYpastedPlainAlnum";
    for (i, yaml) in [
        format!("tokens:\n  - {{name: a, provider: jira, site: \"https://x\", email: e, token_env: \"{pasted}\"}}\n"),
        format!("tokens:\n  - {{name: a, provider: jira, site: \"https://x\", email: e, token_env: {plain}}}\n"),
        format!("tokens:\n  - {{name: a, provider: jira, site: \"https://x\", email: e, token_file: \"{pasted}\"}}\n"),
        format!("organizations:\n  - {{name: o, org_id: x, api_key_env: \"{pasted}\"}}\n"),
        format!("tokens:\n  - {{name: a, provider: jira, site: \"https://x\", email: e, token: \"{pasted}\"}}\n"),
    ]
    .iter()
    .enumerate()
    {
        let path = write(dir.path(), &format!("pasted{i}.yaml"), yaml);
        let arg = format!("--config.file={}", path.display());
        for args in [
            vec!["--config.check", arg.as_str()],
            vec!["check", arg.as_str()],
            vec!["check", arg.as_str(), "--output=json"],
        ] {
            let (code, out, err) = run_cli(&args, &[]);
            assert_ne!(code, 0, "{args:?} on pasted{i}:\n{out}{err}");
            assert_no_canary(&format!("{args:?} on pasted{i}"), &format!("{out}{err}"), &[pasted, plain]);
        }
    }
}

#[test]
fn web_config_errors_never_print_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "c.yaml", "tokens: []\n");
    for (i, web) in [
        // A plaintext password where a bcrypt hash belongs.
        format!("basic_auth_users:\n  prometheus: {CANARY_WEB_PASSWORD}\n"),
        // Passwords in the wrong places of the schema.
        format!("basic_auth_users: {CANARY_WEB_PASSWORD}\n"),
        format!("basic_auth_users:\n  - {CANARY_WEB_PASSWORD}\n"),
        format!("basic_auth_users:\n  prometheus: [{CANARY_WEB_PASSWORD}]\n"),
        format!("basic_auth_users:\n  \"user:{CANARY_WEB_PASSWORD}\": \"$2y$04$abc\"\n"),
        format!("password: {CANARY_WEB_PASSWORD}\n"),
        format!("basic_auth_users:\n  prometheus: \"$2y$10${CANARY_WEB_PASSWORD}\"\n"),
        format!("tls_server_config: \"{CANARY_WEB_PASSWORD}\\\" more\"\n"),
    ]
    .iter()
    .enumerate()
    {
        let path = write(dir.path(), &format!("web{i}.yml"), web);
        let (code, out, err) = run_cli(
            &[
                &format!("--config.file={}", config.display()),
                &format!("--web.config.file={}", path.display()),
                "--web.listen-address=127.0.0.1:0",
            ],
            &[],
        );
        assert_eq!(code, 1, "web{i}: {out}{err}");
        assert!(err.contains(&format!("web{i}.yml")), "web{i}: {err}");
        assert_no_canary(
            &format!("web config web{i}"),
            &format!("{out}{err}"),
            &[CANARY_WEB_PASSWORD],
        );
    }
}

/// A canary no other allocation holds: built on the stack, unique to this run.
fn stack_canary() -> [u8; 32] {
    let mut canary = *b"ATATT3xWIPECANARY000000000000000";
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let unique = (nanos as u64) ^ u64::from(std::process::id());
    for (i, b) in canary[16..].iter_mut().enumerate() {
        *b = b"0123456789abcdef"[((unique >> (i * 4)) & 0xf) as usize];
    }
    canary
}

#[test]
fn dropping_a_secret_wipes_it_before_its_memory_is_freed() {
    use apitoken_exporter::secret::Secret;
    let canary = stack_canary();
    let text = std::str::from_utf8(&canary).unwrap();

    // The probe sees what a plain String leaves behind; otherwise the check below
    // would prove nothing.
    let plain = String::from(text);
    let freed = alloc_probe::watch(&canary, || drop(plain));
    assert_eq!(
        (freed.blocks, freed.holding_needle),
        (1, 1),
        "the allocator probe does not see freed memory"
    );

    // Secret::new copies the value into its own heap buffer; dropping it must overwrite
    // that buffer before it goes back to the allocator.
    let secret = Secret::new(text);
    assert_eq!(secret.expose(), text);
    let freed = alloc_probe::watch(&canary, || drop(secret));
    assert_eq!(freed.blocks, 1, "dropping a Secret freed no buffer");
    assert_eq!(
        freed.holding_needle, 0,
        "a dropped Secret's buffer went back to the allocator with the value still in it \
         (is Secret's Drop still wiping?)"
    );
}

#[test]
fn secret_is_zeroize_on_drop_and_zeroize_empties_it() {
    use apitoken_exporter::secret::Secret;
    use zeroize::{Zeroize, ZeroizeOnDrop};
    // `ZeroizeOnDrop` is the zeroize crate's marker for "Drop zeroes the memory"; `Secret`
    // implements it by calling its `Zeroize` (String::zeroize: every byte of the capacity
    // is overwritten with volatile writes, then the length set to 0) from `Drop`.
    fn zeroized_on_drop<T: ZeroizeOnDrop>() {}
    zeroized_on_drop::<Secret>();
    let mut s = Secret::new(CANARY_ENV);
    assert_eq!(s.expose(), CANARY_ENV);
    s.zeroize();
    assert_eq!(s.expose(), "", "zeroize must wipe the value");
    assert_eq!(format!("{s:?}"), "***");
}
