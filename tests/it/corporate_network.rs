//! Corporate networks, against the real binary over 127.0.0.1: a TLS-intercepting
//! stand-in whose certificate is signed by a private CA (trusted only with
//! `global.tls.ca_file`, or with the loudly logged `insecure_skip_verify`), and a local
//! CONNECT proxy used through `global.proxy_url` or `HTTPS_PROXY`, with `NO_PROXY`
//! honoured.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apitoken_sim::{Behaviour, Simulator};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::*;

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
    // Username `corp`, from the email.
    sim.add_credential(SECRET, cred("acc-corp", "corp@x", Behaviour::Valid));
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

/// The exporter watching the one jira token `corp` on `site`, with these `global:` settings
/// (written as is) and extra env vars (the harness keeps the test's own proxy settings out).
fn start(global: &[(&str, String)], site: &str, env: &[(&str, &str)]) -> Exporter {
    let token = TokenSpec::jira("corp")
        .site(site)
        .email("corp@x")
        .token_env("CORP")
        .probe_interval("1s");
    let config = global
        .iter()
        .fold(ConfigBuilder::new(), |c, (k, v)| c.global(k, v))
        .token(token);
    let mut all = vec![("CORP", SECRET)];
    all.extend_from_slice(env);
    Exporter::start(&config.yaml(), &all)
}

/// Polls until the token has a result; returns whether it is valid, and the last scrape.
async fn outcome(e: &Exporter) -> (Option<f64>, Metrics) {
    let corp = [("token", "corp")];
    let m = e
        .wait_for(Duration::from_secs(20), "a probe result", |m| {
            m.has("apitoken_valid", &corp) || m.has("apitoken_probe_errors_total", &corp)
        })
        .await;
    (m.value("apitoken_valid", &corp), m)
}

/// `tls: {ca_file: …}` trusting the CA in `pem` (written to a file in `dir`).
fn trust(dir: &tempfile::TempDir, pem: &str) -> (&'static str, String) {
    let ca = write(dir.path(), "corp-ca.pem", pem);
    ("tls", format!("{{ca_file: \"{}\"}}", ca.display()))
}

/// `global:` settings or env vars, each a name and its value.
type Settings = Vec<(&'static str, String)>;

/// Starts a fresh CONNECT proxy, then the exporter with the `global:` settings and env vars
/// that `settings` makes of the proxy's URL; once the token is valid (asserted), how many
/// tunnels the proxy opened.
async fn tunnels_opened(site: &str, settings: impl FnOnce(&str) -> (Settings, Settings)) -> usize {
    let (proxy, tunnels) = connect_proxy().await;
    let (global, env) = settings(&proxy);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let e = start(&global, site, &env);
    assert_eq!(outcome(&e).await.0, Some(1.0), "{}", e.output());
    tunnels.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_ca_is_trusted_only_when_configured() {
    let (site, ca_pem) = intercepting_site().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = trust(&dir, &ca_pem);

    let without = start(&[], &site, &[]);
    let (valid, m) = outcome(&without).await;
    assert_eq!(valid, None, "an unknown CA must not be trusted");
    assert!(
        m.has(
            "apitoken_probe_errors_total",
            &[("token", "corp"), ("reason", "tls")]
        ),
        "{}",
        m.text()
    );

    let with = start(&[tls], &site, &[]);
    assert_eq!(outcome(&with).await.0, Some(1.0), "{}", with.output());

    let skip = start(
        &[("tls", "{insecure_skip_verify: true}".into())],
        &site,
        &[],
    );
    assert_eq!(outcome(&skip).await.0, Some(1.0));
    assert!(
        skip.output().contains("insecure_skip_verify is true"),
        "skipping verification is said loudly:\n{}",
        skip.output()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_go_through_the_configured_proxy_or_https_proxy_unless_no_proxy() {
    let (site, ca_pem) = intercepting_site().await;
    let dir = tempfile::tempdir().unwrap();
    let tls = trust(&dir, &ca_pem);

    let through_config = tunnels_opened(&site, |proxy| {
        (
            vec![tls.clone(), ("proxy_url", format!("\"{proxy}\""))],
            vec![],
        )
    })
    .await;
    assert!(through_config >= 1, "global.proxy_url was not used");

    let through_env = tunnels_opened(&site, |proxy| {
        (vec![tls.clone()], vec![("HTTPS_PROXY", proxy.to_string())])
    })
    .await;
    assert!(through_env >= 1, "HTTPS_PROXY was not used");

    let bypassed = tunnels_opened(&site, |proxy| {
        let env = vec![
            ("HTTPS_PROXY", proxy.to_string()),
            ("NO_PROXY", "127.0.0.1".to_string()),
        ];
        (vec![tls.clone()], env)
    })
    .await;
    assert_eq!(bypassed, 0, "NO_PROXY was ignored");
}
