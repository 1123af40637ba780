//! The exporter's routes in-process: `server::router(AppState)` driven with
//! `tower::ServiceExt::oneshot`, for tests of what an endpoint answers, where starting the
//! binary would only add a process and a socket.

use std::sync::Arc;

use apitoken_exporter::config::{Config, TokenConfig};
use apitoken_exporter::metrics::MetricsCache;
use apitoken_exporter::server::{router, AppState, ReloadRequest};
use apitoken_exporter::state::{Store, TokenMeta};
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use tokio::sync::mpsc;
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
