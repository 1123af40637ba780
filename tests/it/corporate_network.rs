//! Corporate networks, against the real binary over 127.0.0.1: a TLS-intercepting
//! stand-in whose certificate is signed by a private CA (trusted only with
//! `global.tls.ca_file`, or with the loudly logged `insecure_skip_verify`), and a local
//! CONNECT proxy used through `global.proxy_url` or `HTTPS_PROXY`, with `NO_PROXY`
//! honoured.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apitoken_sim::{Behaviour, Credential, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");
const SECRET: &str = "ATATT3xCORPNETWORK";

/// A private CA and a server certificate for 127.0.0.1 signed by it.
fn private_ca() -> (String, rustls::ServerConfig) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Corp intercepting CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let chain = vec![rustls::pki_types::CertificateDer::from(leaf.der().to_vec())];
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    (ca.pem(), config)
}

/// The simulator behind TLS with the private CA's certificate: `https://127.0.0.1:PORT`.
async fn intercepting_site() -> (String, String) {
    let sim = Simulator::new();
    sim.add_credential(
        SECRET,
        Credential {
            account_id: "acc-corp".into(),
            email: "corp@x".into(),
            username: "corp".into(),
            behaviour: Behaviour::Valid,
        },
    );
    let (ca_pem, config) = private_ca();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return; // the exporter refused the certificate
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (url, ca_pem)
}

/// A CONNECT proxy on 127.0.0.1 that counts the tunnels it opened.
async fn connect_proxy() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(AtomicUsize::new(0));
    let count = tunnels.clone();
    tokio::spawn(async move {
        for _ in 0..1000 {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let mut client = BufReader::new(client);
                let mut line = String::new();
                if client.read_line(&mut line).await.is_err() {
                    return;
                }
                let Some(target) = line
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    return;
                };
                let target = target.to_string();
                loop {
                    let mut header = String::new();
                    if client.read_line(&mut header).await.unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                let mut client = client.into_inner();
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_ok()
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (url, tunnels)
}

struct Exporter {
    /// Held while this exporter runs, so the soak can have the machine to itself.
    _gate: crate::harness::gate::Shared,
    child: Child,
    base: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Exporter {
    fn start(global: &str, site: &str, env: &[(&str, &str)]) -> Exporter {
        let gate = crate::harness::gate::shared();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let config = format!(
            "global: {{{global}}}\ntokens:\n  - {{name: corp, provider: jira, site: \"{site}\", email: corp@x, token_env: CORP, probe_interval: 1s}}\n"
        );
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("log");
        let mut child = Command::new(BIN)
            .arg(format!("--config.file={}", path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .env("CORP", SECRET)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let base = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(a) = text
                .split_whitespace()
                .find_map(|w| w.strip_prefix("listen="))
            {
                break format!("http://{}", a.trim_matches('"'));
            }
            assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Exporter {
            _gate: gate,
            child,
            base,
            log,
            _dir: dir,
        }
    }

    /// Polls until the token has a result; returns (valid, last error reason) from
    /// /metrics.
    async fn outcome(&self) -> (Option<f64>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = reqwest::get(format!("{}/metrics", self.base))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let valid = m
                .lines()
                .find(|l| l.starts_with("apitoken_valid{token=\"corp\""))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok());
            let errors: Vec<String> = m
                .lines()
                .filter(|l| l.starts_with("apitoken_probe_errors_total{token=\"corp\""))
                .map(str::to_string)
                .collect();
            if valid.is_some() || !errors.is_empty() {
                return (valid, errors.join("\n"));
            }
            assert!(Instant::now() < deadline, "no probe result:\n{m}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_ca(dir: &tempfile::TempDir, pem: &str) -> String {
    let p = dir.path().join("corp-ca.pem");
    std::fs::write(&p, pem).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_only_when_configured() {
    let (site, ca_pem) = intercepting_site().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(&dir, &ca_pem);

    let without = Exporter::start("", &site, &[]);
    let (valid, errors) = without.outcome().await;
    assert_eq!(valid, None, "an unknown CA must not be trusted");
    assert!(errors.contains("reason=\"tls\""), "{errors}");

    let with = Exporter::start(&format!("tls: {{ca_file: \"{ca}\"}}"), &site, &[]);
    assert_eq!(with.outcome().await.0, Some(1.0), "{}", with.logs());

    let skip = Exporter::start("tls: {insecure_skip_verify: true}", &site, &[]);
    assert_eq!(skip.outcome().await.0, Some(1.0));
    assert!(
        skip.logs().contains("insecure_skip_verify is true"),
        "skipping verification is said loudly:\n{}",
        skip.logs()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_go_through_the_configured_proxy_or_https_proxy_unless_no_proxy() {
    let (site, ca_pem) = intercepting_site().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = write_ca(&dir, &ca_pem);
    let tls = format!("tls: {{ca_file: \"{ca}\"}}");

    let (proxy, tunnels) = connect_proxy().await;
    let via_config = Exporter::start(&format!("{tls}, proxy_url: \"{proxy}\""), &site, &[]);
    assert_eq!(
        via_config.outcome().await.0,
        Some(1.0),
        "{}",
        via_config.logs()
    );
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "global.proxy_url was not used"
    );
    drop(via_config);

    let (proxy, tunnels) = connect_proxy().await;
    let via_env = Exporter::start(&tls, &site, &[("HTTPS_PROXY", &proxy)]);
    assert_eq!(via_env.outcome().await.0, Some(1.0), "{}", via_env.logs());
    assert!(
        tunnels.load(Ordering::SeqCst) >= 1,
        "HTTPS_PROXY was not used"
    );
    drop(via_env);

    let (proxy, tunnels) = connect_proxy().await;
    let bypass = Exporter::start(
        &tls,
        &site,
        &[("HTTPS_PROXY", &proxy), ("NO_PROXY", "127.0.0.1")],
    );
    assert_eq!(bypass.outcome().await.0, Some(1.0), "{}", bypass.logs());
    assert_eq!(tunnels.load(Ordering::SeqCst), 0, "NO_PROXY was ignored");
}
