//! The HTTP accept loop. `axum::serve` sets no timer, so hyper's header-read timeout never
//! fires and any number of connections may sit open; this loop bounds both, and drains
//! connections for a bounded time on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// Open connections at once; more are closed at accept. A scrape storm of hundreds of
/// Prometheus servers stays far below this.
pub const MAX_CONNECTIONS: usize = 1024;
/// A client must send a request's headers within this time (slowloris guard); it also
/// closes keep-alive connections that stay idle between requests for longer.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request that has not been answered in this time gets 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections
/// finish for at most `grace`.
pub async fn serve<L: Listener>(
    mut listener: L,
    app: Router,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let app = app.layer(axum::middleware::from_fn(request_timeout));
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (close_tx, close_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            (io, _addr) = listener.accept() => {
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    tracing::debug!("connection limit reached; closing a new connection");
                    drop(io);
                    continue;
                };
                let service = TowerToHyperService::new(app.clone());
                let mut close = close_rx.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    let mut builder = http1::Builder::new();
                    builder
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_READ_TIMEOUT);
                    let conn = builder.serve_connection(TokioIo::new(io), service);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = close.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!("open connections did not finish in time; closing them");
        tasks.abort_all();
    }
}

async fn request_timeout(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "request timed out\n").into_response(),
    }
}

/// Several TCP listeners (`--web.listen-address` given more than once) as one: an accept
/// task per listener feeds a queue.
pub struct Listeners {
    rx: tokio::sync::mpsc::Receiver<(tokio::net::TcpStream, SocketAddr)>,
    locals: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Listeners {
    pub fn new(listeners: Vec<tokio::net::TcpListener>) -> Self {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let mut locals = Vec::new();
        let mut tasks = Vec::new();
        for l in listeners {
            if let Ok(a) = l.local_addr() {
                locals.push(a);
            }
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match l.accept().await {
                        Ok(conn) => {
                            if tx.send(conn).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: wait, do not spin.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }));
        }
        Self { rx, locals, tasks }
    }

    /// Every address listened on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Listener for Listeners {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.locals
            .first()
            .copied()
            .ok_or_else(|| std::io::Error::other("no listener"))
    }
}
