//! The TLS accept loop: each handshake runs in its own task with a timeout (a slow or
//! silent client cannot block the loop) and uses the TLS config in force when the
//! connection arrives, so a rotated certificate applies to the next connection.

use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; more wait in the kernel's accept queue.
const MAX_PENDING_HANDSHAKES: usize = 256;

type Config = Arc<dyn Fn() -> Option<Arc<rustls::ServerConfig>> + Send + Sync>;

/// A TLS listener for `axum::serve`-style loops over any TCP listener.
pub struct TlsListener<L: Listener> {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<L::Io>, L::Addr)>,
    local: std::io::Result<L::Addr>,
    accept_task: tokio::task::JoinHandle<()>,
}

impl<L> TlsListener<L>
where
    L: Listener,
    L::Io: Unpin,
    L::Addr: std::fmt::Debug,
{
    /// `config` is asked for the TLS config of every new connection.
    pub fn new(mut inner: L, config: Config) -> Self {
        let local = inner.local_addr();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let limit = Arc::new(tokio::sync::Semaphore::new(MAX_PENDING_HANDSHAKES));
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (sock, addr) = inner.accept().await;
                let Some(server_config) = config() else {
                    continue;
                };
                let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = ?addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(client = ?addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Self {
            rx,
            local,
            accept_task,
        }
    }
}

impl<L: Listener> Drop for TlsListener<L> {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl<L> Listener for TlsListener<L>
where
    L: Listener,
    L::Io: Unpin,
    L::Addr: Clone,
{
    type Io = tokio_rustls::server::TlsStream<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.local {
            Ok(a) => Ok(a.clone()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
