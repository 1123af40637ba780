//! A raw-TCP fault server on 127.0.0.1: it answers each request with hand-written bytes, so
//! tests can serve what no well-behaved HTTP library would (malformed heads, resets,
//! trickled bodies, endless bodies). It first answers `valid_first` requests like a healthy
//! Jira `/myself`, then applies its [`Fault`], so a test can prove that a conclusive state
//! survives the fault. Every connection is closed after one answer (`Connection: close`),
//! so each probe opens a fresh connection and sees the current behaviour.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The identity the valid answers carry (the config must use this email).
pub const FAULT_EMAIL: &str = "svc@acme.example";
pub const FAULT_ACCOUNT: &str = "acc";

/// How long the server waits for a request head before giving up on a connection.
const READ_HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read; the exporter's are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;

/// What the server does once its valid answers are used up.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Stops listening: later connections are refused by the kernel.
    Refuse,
    /// A status line, headers declaring a 1000-byte body and 10 bytes of it, then a TCP
    /// reset (SO_LINGER 0).
    ResetMidResponse,
    /// Reads the request and never answers: the connection stays open until the client
    /// closes it (noted, see [`FaultServer::closed_at`]), the server is dropped or 60 s
    /// pass.
    Silence,
    /// A 200 whose declared body arrives one byte per `every`.
    Trickle { every: Duration },
    /// These bytes verbatim, then close.
    Raw(Vec<u8>),
    /// A 200 JSON head and then `bytes` bytes of body without `Content-Length` (close
    /// delimited), written in 64 KiB chunks until done or the client goes away.
    Endless { bytes: usize },
    /// A 302 whose `Location` is this same URL (a redirect loop).
    RedirectToSelf,
    /// A 302 to another listener; see [`FaultServer::start_redirect_elsewhere`].
    RedirectTo(String),
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub at: Instant,
    pub request_line: String,
    pub has_authorization: bool,
    /// The client started a TLS handshake instead of sending HTTP.
    pub tls_client_hello: bool,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The healthy Jira `/myself` answer.
pub fn valid_response() -> Vec<u8> {
    let body = format!(r#"{{"accountId":"{FAULT_ACCOUNT}","emailAddress":"{FAULT_EMAIL}"}}"#);
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-AAccountId: {FAULT_ACCOUNT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A complete response with `status`, extra header lines (each without CRLF) and a body.
pub fn response(status: &str, headers: &[&str], body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    out.into_bytes()
}

impl FaultServer {
    /// Listens on 127.0.0.1:0; answers `valid_first` requests validly, then `fault`.
    pub async fn start(valid_first: usize, fault: Fault) -> FaultServer {
        Self::start_on("127.0.0.1:0", valid_first, fault).await
    }

    pub async fn start_on(bind: &str, valid_first: usize, fault: Fault) -> FaultServer {
        let listener = TcpListener::bind(bind).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn(accept_loop(
            listener,
            valid_first,
            fault,
            seen.clone(),
            closed.clone(),
        ));
        FaultServer {
            addr,
            seen,
            closed,
            task,
        }
    }

    /// A TLS server with a freshly generated self-signed certificate (no client trusts
    /// it). It completes handshakes when a client lets it and then answers validly.
    pub async fn start_self_signed_tls() -> FaultServer {
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let cert = rustls::pki_types::CertificateDer::from(ck.cert.der().to_vec());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            for _ in 0..10_000 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(Ok(mut tls)) =
                        tokio::time::timeout(READ_HEAD_TIMEOUT, acceptor.accept(tcp)).await
                    else {
                        return; // the client refused our certificate, as it should
                    };
                    if let Some(req) = read_head(&mut tls).await {
                        log.lock().unwrap().push(req);
                        let _ = tls.write_all(&valid_response()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        FaultServer {
            addr,
            seen,
            closed: Arc::default(),
            task,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    pub fn request_count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// When clients closed the connections a [`Fault::Silence`] held open.
    pub fn closed_at(&self) -> Vec<Instant> {
        self.closed.lock().unwrap().clone()
    }
}

async fn accept_loop(
    listener: TcpListener,
    valid_first: usize,
    fault: Fault,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    closed: Arc<Mutex<Vec<Instant>>>,
) {
    let redirect_self = format!(
        "http://{}/rest/api/3/myself",
        listener.local_addr().unwrap()
    );
    // Bounded: no test makes anywhere near this many connections.
    for n in 0..100_000usize {
        if n >= valid_first && matches!(fault, Fault::Refuse) {
            return; // drops the listener: the port now refuses connections
        }
        let Ok((mut stream, _)) = listener.accept().await else {
            return;
        };
        let (fault, seen, closed) = (fault.clone(), seen.clone(), closed.clone());
        let redirect_self = redirect_self.clone();
        tokio::spawn(async move {
            let Some(req) = read_head(&mut stream).await else {
                return;
            };
            if req.tls_client_hello {
                // What a plain-HTTP server says to a TLS client (nginx does the same).
                let _ = stream
                    .write_all(&response("400 Bad Request", &[], "plain HTTP port"))
                    .await;
                let _ = stream.shutdown().await;
                return;
            }
            let index = {
                let mut s = seen.lock().unwrap();
                s.push(req);
                s.len() - 1
            };
            if index < valid_first {
                let _ = stream.write_all(&valid_response()).await;
                let _ = stream.shutdown().await;
                return;
            }
            answer_with_fault(stream, &fault, &redirect_self, &closed).await;
        });
    }
}

async fn answer_with_fault(
    mut stream: TcpStream,
    fault: &Fault,
    redirect_self: &str,
    closed: &Mutex<Vec<Instant>>,
) {
    match fault {
        Fault::Refuse => {}
        Fault::ResetMidResponse => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"account")
                .await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Linger 0 turns the close into a RST instead of a FIN.
            let _ = stream.set_zero_linger();
        }
        Fault::Silence => {
            let mut buf = [0u8; 1024];
            let client_closed = tokio::time::timeout(Duration::from_secs(60), async {
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            })
            .await;
            if client_closed.is_ok() {
                closed.lock().unwrap().push(Instant::now());
            }
        }
        Fault::Trickle { every } => {
            let body = valid_response();
            let split = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            if stream.write_all(&body[..split]).await.is_err() {
                return;
            }
            for b in &body[split..] {
                tokio::time::sleep(*every).await;
                if stream.write_all(&[*b]).await.is_err() {
                    return;
                }
            }
        }
        Fault::Raw(bytes) => {
            let _ = stream.write_all(bytes).await;
            let _ = stream.shutdown().await;
        }
        Fault::Endless { bytes } => {
            let head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"accountId\":\"acc\",\"pad\":\"";
            if stream.write_all(head).await.is_err() {
                return;
            }
            let chunk = vec![b'x'; 64 * 1024];
            let mut left = *bytes;
            while left > 0 {
                let n = left.min(chunk.len());
                if stream.write_all(&chunk[..n]).await.is_err() {
                    return; // the client stopped reading: good
                }
                left -= n;
            }
            let _ = stream.shutdown().await;
        }
        Fault::RedirectToSelf => {
            let loc = format!("Location: {redirect_self}");
            let _ = stream.write_all(&response("302 Found", &[&loc], "")).await;
            let _ = stream.shutdown().await;
        }
        Fault::RedirectTo(url) => {
            let loc = format!("Location: {url}");
            let _ = stream.write_all(&response("302 Found", &[&loc], "")).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// Reads one request head (up to the blank line); None on EOF, timeout or oversize.
async fn read_head<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Option<SeenRequest> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            // A TLS handshake record (0x16 0x03): a ClientHello has no blank line.
            if buf.len() >= 2 && buf[0] == 0x16 && buf[1] == 0x03 {
                return Some(());
            }
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Some(());
            }
            if buf.len() > MAX_HEAD {
                return None;
            }
        }
    };
    tokio::time::timeout(READ_HEAD_TIMEOUT, read)
        .await
        .ok()
        .flatten()?;
    let head = String::from_utf8_lossy(&buf).into_owned();
    Some(SeenRequest {
        tls_client_hello: buf.first() == Some(&0x16),
        at: Instant::now(),
        request_line: head.lines().next().unwrap_or("").to_string(),
        has_authorization: head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("authorization:")),
    })
}
