//! The token strings never appear in /metrics, the status page, error responses,
//! stdout/stderr of any command, or error text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use apitoken_exporter::simulator::Behaviour;
use common::*;

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
    let config = format!(
        "{}  - name: filetok\n    provider: jira\n    site: \"{base}\"\n    email: {EMAIL}\n    token_file: {}\n  - name: admin\n    provider: atlassian_admin\n    site: \"{base}\"\n    token_env: S5\n",
        config_yaml(
            "  probe_interval: 1s\n  probe_timeout: 500ms\n",
            &[
                token_yaml("valid", "jira", &base, EMAIL, "S0"),
                token_yaml("dead", "confluence", &base, EMAIL, "S1"),
                token_yaml("slow", "bitbucket", &base, EMAIL, "S2"),
                token_yaml("mistyped", "jira", &format!("{base}/closed"), EMAIL, "S4"),
                token_yaml("tls", "jira", &base.replace("http:", "https:"), EMAIL, "S0"),
            ],
        ),
        file.display()
    );
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
            .all(|t| m.has("apitoken_last_probe_timestamp_seconds", t))
        })
        .await;
    assert_clean("/metrics", &m.0);
    assert_clean("status page", &e.get("/").await.1);

    // A failed reload's error text (the broken config sits next to env names).
    e.write_config(&format!("{config}  - bogus: {}\n", "x"));
    let r = reqwest::Client::new()
        .post(format!("{}/-/reload", e.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_clean("reload error", &r.text().await.unwrap());

    // check and --config.check print results and errors for the same tokens.
    let path = write(dir.path(), "c.yaml", &config);
    let arg = format!("--config.file={}", path.display());
    for args in [
        vec!["check", arg.as_str()],
        vec!["check", arg.as_str(), "--output=json"],
        vec!["--config.check", arg.as_str()],
    ] {
        let a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (code, out, err) = tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = a.iter().map(String::as_str).collect();
            run_cli(&refs, &env)
        })
        .await
        .unwrap();
        assert!(code <= 1, "{out}{err}");
        assert_clean(&format!("{args:?} output"), &format!("{out}{err}"));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_clean("exporter stdout/stderr", &e.output());
    assert!(e.output().contains("level=debug") || e.output().contains("level=info"));
}

#[test]
fn secret_debug_output_is_redacted() {
    use apitoken_exporter::config::Config;
    use apitoken_exporter::secret::{Secret, SecretReader, SecretSource};
    let s = Secret::new(SECRETS[0]);
    let reader = SecretReader::new(SecretSource::Static(s.clone()));
    assert_clean("Debug of Secret", &format!("{s:?} {s} {reader:?}"));
    let c = Config::parse(
        "tokens:\n  - {name: a, provider: jira, site: \"https://x\", email: e, token_env: X}\n",
    )
    .unwrap();
    assert!(!format!("{c:?}").is_empty());
}
