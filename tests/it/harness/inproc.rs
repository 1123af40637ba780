//! The exporter's HTTP side in-process: `server::router(AppState)` driven with
//! `tower::ServiceExt::oneshot`, for tests of what an endpoint answers, and
//! `serve::serve` on in-memory connections ([`serve_in_memory`]), for tests of its limits
//! (request timeout, connection cap) that need no socket and can run on tokio's paused
//! clock.

use std::sync::Arc;

use apitoken_exporter::config::{Config, TokenConfig};
use apitoken_exporter::metrics::MetricsCache;
use apitoken_exporter::server::{router, AppState, ReloadRequest};
use apitoken_exporter::state::{Store, TokenMeta};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;

/// The router over its own store, as `run_exporter` builds it (minus the listener).
pub struct App {
    pub store: Arc<Store>,
    router: Router,
}

/// A whole response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header"))
    }
}

impl App {
    /// No reload channel, as in `demo`.
    pub fn new() -> App {
        Self::with_reload(None)
    }

    /// Reload requests go to `reload` (the test plays the reload loop).
    pub fn with_reload(reload: Option<mpsc::Sender<ReloadRequest>>) -> App {
        let store = Arc::new(Store::new());
        let state = AppState {
            store: store.clone(),
            metrics: Arc::new(MetricsCache::new()),
            reload,
        };
        App {
            store,
            router: router(state),
        }
    }

    /// The router, to serve it or extend it.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: axum::body::to_bytes(body, usize::MAX).await.unwrap(),
        }
    }

    /// `GET path` with these request headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        let mut request = Request::get(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// Puts these tokens in the store (as a start-up would); returns their generations.
    pub fn set_tokens(&self, tokens: Vec<TokenConfig>) -> std::collections::BTreeMap<String, u64> {
        let metas = tokens
            .into_iter()
            .map(|t| TokenMeta::new(Arc::new(t)))
            .collect();
        self.store.set_tokens(metas, &|_| true)
    }
}

/// A jira token's resolved config, named `name` verbatim (the config loader's name check
/// is bypassed, so a test can use characters a file could not).
pub fn token_config(name: &str) -> TokenConfig {
    let yaml = "tokens:\n  - {name: t, provider: jira, site: \"https://acme.atlassian.net\", email: e, token_env: X}\n";
    let mut token = Config::parse(yaml).unwrap().tokens.remove(0);
    token.name = name.to_string();
    token
}

/// Connections handed to `serve::serve` through a channel instead of a socket.
struct MemoryListener {
    incoming: mpsc::UnboundedReceiver<DuplexStream>,
}

impl axum::serve::Listener for MemoryListener {
    type Io = DuplexStream;
    type Addr = ();

    async fn accept(&mut self) -> (DuplexStream, ()) {
        match self.incoming.recv().await {
            Some(io) => (io, ()),
            // No more clients: wait, as a listener with no connection would.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `app` served by the exporter's own accept loop (`apitoken_exporter::serve::serve`, with
/// its timeouts and connection cap) on in-memory connections; stopped on drop.
pub struct MemoryServer {
    connect: mpsc::UnboundedSender<DuplexStream>,
    task: JoinHandle<()>,
}

impl Drop for MemoryServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn serve_in_memory(app: Router) -> MemoryServer {
    let (connect, incoming) = mpsc::unbounded_channel();
    let listener = MemoryListener { incoming };
    let task = tokio::spawn(apitoken_exporter::serve::serve(
        listener,
        app,
        std::future::pending(),
        std::time::Duration::from_secs(1),
    ));
    MemoryServer { connect, task }
}

impl MemoryServer {
    /// A new connection; the server accepts it in the order of `connect` calls.
    pub fn connect(&self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(4096);
        self.connect.send(server).unwrap();
        client
    }
}

/// Writes `GET path` (HTTP/1.1, keep-alive) on a connection.
pub async fn send_get(conn: &mut DuplexStream, path: &str) -> std::io::Result<()> {
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
}

/// Reads one response with a `Content-Length` body: (status, body). None if the
/// connection ends before a whole response.
pub async fn read_response(conn: &mut DuplexStream) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Some((status, body))
}
