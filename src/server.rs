//! HTTP endpoints (README "Endpoints"). The server owns no state: it reads the [`Store`] and hands
//! reload requests to whoever owns the scheduler.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{MetricsCache, RenderError, CONTENT_TYPE};
use crate::state::{Health, Store, TokenEntry};
use crate::util::unix_now;

/// A reload request: the answer is `Err(error text)` when the new config was refused.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<MetricsCache>,
    pub reload: Option<mpsc::Sender<ReloadRequest>>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", axum::routing::post(reload))
        .with_state(state)
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let wants_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(accepts_gzip);
    let ready = s
        .metrics
        .fresh(&s.store)
        .or_else(|| s.metrics.previous_while_rendering(&s.store));
    let rendered = match ready {
        Some(r) => r,
        None => {
            let (metrics, store) = (s.metrics.clone(), s.store.clone());
            match s
                .metrics
                .on_render_thread(move || metrics.get(&store))
                .await
            {
                Ok(r) => r,
                Err(RenderError::Busy) => return busy(),
                Err(RenderError::Failed) => {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n")
                        .into_response()
                }
            }
        }
    };
    let mut resp = if wants_gzip {
        let mut r = rendered.gzip.into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        let chunks = futures_util::stream::iter(rendered.plain_chunks());
        axum::body::Body::from_stream(chunks).into_response()
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// The render queue is full: try again in a second.
fn busy() -> Response {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "busy rendering; retry\n").into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// `gzip` listed without `q=0`.
fn accepts_gzip(value: &str) -> bool {
    value.split(',').any(|part| {
        let mut it = part.split(';');
        let coding = it.next().unwrap_or("").trim();
        let refused = it.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q == 0.0)
        });
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
    })
}

async fn ready(State(s): State<AppState>) -> Response {
    if s.store.read().exporter.ready {
        (StatusCode::OK, "OK\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "config not loaded\n").into_response()
    }
}

async fn reload(State(s): State<AppState>) -> Response {
    let Some(tx) = s.reload else {
        return (
            StatusCode::NOT_FOUND,
            "reload is not available in this mode\n",
        )
            .into_response();
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    if tx.send(answer_tx).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    match answer_rx.await {
        Ok(Ok(())) => (StatusCode::OK, "config reloaded\n").into_response(),
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
    }
}

pub fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn age(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

/// Below this many days a valid token is shown as a warning, below the second as bad
/// (the same thresholds as the shipped ExpiringSoon/ExpiringCritical alerts).
const EXPIRY_WARN_DAYS: f64 = 30.0;
const EXPIRY_CRITICAL_DAYS: f64 = 7.0;

/// The state shown on the page: (css class, text).
fn display_state(e: &TokenEntry, now: f64) -> (&'static str, String) {
    let days = e.expiry().0.map(|t| (t as f64 - now) / 86_400.0);
    let expired = days.is_some_and(|d| d < 0.0);
    match e.status.health() {
        Health::Valid if expired => ("bad", "valid but past its expiry date".to_string()),
        Health::Valid if e.meta.config.revoked_at.is_some() => {
            ("bad", "revoked but still accepted".to_string())
        }
        Health::Valid => match days {
            Some(d) if d < EXPIRY_CRITICAL_DAYS => {
                ("bad", format!("valid, expires in {d:.1} days"))
            }
            Some(d) if d < EXPIRY_WARN_DAYS => ("warn", format!("valid, expires in {d:.0} days")),
            _ => ("ok", "valid".to_string()),
        },
        Health::Pending if e.status.probe_success == Some(false) => {
            ("unknown", "unknown (probe failing)".to_string())
        }
        Health::Pending => ("unknown", "pending first probe".to_string()),
        Health::Mismatch => ("warn", "identity mismatch".to_string()),
        Health::Anonymous => ("bad", "anonymous fallback".to_string()),
        Health::Rejected if expired => ("bad", "expired".to_string()),
        Health::Rejected => ("bad", "rejected".to_string()),
    }
}

fn utc(t: f64) -> String {
    chrono::DateTime::from_timestamp(t as i64, 0).map_or_else(String::new, |d| {
        d.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

/// The page is cached per configuration version and second (rendered at most once a
/// second however many clients ask), on the render thread.
async fn status_page(State(s): State<AppState>) -> Response {
    if let Some(page) = s.metrics.fresh_status_page(&s.store) {
        return Html(page).into_response();
    }
    let (metrics, store) = (s.metrics.clone(), s.store.clone());
    match s
        .metrics
        .on_render_thread(move || metrics.status_page(&store, render_status_page))
        .await
    {
        Ok(page) => Html(page).into_response(),
        Err(RenderError::Busy) => busy(),
        Err(RenderError::Failed) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response()
        }
    }
}

pub fn render_status_page(store: &Store) -> String {
    // A snapshot: probe results are written while the page renders.
    let inner = store.snapshot();
    let now = unix_now();
    let mut out = String::with_capacity(2048 + inner.tokens.len() * 400);
    out.push_str(concat!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta http-equiv=\"refresh\" content=\"30\">",
        "<title>apitoken-exporter</title><style>",
        "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d2330;background:#fafbfc}",
        "h1{font-size:1.4rem;margin:0 0 .3rem}p.sub{color:#5e6c84;margin:0 0 1.2rem}",
        "table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.08)}",
        "th,td{text-align:left;padding:.45rem .7rem;border-bottom:1px solid #e4e7ec;font-size:.92rem}",
        "th{background:#f1f3f6;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}",
        ".st{display:inline-block;padding:.1rem .5rem;border-radius:.7rem;font-weight:600;font-size:.82rem}",
        ".ok{background:#e3fcef;color:#006644}.warn{background:#fff4e0;color:#974f0c}",
        ".bad{background:#ffebe6;color:#bf2600}.unknown{background:#ebecf0;color:#42526e}",
        "code{font-size:.85rem;color:#5e6c84}a{color:#0052cc}",
        "</style></head><body>\n<h1>apitoken-exporter</h1>\n"
    ));
    let _ = writeln!(
        out,
        "<p class=\"sub\">{} token(s) watched &middot; as of {} (refreshes every 30 s) &middot; <a href=\"/metrics\">/metrics</a> &middot; <a href=\"/-/healthy\">health</a> &middot; version {}</p>",
        inner.tokens.len(),
        utc(now),
        crate::util::VERSION
    );
    crate::util::render_checkpoint();
    out.push_str("<table>\n<thead><tr><th>Token</th><th>Provider</th><th>State</th><th>Days to expiry</th><th>Last probe</th><th>Last error</th></tr></thead>\n<tbody>\n");
    for e in inner.tokens.values() {
        let (class, text) = display_state(e, now);
        out.push_str("<tr><td>");
        escape_html(e.meta.name(), &mut out);
        let _ = write!(out, "<br><code>");
        escape_html(e.meta.site(), &mut out);
        let _ = write!(
            out,
            "</code></td><td>{}</td><td><span class=\"st {class}\">",
            e.meta.provider().as_str()
        );
        escape_html(&text, &mut out);
        out.push_str("</span></td><td class=\"num\">");
        match e.expiry().0 {
            Some(t) => {
                let days = (t as f64 - now) / 86_400.0;
                let _ = write!(out, "{days:.1}");
            }
            None => out.push_str("unknown"),
        }
        out.push_str("</td><td>");
        match e.status.last_probe {
            Some(t) => {
                let _ = write!(out, "<span title=\"{}\">{}</span>", utc(t), age(now - t));
            }
            None => out.push_str("never"),
        }
        out.push_str("</td><td>");
        if let Some((reason, detail)) = &e.status.last_error {
            let _ = write!(out, "<strong>{}</strong> ", reason.as_str());
            escape_html(detail, &mut out);
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody></table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_result_is_written_while_the_status_page_renders() {
        use std::sync::{mpsc, Arc};
        use std::time::Duration;

        use crate::config::TokenConfig;
        use crate::probe::{Facts, Outcome};
        use crate::providers::atlassian::jira;
        use crate::providers::Probed;
        use crate::state::TokenMeta;

        let store = Arc::new(Store::new());
        let config = TokenConfig::for_tests("t", jira::PROVIDER);
        let g = store.set_tokens(vec![TokenMeta::new(Arc::new(config))], &|_| false)["t"];
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let s = store.clone();
        let render = std::thread::spawn(move || {
            crate::util::RENDER_HOOK.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                }));
            });
            render_status_page(&s)
        });
        entered_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the page render started");
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let s = store.clone();
        let writer = std::thread::spawn(move || {
            let valid = Probed {
                outcome: Outcome::Valid { account_id: None },
                facts: Facts::default(),
            };
            s.record("t", g, &valid, Duration::from_millis(5));
            let _ = done_tx.send(());
        });
        let written = done_rx.recv_timeout(Duration::from_secs(5));
        release_tx.send(()).unwrap();
        writer.join().unwrap();
        let page = render.join().unwrap();
        assert!(
            written.is_ok(),
            "the probe result waited for the page to finish"
        );
        assert!(
            page.contains("pending first probe"),
            "the page shows its snapshot"
        );
        assert!(render_status_page(&store).contains(">valid"));
    }

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn html_is_escaped() {
        let mut s = String::new();
        escape_html("<script>\"x\"&'", &mut s);
        assert_eq!(s, "&lt;script&gt;&quot;x&quot;&amp;&#39;");
    }
}
