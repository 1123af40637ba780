//! `--web.config.file`: HTTPS with a certificate generated at test time, basic auth with a
//! bcrypt hash generated at test time, and start-up validation of the file.

use crate::harness::*;

const PASSWORD: &str = "correct horse battery staple";

struct Tls {
    dir: tempfile::TempDir,
    cert_pem: String,
}

fn make_cert() -> Tls {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_pem = ck.cert.pem();
    write(dir.path(), "server.crt", &cert_pem);
    write(dir.path(), "server.key", &ck.key_pair.serialize_pem());
    Tls { dir, cert_pem }
}

fn web_config(tls: &Tls, extra_tls: &str, users: bool) -> std::path::PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let mut yaml =
        format!("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra_tls}");
    if users {
        yaml.push_str(&format!("basic_auth_users:\n  prometheus: \"{hash}\"\n"));
    }
    write(tls.dir.path(), "web.yml", &yaml)
}

fn client(tls: &Tls, builder: reqwest::ClientBuilder) -> reqwest::Client {
    builder
        .add_root_certificate(reqwest::Certificate::from_pem(tls.cert_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

fn https(e: &Exporter) -> String {
    e.base.replace("http://", "https://")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_with_basic_auth_protects_everything_but_healthy() {
    let tls = make_cert();
    let web = web_config(&tls, "", true);
    let e = Exporter::start_with_args(
        &ConfigBuilder::new().yaml(),
        &[],
        &[&format!("--web.config.file={}", web.display())],
    );
    let c = client(&tls, reqwest::Client::builder());
    let base = https(&e);

    for path in ["/metrics", "/", "/-/ready"] {
        let r = c.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without auth");
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"apitoken-exporter\""
        );
        let r = c
            .get(format!("{base}{path}"))
            .basic_auth("prometheus", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong password");
        let r = c
            .get(format!("{base}{path}"))
            .basic_auth("prometheus", Some(PASSWORD))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path} with the right password");
    }
    let r = c.post(format!("{base}/-/reload")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "reload must need auth");
    let r = c
        .get(format!("{base}/metrics"))
        .basic_auth("nobody", Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "unknown user");
    // /-/healthy stays open for load balancers and container health checks.
    let r = c.get(format!("{base}/-/healthy")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/-/healthy", e.base))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.unwrap().status().as_u16() != 200,
        "plain HTTP was served"
    );
    assert!(!e.output().contains(PASSWORD));
}

#[tokio::test(flavor = "multi_thread")]
async fn min_version_tls13_refuses_tls12_clients() {
    let tls = make_cert();
    let web = web_config(&tls, "  min_version: TLS13\n", false);
    let e = Exporter::start_with_args(
        &ConfigBuilder::new().yaml(),
        &[],
        &[&format!("--web.config.file={}", web.display())],
    );
    let base = https(&e);
    let old = client(
        &tls,
        reqwest::Client::builder().max_tls_version(reqwest::tls::Version::TLS_1_2),
    );
    assert!(old.get(format!("{base}/metrics")).send().await.is_err());
    let new = client(&tls, reqwest::Client::builder());
    let r = new.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_client_does_not_block_other_connections() {
    let tls = make_cert();
    let web = web_config(&tls, "", false);
    let e = Exporter::start_with_args(
        &ConfigBuilder::new().yaml(),
        &[],
        &[&format!("--web.config.file={}", web.display())],
    );
    // Open TCP connections that never start a handshake.
    let addr = e.addr().to_string();
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    let c = client(
        &tls,
        reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)),
    );
    let r = c
        .get(format!("{}/-/healthy", https(&e)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(idle);
}

#[test]
fn invalid_web_config_stops_start_up_with_a_clear_error() {
    let tls = make_cert();
    let cases = [
        (
            "basic_auth_users:\n  prometheus: plaintext-password\n",
            "basic_auth_users.prometheus: not a bcrypt hash",
        ),
        (
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
            "tls_server_config.cert_file: cannot load",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
            "tls_server_config.min_version: TLS10 is not supported",
        ),
        ("tls_config: {}\n", "unknown field `tls_config`"),
    ];
    let config = write(tls.dir.path(), "config.yaml", "tokens: []\n");
    for (yaml, expected) in cases {
        let web = write(tls.dir.path(), "bad-web.yml", yaml);
        let (code, out, err) = run_cli(
            &[
                &format!("--config.file={}", config.display()),
                &format!("--web.config.file={}", web.display()),
                "--web.listen-address=127.0.0.1:0",
            ],
            &[],
        );
        assert_eq!(code, 1, "{yaml}\n{out}{err}");
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        assert!(
            err.contains("bad-web.yml"),
            "error must name the file:\n{err}"
        );
        assert!(!err.contains("plaintext-password"), "{err}");
    }
}
