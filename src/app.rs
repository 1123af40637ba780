//! Entry points behind the command line: the exporter, `--config.check`, `check`, `demo`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};

use crate::config::{Config, ExpirySource};
use crate::metrics::MetricsCache;
use crate::probe::Outcome;
use crate::scheduler::{probe_token, Scheduler, Spread, TokenCredential, RELOAD_SPREAD};
use crate::serve::Listeners;
use crate::server::{router, AppState, ReloadRequest};
use crate::state::Store;
use crate::upstream::HttpClient;
use crate::util::unix_now;
use crate::webconfig::{TlsListener, WebConfig};

/// How long shutdown waits for open HTTP connections before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One `--web.listen-address`, split as Go's `net.SplitHostPort`: `host:port`,
/// `[v6]:port`, `:port`. The port is a number (0 picks a free one).
pub fn split_listen(addr: &str) -> Result<(String, u16), String> {
    let bad = || {
        format!("invalid --web.listen-address {addr:?}: expected host:port, [ipv6]:port or :port")
    };
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or_else(bad)?;
        (host, port)
    } else {
        let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
        if host.contains(':') {
            return Err(bad());
        }
        (host, port)
    };
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host.to_string(), port))
}

/// A socket on `[::]:port` that also takes IPv4 (`IPV6_V6ONLY` off), as Go listens for
/// `:port`; IPv4 only where the machine has no IPv6.
fn bind_dual_stack(port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let bind = |domain: Domain, addr: SocketAddr, v6only: Option<bool>| {
        let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if let Some(v) = v6only {
            s.set_only_v6(v)?;
        }
        s.set_reuse_address(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        s.set_nonblocking(true)?;
        Ok::<_, std::io::Error>(std::net::TcpListener::from(s))
    };
    match bind(Domain::IPV6, SocketAddr::from(([0u16; 8], port)), Some(false)) {
        Ok(l) => Ok(l),
        Err(e) if e.raw_os_error() == Some(97) /* EAFNOSUPPORT */ => {
            tracing::info!("no IPv6 on this machine; listening on IPv4 only");
            bind(Domain::IPV4, SocketAddr::from(([0, 0, 0, 0], port)), None)
        }
        Err(e) => Err(e),
    }
}

/// Binds one address: `:port`, `0.0.0.0:port` and `[::]:port` dual-stack (as Go), an IP
/// literal as given, a host name at its first IPv4 address, else its first (as Go).
async fn bind(addr: &str) -> Result<TcpListener, String> {
    let (host, port) = split_listen(addr)?;
    let fail = |what: &dyn std::fmt::Display, e: std::io::Error| {
        format!("cannot listen on {what} (--web.listen-address={addr}): {e}")
    };
    if host.is_empty() || host == "0.0.0.0" || host == "::" {
        let l = bind_dual_stack(port).map_err(|e| fail(&format!(":{port}"), e))?;
        return TcpListener::from_std(l).map_err(|e| fail(&format!(":{port}"), e));
    }
    let sock = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host:?} (--web.listen-address={addr}): {e}"))?
                .collect();
            found
                .iter()
                .find(|a| a.is_ipv4())
                .or_else(|| found.first())
                .copied()
                .ok_or_else(|| format!("{host:?} has no address (--web.listen-address={addr})"))?
        }
    };
    TcpListener::bind(sock).await.map_err(|e| fail(&sock, e))
}

/// Binds every `--web.listen-address`, in order.
async fn bind_all(addrs: &[String]) -> Result<Vec<TcpListener>, String> {
    let mut out = Vec::with_capacity(addrs.len());
    for a in addrs {
        out.push(bind(a).await?);
    }
    Ok(out)
}

/// The bound addresses for the start-up line, comma-separated.
fn listening(listeners: &[TcpListener]) -> String {
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// How the exporter runs (from the command line).
pub struct ExporterOptions {
    pub config_file: PathBuf,
    /// Every `--web.listen-address`.
    pub listen: Vec<String>,
    pub web: WebConfig,
    /// Poll the config file and reload when its content changes.
    pub auto_reload: Option<Duration>,
}

/// Runs the exporter until SIGTERM/SIGINT.
pub async fn run_exporter(opts: ExporterOptions) -> Result<(), String> {
    let (config_file, listen, web) = (opts.config_file.as_path(), &opts.listen, &opts.web);
    // Installed before anything slow: a SIGHUP that arrives while 10,000 tokens are being
    // parsed (a config-reloader sidecar does this) must queue a reload, not kill us.
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| format!("cannot install the SIGHUP handler: {e}"))?;
    // Taken before loading, so a change made right after start-up is never missed.
    let loaded_fingerprint = fingerprint(config_file);
    let config = Config::load(config_file).map_err(|e| e.to_string())?;
    let listeners = bind_all(listen).await?;
    let store = Arc::new(Store::new());
    warn_if_insecure(&config);
    let mut scheduler = Scheduler::new(
        store.clone(),
        HttpClient::with_options(&config.global.client)?,
    )?;
    scheduler.apply(&config, Spread::Interval);
    store.record_reload(true);
    store.set_ready();
    tracing::info!(
        version = crate::util::VERSION,
        config = %config_file.display(),
        tokens = config.tokens.len(),
        organizations = config.organizations.len(),
        listen = %listening(&listeners),
        tls = web.tls_enabled(),
        basic_auth = web.basic_auth_enabled(),
        "apitoken-exporter started; first probes are spread over each token's interval"
    );

    // The scheduler and the store hold what they need; at 10,000 tokens a second copy of
    // the whole config for the life of the process is megabytes.
    let client_options = config.global.client.clone();
    drop(config);
    let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(4);
    let mut controller = tokio::spawn(reload_loop(
        scheduler,
        client_options,
        config_file.to_path_buf(),
        reload_rx,
        store.clone(),
    ));
    let sighup = tokio::spawn(forward_sighup(hup, reload_tx.clone()));
    let watcher = opts.auto_reload.map(|every| {
        tokio::spawn(watch_config(
            config_file.to_path_buf(),
            every,
            loaded_fingerprint,
            reload_tx.clone(),
        ))
    });
    let state = AppState {
        store: store.clone(),
        metrics: Arc::new(MetricsCache::new()),
        reload: Some(reload_tx),
    };
    // The reload loop owns the scheduler. It only ends if it panicked: then nothing probes
    // any more, and serving stale gauges would hide that, so go unready and exit non-zero
    // (the orchestrator restarts us).
    let result = tokio::select! {
        served = serve(listeners, state, web) => served,
        ended = &mut controller => {
            store.set_unready();
            let why = match ended {
                Err(e) if e.is_panic() => "panicked",
                _ => "ended",
            };
            tracing::error!(why, "the scheduler's reload task stopped; exiting");
            Err(format!("the scheduler's reload task {why}; no token is probed any more"))
        }
    };
    sighup.abort();
    if let Some(w) = watcher {
        w.abort();
    }
    controller.abort(); // drops the scheduler, which cancels in-flight probes
    result
}

/// `global.tls.insecure_skip_verify` turns certificate checks off, and a site may be valid
/// but wrong for its vendor: said at every load.
fn warn_if_insecure(config: &Config) {
    if config.global.client.insecure_skip_verify {
        tracing::warn!(
            "global.tls.insecure_skip_verify is true: vendors' TLS certificates are NOT verified, so anyone on the network path can read every token; use global.tls.ca_file instead"
        );
    }
    for w in config.check_sites() {
        tracing::warn!("{w}");
    }
}

/// Owns the scheduler: applies reloads one at a time.
async fn reload_loop(
    mut scheduler: Scheduler,
    mut client_options: crate::upstream::ClientOptions,
    path: PathBuf,
    mut rx: mpsc::Receiver<ReloadRequest>,
    store: Arc<Store>,
) {
    while let Some(answer) = rx.recv().await {
        // Reading and parsing a large config (or one on a slow disk) is blocking work.
        let p = path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&p))
            .await
            .unwrap_or_else(|e| {
                Err(crate::config::ConfigError {
                    file: path.clone(),
                    problems: vec![format!("loading the config failed: {e}")],
                })
            });
        // A new CA or proxy needs a new client; one that cannot be built fails the reload.
        let loaded = loaded.and_then(|config| {
            if config.global.client == client_options {
                return Ok(config);
            }
            let client = HttpClient::with_options(&config.global.client).map_err(|e| {
                crate::config::ConfigError {
                    file: path.clone(),
                    problems: vec![format!("global.tls / global.proxy_url: {e}")],
                }
            })?;
            scheduler.replace_client(client);
            client_options = config.global.client.clone();
            Ok(config)
        });
        let result = match loaded {
            Ok(config) => {
                warn_if_insecure(&config);
                scheduler.apply(&config, Spread::Within(RELOAD_SPREAD));
                store.record_reload(true);
                tracing::info!(tokens = config.tokens.len(), "configuration reloaded");
                Ok(())
            }
            Err(e) => {
                store.record_reload(false);
                tracing::error!(error = %e, "configuration reload failed; keeping the running configuration");
                Err(e.to_string())
            }
        };
        let _ = answer.send(result);
    }
}

async fn forward_sighup(mut hup: tokio::signal::unix::Signal, tx: mpsc::Sender<ReloadRequest>) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received, reloading configuration");
        let (answer, _ignored) = tokio::sync::oneshot::channel();
        if tx.send(answer).await.is_err() {
            return;
        }
    }
}

/// `--config.auto-reload-interval`: reloads when the file's content changes. A broken
/// version is tried once (and reported), not on every tick.
async fn watch_config(
    path: PathBuf,
    every: Duration,
    mut last: Option<u64>,
    tx: mpsc::Sender<ReloadRequest>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let p = path.clone();
        let now = tokio::task::spawn_blocking(move || fingerprint(&p))
            .await
            .ok()
            .flatten();
        if now.is_none() || now == last {
            continue;
        }
        last = now;
        tracing::info!(config = %path.display(), "config file changed, reloading");
        let (answer, _ignored) = tokio::sync::oneshot::channel();
        if tx.send(answer).await.is_err() {
            return;
        }
    }
}

/// A hash of the config file's content, to notice changes.
fn fingerprint(path: &Path) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    // Bounded like `Config::load`: a pipe or device as config file must not be read forever.
    let bytes = crate::util::read_at_most(path, crate::config::MAX_CONFIG_BYTES).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

/// Serves HTTP(S) on every listener until a shutdown signal, then drains connections
/// for a bounded time. The web config file is watched meanwhile.
async fn serve(
    listeners: Vec<TcpListener>,
    state: AppState,
    web: &WebConfig,
) -> Result<(), String> {
    let mut app = router(state);
    if web.has_file() {
        app = app.layer(axum::middleware::from_fn_with_state(
            web.clone(),
            crate::webconfig::web_layer,
        ));
    }
    let watcher = web.watch();
    let listeners = Listeners::new(listeners);
    let result = if web.tls_enabled() {
        let web = web.clone();
        serve_on(
            TlsListener::new(listeners, Arc::new(move || web.tls())),
            app,
        )
        .await
    } else {
        serve_on(listeners, app).await
    };
    if let Some(w) = watcher {
        w.abort();
    }
    result
}

async fn serve_on<L: axum::serve::Listener>(listener: L, app: axum::Router) -> Result<(), String> {
    let shutdown = async {
        shutdown_signal().await;
        tracing::info!("shutting down");
    };
    crate::serve::serve(listener, app, shutdown, SHUTDOWN_GRACE).await;
    Ok(())
}

/// `--config.check`: 1 for problems in the configuration itself, else 0. Secret sources
/// missing in this environment (unset variable, unreadable file) are `warning:` lines:
/// the running exporter tolerates them per token, and configs are usually checked in CI
/// where the secrets are absent.
pub fn config_check(config_file: &Path) -> i32 {
    match Config::load(config_file) {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(config) => {
            let mut warnings = config.check_secret_sources();
            warnings.extend(config.check_sites());
            if config.global.client.insecure_skip_verify {
                warnings.push("global.tls.insecure_skip_verify: vendors' TLS certificates are not verified; use global.tls.ca_file".to_string());
            }
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            let note = match warnings.len() {
                0 => String::new(),
                1 => "; 1 warning".to_string(),
                n => format!("; {n} warnings"),
            };
            println!(
                "OK: {} ({} tokens, {} organizations{note})",
                config_file.display(),
                config.tokens.len(),
                config.organizations.len()
            );
            0
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckOutput {
    Table,
    Json,
}

#[derive(Debug, serde::Serialize)]
struct CheckRow {
    token: String,
    provider: &'static str,
    outcome: &'static str,
    days_until_expiry: Option<f64>,
    /// Where the expiry comes from: the vendor (`provider`) or the config.
    expiry_source: &'static str,
    reason: Option<&'static str>,
    detail: Option<String>,
    account_id: Option<String>,
    duration_seconds: f64,
}

/// `check`: probe every token once; 0 if all valid, 1 if any is not, 2 on config error.
pub async fn run_check(config_file: &Path, output: CheckOutput) -> i32 {
    let config = match Config::load(config_file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    warn_if_insecure(&config);
    let client = match HttpClient::with_options(&config.global.client) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let limit = Arc::new(Semaphore::new(config.global.max_concurrency));
    let mut set = tokio::task::JoinSet::new();
    for (i, token) in config.tokens.iter().cloned().enumerate() {
        let (client, limit) = (client.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let credential = TokenCredential::new(&token);
            let (probed, took) = probe_token(&client, &token, &credential).await;
            (i, token, probed, took)
        });
    }
    let now = unix_now();
    let mut rows = Vec::with_capacity(config.tokens.len());
    let mut panicked = 0;
    while let Some(joined) = set.join_next().await {
        let Ok((i, token, probed, took)) = joined else {
            panicked += 1;
            continue;
        };
        let outcome = probed.outcome;
        // What the vendor reported wins over the config, as on /metrics (`check` reads no
        // organization inventory).
        let (expires_at, expiry_source) = match probed.facts.expires_at {
            Some(t) => (Some(t), ExpirySource::Provider),
            None => (token.expires_at, token.expiry_source),
        };
        let (reason, detail) = match &outcome {
            Outcome::Error(e) => (Some(e.reason.as_str()), Some(e.detail.clone())),
            Outcome::Anonymous { detail } => (None, Some(detail.clone())),
            Outcome::Rejected { status } => (None, Some(format!("HTTP {status}"))),
            _ => (None, None),
        };
        rows.push((
            i,
            CheckRow {
                token: token.name.clone(),
                provider: token.provider.as_str(),
                outcome: outcome.kind().as_str(),
                days_until_expiry: expires_at
                    .map(|t| ((t as f64 - now) / 86_400.0 * 10.0).round() / 10.0),
                expiry_source: expiry_source.as_str(),
                reason,
                detail,
                account_id: outcome.account_id().map(str::to_string),
                duration_seconds: took.as_secs_f64(),
            },
        ));
    }
    rows.sort_by_key(|(i, _)| *i);
    let rows: Vec<CheckRow> = rows.into_iter().map(|(_, r)| r).collect();
    if panicked > 0 {
        eprintln!(
            "{panicked} probe(s) panicked and reached no result; that is a bug, please report it"
        );
    }
    let all_valid = panicked == 0 && rows.iter().all(|r| r.outcome == "valid");
    match output {
        CheckOutput::Json => match serde_json::to_string_pretty(&rows) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode JSON: {e}"),
        },
        CheckOutput::Table => print!("{}", check_table(&rows)),
    }
    i32::from(!all_valid)
}

fn check_table(rows: &[CheckRow]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.token.clone(),
                r.provider.to_string(),
                r.outcome.to_string(),
                r.days_until_expiry
                    .map_or_else(|| "-".to_string(), |d| format!("{d:.1}")),
                match (r.reason, &r.detail) {
                    (Some(reason), Some(d)) => format!("{reason}: {d}"),
                    (None, Some(d)) => d.clone(),
                    _ => String::new(),
                },
            ]
        })
        .collect();
    let headers = ["TOKEN", "PROVIDER", "OUTCOME", "DAYS_TO_EXPIRY", "REASON"];
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 5]| {
        let mut l = String::new();
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(headers);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

/// `demo`: the embedded simulator plus the exporter over it, one token in every state.
#[cfg(feature = "demo")]
pub async fn run_demo(listen: &[String], web: &WebConfig) -> Result<(), String> {
    let listeners = bind_all(listen).await?;
    let (config, _sim) = crate::demo::start().await?;
    let store = Arc::new(Store::new());
    let mut scheduler = Scheduler::new(store.clone(), HttpClient::new()?)?;
    scheduler.apply(&config, Spread::Within(crate::demo::FIRST_PROBES_WITHIN));
    store.record_reload(true);
    store.set_ready();
    let addr = listening(&listeners);
    tracing::info!(
        tokens = config.tokens.len(),
        listen = addr.as_str(),
        "demo started: an embedded vendor simulator (Atlassian, GitHub, GitLab) and the exporter over it; open / for the status page and /metrics for the metrics"
    );
    let state = AppState {
        store,
        metrics: Arc::new(MetricsCache::new()),
        reload: None,
    };
    let result = serve(listeners, state, web).await;
    scheduler.stop();
    result
}
