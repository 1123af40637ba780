//! The web layer, 2026: certificates and basic-auth users re-read while running, flood
//! limits (bcrypt checks, the status page), listening (dual-stack `:PORT`, the flag given
//! more than once, host names) and the whole exporter-toolkit web-config format.
//!
//! Self-contained: its own small helpers (the real binary, certificates made with rcgen,
//! raw HTTP over TCP or rustls), the Atlassian simulator for the tokens. Traffic goes to
//! 127.0.0.1 and ::1 only; every loop is bounded in count and time.
//!
//! Its own test binary, not a module of `tests/it`: its flood tests want the machine to
//! themselves (cargo runs test binaries one after another), like the soak in `tests/it`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitoken_sim::{Behaviour, Credential, RunningSimulator, Simulator};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_apitoken_exporter");

// ---------------------------------------------------------------------------------------
// helpers: the process
// ---------------------------------------------------------------------------------------

/// The exporter, started in `dir`; killed by its own PID on drop.
struct Proc {
    child: Child,
    out: Arc<Mutex<String>>,
    /// Every address from the start-up line's `listen=` (comma-separated).
    addrs: Vec<String>,
    started_in: Duration,
}

fn config_file(dir: &Path, yaml: &str) -> PathBuf {
    write(dir, "config.yaml", yaml)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Replaces a file atomically (write a sibling, rename over), as cert-manager and
/// Kubernetes secret volumes do.
fn replace(dir: &Path, name: &str, content: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

impl Proc {
    /// Starts with `args` (a `--config.file` of `tokens: []` in `dir` unless given, and
    /// `--web.listen-address=127.0.0.1:0` unless given); panics if it does not listen in 60 s.
    fn start(dir: &Path, args: &[String]) -> Proc {
        Self::try_start(dir, args, &[], Duration::from_secs(60)).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(
        dir: &Path,
        args: &[String],
        env: &[(String, String)],
        timeout: Duration,
    ) -> Result<Proc, String> {
        let mut cmd = Command::new(BIN);
        if !args.iter().any(|a| a.starts_with("--config.file")) {
            let config = dir.join("config.yaml");
            if !config.exists() {
                config_file(dir, "tokens: []\n");
            }
            cmd.arg(format!("--config.file={}", config.display()));
        }
        if !args.iter().any(|a| a.starts_with("--web.listen-address")) {
            cmd.arg("--web.listen-address=127.0.0.1:0");
        }
        cmd.arg("--log.level=debug")
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        let out = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
        let stderr = child.stderr.take().unwrap();
        let out2 = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(v) = line
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix("listen="))
                {
                    let _ = tx.send(Some(v.trim_matches('"').to_string()));
                }
                let mut o = out2.lock().unwrap();
                o.push_str(&line);
                o.push('\n');
            }
            let _ = tx.send(None);
        });
        match rx.recv_timeout(timeout) {
            Ok(Some(listen)) => Ok(Proc {
                child,
                out,
                addrs: listen.split(',').map(str::to_string).collect(),
                started_in: started.elapsed(),
            }),
            Ok(None) => {
                let status = child.wait().ok();
                Err(format!(
                    "the exporter exited ({status:?}) without listening:\n{}",
                    out.lock().unwrap()
                ))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "the exporter did not listen within {timeout:?}:\n{}",
                    out.lock().unwrap()
                ))
            }
        }
    }

    fn addr(&self) -> &str {
        &self.addrs[0]
    }

    fn port(&self) -> u16 {
        self.addr().rsplit(':').next().unwrap().parse().unwrap()
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Polls the output until it contains every one of `needles` (at most `timeout`).
    fn wait_output(&self, needles: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let out = self.output();
            if needles.iter().all(|n| out.contains(n)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "no log line with {needles:?} within {timeout:?}:\n{}",
            self.output()
        );
    }

    fn threads(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exit code and stderr of a start-up that is expected to fail (or `None` and the
/// output if it listened instead).
fn start_fails(dir: &Path, args: &[String]) -> Result<String, String> {
    match Proc::try_start(dir, args, &[], Duration::from_secs(30)) {
        Ok(p) => Err(p.output()),
        Err(e) => Ok(e),
    }
}

// ---------------------------------------------------------------------------------------
// helpers: certificates
// ---------------------------------------------------------------------------------------

struct Pki {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn leaf(&self, cn: &str, sans: Vec<rcgen::SanType>, client: bool) -> Leaf {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// A server certificate for 127.0.0.1, ::1 and localhost.
    fn server(&self, cn: &str) -> Leaf {
        self.leaf(
            cn,
            vec![
                rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()),
                rcgen::SanType::IpAddress("::1".parse().unwrap()),
                rcgen::SanType::DnsName("localhost".try_into().unwrap()),
            ],
            false,
        )
    }

    fn client(&self, cn: &str, sans: Vec<rcgen::SanType>) -> Leaf {
        self.leaf(cn, sans, true)
    }
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// A TLS client trusting `ca_pem`, optionally presenting `identity`, with the given
/// provider (cipher suites, key-exchange groups).
fn tls_client(
    ca_pem: &str,
    identity: Option<&Leaf>,
    provider: rustls::crypto::CryptoProvider,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => {
            let certs = vec![CertificateDer::from(leaf.der.clone())];
            let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

fn default_client(ca_pem: &str, identity: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    tls_client(
        ca_pem,
        identity,
        provider(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
}

// ---------------------------------------------------------------------------------------
// helpers: HTTP
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Resp {
    status: u16,
    /// The head, lower-cased.
    head: String,
    body: String,
    peer_cert: Option<Vec<u8>>,
    suite: Option<rustls::CipherSuite>,
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
    if let Some((u, p)) = auth {
        req.push_str(&format!("Authorization: Basic {}\r\n", basic(u, p)));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    Ok((status, head.to_ascii_lowercase(), body.to_string()))
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

async fn http(addr: &str, path: &str, auth: Option<(&str, &str)>) -> Result<Resp, String> {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let (status, head, body) = exchange(&mut s, path, auth).await?;
        Ok(Resp {
            status,
            head,
            body,
            peer_cert: None,
            suite: None,
        })
    })
    .await
    .map_err(|_| format!("{addr}{path}: no answer in {HTTP_TIMEOUT:?}"))?
}

async fn https(
    addr: &str,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
    auth: Option<(&str, &str)>,
) -> Result<Resp, String> {
    tokio::time::timeout(HTTP_TIMEOUT, async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let connector = tokio_rustls::TlsConnector::from(config.clone());
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let peer_cert = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let suite = conn.negotiated_cipher_suite().map(|s| s.suite());
        let (status, head, body) = exchange(&mut tls, path, auth).await?;
        Ok(Resp {
            status,
            head,
            body,
            peer_cert,
            suite,
        })
    })
    .await
    .map_err(|_| format!("{addr}{path}: no answer in {HTTP_TIMEOUT:?}"))?
}

fn web_arg(p: &Path) -> String {
    format!("--web.config.file={}", p.display())
}

fn indent(pem: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    pem.lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect::<String>()
}

fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. certificates and users re-read while running
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_certificate_is_served_without_restart_and_a_broken_pair_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("rotation CA");
    let a = pki.server("server-a");
    write(dir.path(), "server.crt", &a.cert_pem);
    write(dir.path(), "server.key", &a.key_pem);
    let web = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let client = default_client(&pki.pem(), None);
    let r = https(e.addr(), &client, "/-/healthy", None).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.peer_cert.as_deref(), Some(&a.der[..]));

    // cert-manager writes a new pair.
    let b = pki.server("server-b");
    replace(dir.path(), "server.key", &b.key_pem);
    replace(dir.path(), "server.crt", &b.cert_pem);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    loop {
        let r = https(e.addr(), &client, "/-/healthy", None).await;
        if r.as_ref().ok().and_then(|r| r.peer_cert.as_deref()) == Some(&b.der[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate 15 s after rotation (last: {r:?}):\n{}",
            e.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("rotated certificate served after {:?}", started.elapsed());

    // A broken new pair (a certificate whose key is not the one on disk) keeps the old
    // pair serving and says why.
    let c = pki.server("server-c");
    replace(dir.path(), "server.crt", &c.cert_pem);
    e.wait_output(
        &["do not fit together", "keeping the previous web config"],
        Duration::from_secs(15),
    );
    for _ in 0..3 {
        let r = https(e.addr(), &client, "/-/healthy", None).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.peer_cert.as_deref(),
            Some(&b.der[..]),
            "the broken pair was used"
        );
    }
    // Its key arrives: the new pair is served.
    replace(dir.path(), "server.key", &c.key_pem);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = https(e.addr(), &client, "/-/healthy", None).await;
        if r.as_ref().ok().and_then(|r| r.peer_cert.as_deref()) == Some(&c.der[..]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the repaired pair was not picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!e.output().contains("PRIVATE KEY"), "{}", e.output());
}

#[tokio::test(flavor = "multi_thread")]
async fn changed_basic_auth_users_apply_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "basic_auth_users:\n  prom: \"{}\"\n",
            hash("first-password")
        ),
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let ok = |r: Result<Resp, String>| r.unwrap().status;
    assert_eq!(
        ok(http(e.addr(), "/metrics", Some(("prom", "first-password"))).await),
        200
    );
    assert_eq!(
        ok(http(e.addr(), "/metrics", Some(("prom", "second-password"))).await),
        401
    );

    replace(
        dir.path(),
        "web.yml",
        &format!(
            "basic_auth_users:\n  prom: \"{}\"\n  other: \"{}\"\n",
            hash("second-password"),
            hash("third")
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while ok(http(e.addr(), "/metrics", Some(("prom", "second-password"))).await) != 200 {
        assert!(
            Instant::now() < deadline,
            "the changed password was ignored for 15 s:\n{}",
            e.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        ok(http(e.addr(), "/metrics", Some(("prom", "first-password"))).await),
        401
    );
    assert_eq!(
        ok(http(e.addr(), "/metrics", Some(("other", "third"))).await),
        200
    );

    // A broken version is refused with the reason; the running users stay.
    replace(
        dir.path(),
        "web.yml",
        "basic_auth_users:\n  prom: plain-text-canary\n",
    );
    e.wait_output(
        &[
            "basic_auth_users.prom: not a bcrypt hash",
            "keeping the previous web config",
        ],
        Duration::from_secs(15),
    );
    assert_eq!(
        ok(http(e.addr(), "/metrics", Some(("prom", "second-password"))).await),
        200
    );
    assert!(!e.output().contains("plain-text-canary"));
    assert!(!e.output().contains("second-password"));
}

// ---------------------------------------------------------------------------------------
// 6. listening
// ---------------------------------------------------------------------------------------

fn require_ipv6_loopback() {
    // The machine this suite runs on has ::1 (checked with `ip -6 addr show lo`); without
    // it the dual-stack tests cannot say anything, so they fail rather than skip.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback ::1 is not available on this machine; the dual-stack tests need it");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_only_listen_address_serves_ipv4_and_ipv6() {
    require_ipv6_loopback();
    let dir = tempfile::tempdir().unwrap();
    let e = Proc::start(dir.path(), &["--web.listen-address=:0".to_string()]);
    let port = e.port();
    for addr in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let r = http(&addr, "/-/healthy", None).await;
        assert_eq!(
            r.as_ref().map(|r| r.status),
            Ok(200),
            "{addr}: {r:?} (listen={:?})",
            e.addrs
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_listen_flag_repeats_and_takes_host_names() {
    require_ipv6_loopback();
    let dir = tempfile::tempdir().unwrap();
    let e = Proc::try_start(
        dir.path(),
        &[
            "--web.listen-address=localhost:0".to_string(),
            "--web.listen-address=[::1]:0".to_string(),
        ],
        &[],
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.addrs.len(), 2, "{:?}", e.addrs);
    assert!(
        e.addrs[0].starts_with("127.0.0.1:"),
        "localhost → IPv4 first, as Go: {:?}",
        e.addrs
    );
    assert!(e.addrs[1].starts_with("[::1]:"), "{:?}", e.addrs);
    for addr in &e.addrs {
        assert_eq!(
            http(addr, "/-/healthy", None).await.unwrap().status,
            200,
            "{addr}"
        );
    }
    // A name that does not resolve stops start-up with the flag named.
    let err = start_fails(
        dir.path(),
        &["--web.listen-address=nonexistent.invalid:0".to_string()],
    )
    .expect("an unresolvable listen address was accepted");
    assert!(err.contains("nonexistent.invalid"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 9. the exporter-toolkit format
// ---------------------------------------------------------------------------------------

/// A syntactically valid bcrypt hash of cost `cost` that matches no password anyone
/// knows (the salt and digest are arbitrary characters of bcrypt's alphabet).
fn opaque_hash(cost: u32) -> String {
    format!("$2y${cost:02}$abcdefghijklmnopqrstuu0123456789ABCDEFGHIJKLMNOPQRSTU")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cost_18_user_does_not_delay_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "basic_auth_users:\n  slow: \"{}\"\n  prom: \"{}\"\n",
            opaque_hash(18),
            hash("pw")
        ),
    );
    let e = Proc::try_start(dir.path(), &[web_arg(&web)], &[], Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("start-up with a cost-18 user took over 10 s: {e}"));
    println!("started in {:?} with a cost-18 user", e.started_in);
    assert_eq!(
        http(e.addr(), "/-/healthy", None).await.unwrap().status,
        200
    );
    assert_eq!(
        http(e.addr(), "/metrics", Some(("prom", "pw")))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn client_auth_types_behave_as_in_go() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("client CA");
    let other = Pki::new("someone else's CA");
    let server = pki.server("server");
    write(dir.path(), "server.crt", &server.cert_pem);
    write(dir.path(), "server.key", &server.key_pem);
    write(dir.path(), "ca.crt", &pki.pem());
    let trusted = pki.client("trusted", vec![]);
    let untrusted = other.client("untrusted", vec![]);
    // (client_auth_type, CA lines, none / trusted / untrusted served?)
    let cases: [(&str, String, [bool; 3]); 6] = [
        ("RequestClientCert", String::new(), [true, true, true]),
        ("RequireAnyClientCert", String::new(), [false, true, true]),
        ("RequireClientCert", String::new(), [false, true, true]),
        (
            "VerifyClientCertIfGiven",
            "  client_ca_file: ca.crt\n".into(),
            [true, true, false],
        ),
        (
            "RequireAndVerifyClientCert",
            "  client_ca_file: ca.crt\n".into(),
            [false, true, false],
        ),
        (
            "RequireAndVerifyClientCert",
            format!("  client_ca: |\n{}", indent(&pki.pem(), 4)),
            [false, true, false],
        ),
    ];
    for (kind, ca, expect) in cases {
        let web = write(
            dir.path(),
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {kind}\n{ca}"
            ),
        );
        let e = Proc::start(dir.path(), &[web_arg(&web)]);
        for (who, identity, served) in [
            ("no certificate", None, expect[0]),
            (
                "a certificate from the client CA",
                Some(&trusted),
                expect[1],
            ),
            ("a certificate from another CA", Some(&untrusted), expect[2]),
        ] {
            let r = https(
                e.addr(),
                &default_client(&pki.pem(), identity),
                "/-/healthy",
                None,
            )
            .await;
            let got = r.as_ref().is_ok_and(|r| r.status == 200);
            assert_eq!(got, served, "{kind} with {who}: {r:?}\n{}", e.output());
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_allowed_sans_match_dns_ip_email_and_uri() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("client CA");
    let server = pki.server("server");
    write(dir.path(), "server.crt", &server.cert_pem);
    write(dir.path(), "server.key", &server.key_pem);
    write(dir.path(), "ca.crt", &pki.pem());
    let client = pki.client(
        "scraper",
        vec![
            rcgen::SanType::DnsName("scraper.example".try_into().unwrap()),
            rcgen::SanType::IpAddress("192.0.2.7".parse().unwrap()),
            rcgen::SanType::Rfc822Name("prom@example.org".try_into().unwrap()),
            rcgen::SanType::URI(
                "spiffe://cluster/ns/monitoring/sa/prometheus"
                    .try_into()
                    .unwrap(),
            ),
        ],
    );
    for (kind, allowed, served) in [
        (
            "RequireAndVerifyClientCert",
            "[\"nope\", \"scraper.example\"]",
            true,
        ),
        ("RequireAndVerifyClientCert", "[\"192.0.2.7\"]", true),
        ("RequireAndVerifyClientCert", "[\"prom@example.org\"]", true),
        (
            "RequireAnyClientCert",
            "[\"spiffe://cluster/ns/monitoring/sa/prometheus\"]",
            true,
        ),
        (
            "RequireAndVerifyClientCert",
            "[\"other.example\", \"scraper\"]",
            false,
        ),
    ] {
        let web = write(
            dir.path(),
            "web.yml",
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: {kind}\n  client_ca_file: ca.crt\n  client_allowed_sans: {allowed}\n"
            ),
        );
        let e = Proc::start(dir.path(), &[web_arg(&web)]);
        let r = https(
            e.addr(),
            &default_client(&pki.pem(), Some(&client)),
            "/-/healthy",
            None,
        )
        .await;
        assert_eq!(
            r.as_ref().is_ok_and(|r| r.status == 200),
            served,
            "{kind} {allowed}: {r:?}\n{}",
            e.output()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cipher_suites_curves_and_server_preference_are_honoured() {
    use rustls::crypto::ring::{cipher_suite as cs, kx_group};
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CA");
    let server = pki.server("server");
    write(dir.path(), "server.crt", &server.cert_pem);
    write(dir.path(), "server.key", &server.key_pem);
    let tls12 = [&rustls::version::TLS12];
    let with = |suites: Vec<rustls::SupportedCipherSuite>,
                groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>| {
        let mut p = provider();
        if !suites.is_empty() {
            p.cipher_suites = suites;
        }
        if !groups.is_empty() {
            p.kx_groups = groups;
        }
        p
    };
    let base = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let a128 = cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;
    let a256 = cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384;

    // One suite configured: a client without it fails, one with it gets it.
    let web = write(
        dir.path(),
        "web.yml",
        &format!("{base}  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let only256 = tls_client(&pki.pem(), None, with(vec![a256], vec![]), &tls12);
    assert!(
        https(e.addr(), &only256, "/-/healthy", None).await.is_err(),
        "no common suite"
    );
    let both = tls_client(&pki.pem(), None, with(vec![a256, a128], vec![]), &tls12);
    let r = https(e.addr(), &both, "/-/healthy", None).await.unwrap();
    assert_eq!(r.suite, Some(a128.suite()));
    drop(e);

    // Server order by default (prefer_server_cipher_suites: true), the client's when false.
    let client_prefers_128 = tls_client(&pki.pem(), None, with(vec![a128, a256], vec![]), &tls12);
    for (prefer, expected) in [("true", a256), ("false", a128)] {
        let web = write(
            dir.path(),
            "web.yml",
            &format!(
                "{base}  max_version: TLS12\n  prefer_server_cipher_suites: {prefer}\n  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
            ),
        );
        let e = Proc::start(dir.path(), &[web_arg(&web)]);
        let r = https(e.addr(), &client_prefers_128, "/-/healthy", None)
            .await
            .unwrap();
        assert_eq!(
            r.suite,
            Some(expected.suite()),
            "prefer_server_cipher_suites: {prefer}"
        );
    }

    // Curves: only the configured group is accepted.
    let web = write(
        dir.path(),
        "web.yml",
        &format!("{base}  curve_preferences: [CurveP384]\n"),
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let tls13 = [&rustls::version::TLS13];
    let x25519 = tls_client(
        &pki.pem(),
        None,
        with(vec![], vec![kx_group::X25519]),
        &tls13,
    );
    assert!(
        https(e.addr(), &x25519, "/-/healthy", None).await.is_err(),
        "X25519 was accepted"
    );
    let p384 = tls_client(
        &pki.pem(),
        None,
        with(vec![], vec![kx_group::SECP384R1]),
        &tls13,
    );
    assert_eq!(
        https(e.addr(), &p384, "/-/healthy", None)
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_certificate_and_key_are_served_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CA");
    let server = pki.server("inline");
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n{}",
            indent(&server.cert_pem, 4),
            indent(&server.key_pem, 4)
        ),
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let r = https(
        e.addr(),
        &default_client(&pki.pem(), None),
        "/-/healthy",
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.peer_cert.as_deref(), Some(&server.der[..]));
    drop(e);

    // A broken inline key: refused, the key's text is not in the error.
    let canary = "KEYCANARYb64b64b64b64b64b64b64b64b64";
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "tls_server_config:\n  cert: |\n{}  key: |\n    -----BEGIN PRIVATE KEY-----\n    {canary}\n    -----END PRIVATE KEY-----\n",
            indent(&server.cert_pem, 4)
        ),
    );
    let err = start_fails(dir.path(), &[web_arg(&web)]).expect("a broken inline key was accepted");
    assert!(err.contains("tls_server_config.key"), "{err}");
    assert!(!err.contains(canary), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn configured_headers_are_sent_and_rate_limit_applies() {
    let dir = tempfile::tempdir().unwrap();
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    Content-Security-Policy: \"default-src 'self'\"\n    Strict-Transport-Security: max-age=31536000\n    X-XSS-Protection: \"1\"\nbasic_auth_users:\n  prom: \"{}\"\n",
            hash("pw")
        ),
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    for (auth, status) in [(Some(("prom", "pw")), 200), (None, 401)] {
        let r = http(e.addr(), "/metrics", auth).await.unwrap();
        assert_eq!(r.status, status);
        for h in [
            "x-frame-options: deny",
            "x-content-type-options: nosniff",
            "content-security-policy: default-src 'self'",
            "strict-transport-security: max-age=31536000",
            "x-xss-protection: 1",
        ] {
            assert!(
                r.head.contains(h),
                "{h} missing from a {status}:\n{}",
                r.head
            );
        }
    }
    drop(e);

    let web = write(
        dir.path(),
        "web.yml",
        "rate_limit:\n  interval: 1m\n  burst: 3\n",
    );
    let e = Proc::start(dir.path(), &[web_arg(&web)]);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(http(e.addr(), "/metrics", None).await.unwrap().status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Liveness probes are not rate-limited (a 429 there would restart the pod).
    assert_eq!(
        http(e.addr(), "/-/healthy", None).await.unwrap().status,
        200
    );
}

/// What the toolkit decides for a file, and what this exporter decides.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Decision {
    Accept,
    /// Refused, the message containing this.
    Refuse(&'static str),
}

/// Cases written from the toolkit's `docs/web-configuration.md` and its validation rules:
/// (name, YAML, the toolkit's decision, ours when it differs).
fn toolkit_cases(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Vec<(&'static str, String, Decision, Option<Decision>)> {
    use Decision::*;
    let tls = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";
    let with = |extra: &str| format!("{tls}{extra}");
    let mut cases: Vec<(&'static str, String, Decision, Option<Decision>)> = vec![
        ("empty file", String::new(), Accept, None),
        ("certificate files", tls.to_string(), Accept, None),
        ("TLS 1.3 only", with("  min_version: TLS13\n"), Accept, None),
        ("TLS 1.2 only", with("  min_version: TLS12\n  max_version: TLS12\n"), Accept, None),
        ("NoClientCert", with("  client_auth_type: NoClientCert\n"), Accept, None),
        ("RequestClientCert", with("  client_auth_type: RequestClientCert\n"), Accept, None),
        ("RequireAnyClientCert", with("  client_auth_type: RequireAnyClientCert\n"), Accept, None),
        ("RequireClientCert (old name)", with("  client_auth_type: RequireClientCert\n"), Accept, None),
        ("VerifyClientCertIfGiven", with("  client_auth_type: VerifyClientCertIfGiven\n"), Accept, None),
        (
            "VerifyClientCertIfGiven with a CA",
            with("  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"),
            Accept,
            None,
        ),
        (
            "RequireAndVerifyClientCert without a CA (system roots)",
            with("  client_auth_type: RequireAndVerifyClientCert\n"),
            Accept,
            None,
        ),
        (
            "RequireAndVerifyClientCert with a CA",
            with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"),
            Accept,
            None,
        ),
        (
            "inline client_ca",
            with(&format!("  client_auth_type: RequireAndVerifyClientCert\n  client_ca: |\n{}", indent(ca_pem, 4))),
            Accept,
            None,
        ),
        (
            "inline cert and key",
            format!("tls_server_config:\n  cert: |\n{}  key: |\n{}", indent(cert_pem, 4), indent(key_pem, 4)),
            Accept,
            None,
        ),
        (
            "cert file, inline key",
            format!("tls_server_config:\n  cert_file: server.crt\n  key: |\n{}  client_auth_type: RequireAnyClientCert\n", indent(key_pem, 4)),
            Accept,
            None,
        ),
        (
            "client_allowed_sans",
            with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  client_allowed_sans: [one, two]\n"),
            Accept,
            None,
        ),
        (
            "cipher_suites",
            with("  cipher_suites:\n    - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n    - TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\n    - TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384\n    - TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256\n    - TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256\n    - TLS_AES_128_GCM_SHA256\n    - TLS_AES_256_GCM_SHA384\n    - TLS_CHACHA20_POLY1305_SHA256\n"),
            Accept,
            None,
        ),
        (
            "cipher_suites without an HTTP/2 suite, http2 off",
            with("  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\nhttp_server_config:\n  http2: false\n"),
            Accept,
            None,
        ),
        (
            "prefer_server_cipher_suites",
            with("  prefer_server_cipher_suites: false\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
            Accept,
            None,
        ),
        ("curve_preferences", with("  curve_preferences: [X25519, CurveP256, CurveP384]\n"), Accept, None),
        ("http2 on", "http_server_config:\n  http2: true\n".to_string(), Accept, None),
        (
            "every header",
            "http_server_config:\n  headers:\n    Content-Security-Policy: \"default-src 'self'\"\n    X-Frame-Options: sameorigin\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: \"1; mode=block\"\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n".to_string(),
            Accept,
            None,
        ),
        (
            "users, cost 4 and 18",
            format!("basic_auth_users:\n  a: \"{}\"\n  b: \"{}\"\n", hash("x"), opaque_hash(18)),
            Accept,
            None,
        ),
        ("rate_limit", "rate_limit:\n  interval: 1s\n  burst: 10\n".to_string(), Accept, None),
        ("rate_limit off", "rate_limit:\n  interval: 0\n  burst: 0\n".to_string(), Accept, None),
        ("rate_limit, Go duration", "rate_limit:\n  interval: 1m30s\n  burst: 1\n".to_string(), Accept, None),
        (
            "only min_version (TLS stays off, as in the toolkit)",
            "tls_server_config:\n  min_version: TLS13\n".to_string(),
            Accept,
            None,
        ),
        // refused by the toolkit
        ("unknown top-level key", "tls_confg: {}\n".to_string(), Refuse("unknown field `tls_confg`"), None),
        ("unknown TLS key", with("  cert_path: x\n"), Refuse("unknown field `cert_path`"), None),
        (
            "empty cert_file",
            "tls_server_config:\n  cert_file: \"\"\n  key_file: server.key\n".to_string(),
            Refuse("missing one of cert or cert_file"),
            None,
        ),
        (
            "empty key_file",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: \"\"\n".to_string(),
            Refuse("missing one of key or key_file"),
            None,
        ),
        (
            "empty cert and key",
            "tls_server_config:\n  cert: \"\"\n  key: \"\"\n  client_auth_type: RequireAnyClientCert\n".to_string(),
            Refuse("missing one of cert or cert_file"),
            None,
        ),
        (
            "missing cert file",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n".to_string(),
            Refuse("tls_server_config.cert_file"),
            None,
        ),
        (
            "missing key file",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n".to_string(),
            Refuse("tls_server_config.key_file"),
            None,
        ),
        (
            "client CA without a policy",
            with("  client_ca_file: ca.crt\n"),
            Refuse("without a Client Auth Policy"),
            None,
        ),
        (
            "missing client CA file",
            with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.crt\n"),
            Refuse("tls_server_config.client_ca_file"),
            None,
        ),
        (
            "client CA without certificates",
            with("  client_auth_type: RequireAndVerifyClientCert\n  client_ca: \"no pem here\"\n"),
            Refuse("tls_server_config.client_ca"),
            None,
        ),
        (
            "unknown client_auth_type",
            with("  client_auth_type: Sometimes\n"),
            Refuse("invalid ClientAuth"),
            None,
        ),
        (
            "client_allowed_sans with an optional certificate",
            with("  client_auth_type: VerifyClientCertIfGiven\n  client_allowed_sans: [one]\n"),
            Refuse("client_allowed_sans requires client_auth_type"),
            None,
        ),
        ("plain-text password", "basic_auth_users:\n  john: doe\n".to_string(), Refuse("not a bcrypt hash"), None),
        ("invented cipher", with("  cipher_suites: [TLS_INVENTED_CIPHER]\n"), Refuse("unknown cipher"), None),
        ("invented curve", with("  curve_preferences: [CurveInvented]\n"), Refuse("unknown curve"), None),
        ("unknown TLS version", with("  min_version: TLS111\n"), Refuse("unknown TLS version"), None),
        (
            "cipher_suites without an HTTP/2 suite, http2 on",
            with("  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"),
            Refuse("HTTP/2-required"),
            None,
        ),
        (
            "a header that cannot be set",
            "http_server_config:\n  headers:\n    Content-Type: foo\n".to_string(),
            Refuse("can not be configured"),
            None,
        ),
        (
            "X-Frame-Options value",
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".to_string(),
            Refuse("invalid value for X-Frame-Options"),
            None,
        ),
        (
            "X-Content-Type-Options value",
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n".to_string(),
            Refuse("invalid value for X-Content-Type-Options"),
            None,
        ),
        ("rate_limit interval", "rate_limit:\n  interval: fast\n  burst: 1\n".to_string(), Refuse("rate_limit.interval"), None),
        // the toolkit accepts; rustls cannot honour them: refused, the field named
        ("TLS 1.0", with("  min_version: TLS10\n"), Accept, Some(Refuse("tls_server_config.min_version: TLS10"))),
        ("TLS 1.1", with("  min_version: TLS11\n"), Accept, Some(Refuse("tls_server_config.min_version: TLS11"))),
        (
            "a CBC cipher suite",
            with("  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            Accept,
            Some(Refuse("tls_server_config.cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA")),
        ),
        ("curve P-521", with("  curve_preferences: [CurveP521]\n"), Accept, Some(Refuse("tls_server_config.curve_preferences: CurveP521"))),
        (
            "min_version above max_version",
            with("  min_version: TLS13\n  max_version: TLS12\n"),
            Accept,
            Some(Refuse("min_version is above max_version")),
        ),
    ];
    cases.shrink_to_fit();
    cases
}

#[test]
fn the_toolkit_format_gets_the_toolkits_accept_and_refuse_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("CA");
    let server = pki.server("server");
    write(dir.path(), "server.crt", &server.cert_pem);
    write(dir.path(), "server.key", &server.key_pem);
    write(dir.path(), "ca.crt", &pki.pem());
    config_file(dir.path(), "tokens: []\n");
    let mut wrong = Vec::new();
    let cases = toolkit_cases(&pki.pem(), &server.cert_pem, &server.key_pem);
    let (mut accepted, mut refused) = (0, 0);
    for (name, yaml, toolkit, ours) in &cases {
        let web = write(dir.path(), "web.yml", yaml);
        let expected = ours.unwrap_or(*toolkit);
        let got = match Proc::try_start(dir.path(), &[web_arg(&web)], &[], Duration::from_secs(30))
        {
            Ok(p) => {
                drop(p);
                Decision::Accept
            }
            Err(out) => {
                assert!(
                    !out.contains("PRIVATE KEY-----\n"),
                    "{name}: the key was echoed:\n{out}"
                );
                match expected {
                    Decision::Refuse(fragment) if out.contains(fragment) => expected,
                    _ => {
                        wrong.push(format!(
                            "{name}: expected {expected:?}, refused with:\n{out}"
                        ));
                        continue;
                    }
                }
            }
        };
        match got {
            Decision::Accept => accepted += 1,
            Decision::Refuse(_) => refused += 1,
        }
        if got != expected {
            wrong.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    println!(
        "{} cases: {accepted} accepted, {refused} refused as expected, {} wrong",
        cases.len(),
        wrong.len()
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// 2. floods: 10,000 tokens, both cores busy
// ---------------------------------------------------------------------------------------

const FAST: usize = 10;
const FAST_INTERVAL_S: u64 = 2;

struct Fleet {
    sim: RunningSimulator,
    config: String,
    env: Vec<(String, String)>,
    fast_secrets: Vec<String>,
}

/// `bulk` tokens on a 1 h interval (they fill the page and /metrics) and [`FAST`] tokens
/// probed every [`FAST_INTERVAL_S`] seconds whose cadence the floods must not break.
async fn fleet(bulk: usize) -> Fleet {
    let sim = Simulator::new();
    let cred = |i: usize| Credential {
        account_id: format!("acc{i}"),
        email: "svc@acme.example".into(),
        username: "svc".into(),
        behaviour: Behaviour::Valid,
    };
    sim.add_credential("ATATT3xBULKSECRET", cred(0));
    let fast_secrets: Vec<String> = (0..FAST).map(|i| format!("ATATT3xFAST{i}")).collect();
    for (i, s) in fast_secrets.iter().enumerate() {
        sim.add_credential(s, cred(i + 1));
    }
    let sim = sim.start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let site = sim.base_url();
    let mut config = String::from(
        "global:\n  allow_insecure_http: true\n  probe_interval: 1h\n  probe_timeout: 5s\n  max_concurrency: 16\ntokens:\n",
    );
    for i in 0..bulk {
        config.push_str(&format!(
            "  - name: bulk{i}\n    provider: jira\n    site: \"{site}\"\n    email: svc@acme.example\n    token_env: BULK\n"
        ));
    }
    let mut env = vec![("BULK".to_string(), "ATATT3xBULKSECRET".to_string())];
    for (i, secret) in fast_secrets.iter().enumerate() {
        config.push_str(&format!(
            "  - name: fast{i}\n    provider: jira\n    site: \"{site}\"\n    email: svc@acme.example\n    token_env: FAST{i}\n    probe_interval: {FAST_INTERVAL_S}s\n"
        ));
        env.push((format!("FAST{i}"), secret.clone()));
    }
    Fleet {
        sim,
        config,
        env,
        fast_secrets,
    }
}

impl Fleet {
    /// The longest gap between two probes of a fast token (or from the window's start to
    /// its first probe, or from its last probe to the window's end) within `window`
    /// (offsets since the simulator started).
    fn worst_gap(&self, from: Duration, to: Duration) -> Duration {
        let mut worst = Duration::ZERO;
        for s in &self.fast_secrets {
            let mut last = from;
            for t in self.sim.sim.request_offsets_for(s) {
                if t < from || t > to {
                    continue;
                }
                worst = worst.max(t - last);
                last = t;
            }
            worst = worst.max(to.saturating_sub(last));
        }
        worst
    }
}

/// Keeps both cores busy until `stop`: two spinning threads.
fn burn_cores(stop: Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<u64>> {
    (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..10_000u64 {
                        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                    }
                }
                x
            })
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Starts the exporter over the fleet and waits until every fast token was probed.
async fn start_fleet(fleet: &Fleet, extra: &[String], dir: &Path) -> Proc {
    let config = config_file(dir, &fleet.config);
    let mut args = vec![format!("--config.file={}", config.display())];
    args.extend_from_slice(extra);
    let e = Proc::try_start(dir, &args, &fleet.env, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet
        .fast_secrets
        .iter()
        .any(|s| fleet.sim.sim.requests_for(s) == 0)
    {
        assert!(
            Instant::now() < deadline,
            "fast tokens not probed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    e
}

const FLOOD: Duration = Duration::from_secs(20);

/// The two floods run one at a time (each keeps both cores busy on its own).
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What the observer saw during a flood.
struct Observed {
    healthy: Vec<Duration>,
    scrapes: Vec<Duration>,
    max_threads: u64,
    /// The worst gap between two probes of a fast token.
    gap: Duration,
}

/// Runs `clients` (each looping until [`FLOOD`] has passed since the instant it is given)
/// with both cores busy, while an observer asks `/-/healthy` and `/metrics` (with `auth`)
/// every `every`, and reads the exporter's thread count. Asserts both always answer 200.
async fn flood(
    fleet: &Fleet,
    e: &Proc,
    auth: Option<(&str, &str)>,
    every: Duration,
    clients: impl FnOnce(Instant) -> Vec<tokio::task::JoinHandle<()>>,
) -> Observed {
    let addr = e.addr().to_string();
    let last_probe = || {
        fleet
            .sim
            .sim
            .request_offsets_for(&fleet.fast_secrets[0])
            .last()
            .copied()
            .unwrap_or_default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let burners = burn_cores(stop.clone());
    let window_from = last_probe();
    let started = Instant::now();
    let clients = clients(started);
    let mut seen = Observed {
        healthy: Vec::new(),
        scrapes: Vec::new(),
        max_threads: 0,
        gap: Duration::ZERO,
    };
    while started.elapsed() < FLOOD {
        let t = Instant::now();
        assert_eq!(http(&addr, "/-/healthy", None).await.unwrap().status, 200);
        seen.healthy.push(t.elapsed());
        let t = Instant::now();
        let r = http(&addr, "/metrics", auth).await.unwrap();
        assert_eq!(r.status, 200, "/metrics during the flood");
        seen.scrapes.push(t.elapsed());
        seen.max_threads = seen.max_threads.max(e.threads());
        tokio::time::sleep(every).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    let window_to = last_probe().max(window_from);
    stop.store(true, Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    seen.healthy.sort();
    seen.scrapes.sort();
    seen.gap = fleet.worst_gap(window_from, window_to);
    assert!(
        *seen.healthy.last().unwrap() < Duration::from_secs(3),
        "/-/healthy too slow"
    );
    assert!(
        *seen.scrapes.last().unwrap() < Duration::from_secs(10),
        "/metrics too slow"
    );
    assert!(
        seen.gap < Duration::from_secs(4 * FAST_INTERVAL_S),
        "probing stalled: gap {:?}",
        seen.gap
    );
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_flood_at_10000_tokens_keeps_probing_health_and_bounds_bcrypt() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(10_000).await;
    let web = write(
        dir.path(),
        "web.yml",
        &format!(
            "basic_auth_users:\n  prom: \"{}\"\n",
            bcrypt::hash("right", 10).unwrap()
        ),
    );
    let e = start_fleet(&fleet, &[web_arg(&web)], dir.path()).await;
    let addr = e.addr().to_string();
    // The right password once, so it is cached before the flood.
    let r = http(&addr, "/metrics", Some(("prom", "right"))).await;
    assert_eq!(r.unwrap().status, 200);
    let answered = Arc::new(AtomicU64::new(0));
    let seen = flood(
        &fleet,
        &e,
        Some(("prom", "right")),
        Duration::from_millis(500),
        |started| {
            (0..300)
                .map(|c| {
                    let (addr, answered) = (addr.clone(), answered.clone());
                    tokio::spawn(async move {
                        let mut n = 0u64;
                        while started.elapsed() < FLOOD {
                            n += 1;
                            // A third are unknown users; every password is new.
                            let user = if c % 3 == 0 {
                                format!("nobody{c}")
                            } else {
                                "prom".into()
                            };
                            let password = format!("wrong-{c}-{n}");
                            let patience = Duration::from_secs(5);
                            let r = tokio::time::timeout(
                                patience,
                                http(&addr, "/metrics", Some((&user, &password))),
                            )
                            .await;
                            if let Ok(Ok(r)) = r {
                                assert_ne!(r.status, 200, "a wrong password was let in");
                                answered.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect()
        },
    )
    .await;
    println!(
        "wrong-password flood (300 clients, {FLOOD:?}, 10,000 tokens, both cores busy): {} answers (401/429); /-/healthy p50 {:?} max {:?}; authorized /metrics p50 {:?} max {:?}; exporter threads max {}; worst gap between probes of a {FAST_INTERVAL_S} s token {:?}",
        answered.load(Ordering::Relaxed),
        percentile(&seen.healthy, 0.5),
        seen.healthy.last().unwrap(),
        percentile(&seen.scrapes, 0.5),
        seen.scrapes.last().unwrap(),
        seen.max_threads,
        seen.gap,
    );
    assert!(
        seen.max_threads <= 64,
        "{} threads: the bcrypt checks are not bounded",
        seen.max_threads
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_status_page_flood_at_10000_tokens_keeps_metrics_health_and_probing() {
    let _heavy = HEAVY.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let fleet = fleet(10_000).await;
    let e = start_fleet(&fleet, &[], dir.path()).await;
    let addr = e.addr().to_string();
    let pages = Arc::new(AtomicU64::new(0));
    let seen = flood(&fleet, &e, None, Duration::from_millis(200), |started| {
        (0..30)
            .map(|_| {
                let (addr, pages) = (addr.clone(), pages.clone());
                tokio::spawn(async move {
                    let mut n = 0u32;
                    while started.elapsed() < FLOOD {
                        // Every other request is abandoned after 50 ms.
                        n += 1;
                        let patience = if n % 2 == 0 {
                            Duration::from_millis(50)
                        } else {
                            Duration::from_secs(15)
                        };
                        let r = tokio::time::timeout(patience, http(&addr, "/", None)).await;
                        if let Ok(Ok(r)) = r {
                            assert!(
                                r.status == 200 || r.status == 503,
                                "GET / answered {}",
                                r.status
                            );
                            if r.status == 200 {
                                assert!(r.body.contains("bulk9999"));
                                pages.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect()
    })
    .await;
    println!(
        "status-page flood (30 clients, {FLOOD:?}, 10,000 tokens, both cores busy): {} pages served; /metrics (plain) p50 {:?} p99 {:?} max {:?} ({} scrapes); /-/healthy max {:?}; worst gap between probes of a {FAST_INTERVAL_S} s token {:?}",
        pages.load(Ordering::Relaxed),
        percentile(&seen.scrapes, 0.5),
        percentile(&seen.scrapes, 0.99),
        seen.scrapes.last().unwrap(),
        seen.scrapes.len(),
        seen.healthy.last().unwrap(),
        seen.gap,
    );
    assert!(pages.load(Ordering::Relaxed) > 0, "no page was served");
}
