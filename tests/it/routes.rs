//! What each endpoint answers, tested in-process on `server::router` (README
//! "Endpoints"): status codes, content type and gzip negotiation of `/metrics`, the
//! reload endpoint's answers, and the status page's HTML escaping. The binary's own
//! behaviour (start-up, signals, reload from a file, TLS) is tested in `cli`,
//! `webconfig` and the other whole-binary suites.

use std::io::Read as _;
use std::time::Duration;

use apitoken_exporter::metrics::CONTENT_TYPE;
use apitoken_exporter::probe::{ErrorReason, Outcome, ProbeError};
use apitoken_exporter::providers::Probed;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio::sync::mpsc;

use crate::harness::inproc::{token_config, App};
use crate::harness::Metrics;

#[tokio::test]
async fn healthy_answers_200_ok() {
    let r = App::new().get("/-/healthy", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "OK\n");
}

#[tokio::test]
async fn ready_is_503_until_the_config_is_loaded_then_200() {
    let app = App::new();
    let r = app.get("/-/ready", &[]).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.text(), "config not loaded\n");
    app.store.set_ready();
    let r = app.get("/-/ready", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "OK\n");
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let app = App::new();
    for path in ["/nope", "/metrics/extra", "/-/unknown", "/-/healthy/x"] {
        assert_eq!(
            app.get(path, &[]).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn reload_answers_405_to_get_and_404_without_a_reload_loop() {
    let app = App::new();
    assert_eq!(
        app.get("/-/reload", &[]).await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    let r = app.send(post("/-/reload")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.text(), "reload is not available in this mode\n");
}

fn post(path: &str) -> Request<Body> {
    Request::post(path).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn reload_answers_200_500_with_the_error_or_503_as_the_reload_loop_says() {
    let (tx, mut rx) = mpsc::channel(4);
    let app = App::with_reload(Some(tx));
    // The test plays the reload loop: accept, refuse with a message, then go away.
    let answers = tokio::spawn(async move {
        let ok = rx.recv().await.unwrap();
        ok.send(Ok(())).unwrap();
        let refused = rx.recv().await.unwrap();
        refused
            .send(Err("config.yaml: tokens[0]: <bad> & \"worse\"".into()))
            .unwrap();
        drop(rx.recv().await.unwrap()); // a request whose answer never comes
    });
    let r = app.send(post("/-/reload")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::OK, "config reloaded\n".into())
    );
    let r = app.send(post("/-/reload")).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text(), "config.yaml: tokens[0]: <bad> & \"worse\"\n");
    let r = app.send(post("/-/reload")).await;
    assert_eq!(
        (r.status, r.text()),
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".into())
    );
    answers.await.unwrap();
    // The loop is gone: the request cannot even be handed over.
    let r = app.send(post("/-/reload")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// An app with two tokens, one probed valid, one failing, so the body has every kind of
/// family.
fn app_with_tokens() -> App {
    let app = App::new();
    let generations = app.set_tokens(vec![token_config("ok"), token_config("failing")]);
    let valid = Probed::from(Outcome::Valid {
        account_id: Some("acc".into()),
    });
    app.store
        .record("ok", generations["ok"], &valid, Duration::from_millis(3));
    let error = Probed::from(Outcome::Error(ProbeError::new(
        ErrorReason::Http5xx,
        "HTTP 503",
    )));
    app.store.record(
        "failing",
        generations["failing"],
        &error,
        Duration::from_millis(5),
    );
    app.store.set_ready();
    app
}

/// The body without the `process_*` families, which are sampled at each render.
fn without_process(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("process_") && !l.contains(" process_"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("a gzip body");
    out
}

#[tokio::test]
async fn metrics_is_the_text_format_with_its_content_type_and_vary() {
    let app = app_with_tokens();
    let r = app.get("/metrics", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("content-encoding"), None);
    let m = Metrics::parse(r.text()).unwrap();
    assert_eq!(m.value("apitoken_valid", &[("token", "ok")]), Some(1.0));
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", "failing")]),
        Some(0.0)
    );
    assert_eq!(m.errors("failing", "http_5xx"), 1.0);
}

#[tokio::test]
async fn metrics_is_gzipped_only_when_the_client_accepts_gzip() {
    let app = app_with_tokens();
    let plain = app.get("/metrics", &[]).await.text();
    for accept in ["gzip", "deflate, gzip;q=0.5", "*", "GZIP"] {
        let r = app.get("/metrics", &[("accept-encoding", accept)]).await;
        assert_eq!(r.status, StatusCode::OK, "{accept}");
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{accept}");
        assert_eq!(r.header("content-type"), Some(CONTENT_TYPE), "{accept}");
        assert_eq!(&r.body[..2], &[0x1f, 0x8b], "{accept}: gzip magic");
        // The same body, compressed (process_* is sampled anew at each render).
        assert_eq!(
            without_process(&gunzip(&r.body)),
            without_process(&plain),
            "{accept}"
        );
    }
    for accept in ["gzip;q=0", "identity", "deflate", "br"] {
        let r = app.get("/metrics", &[("accept-encoding", accept)]).await;
        assert_eq!(r.header("content-encoding"), None, "{accept}");
        assert!(r.text().starts_with("# HELP "), "{accept}: {}", r.text());
    }
}

#[tokio::test]
async fn status_page_escapes_names_and_error_details() {
    let app = App::new();
    let name = "<script>alert(\"n\")</script>&'";
    let generations = app.set_tokens(vec![token_config(name)]);
    let detail = "<img src=x onerror=alert('d')> & \"quoted\"";
    let error = Probed::from(Outcome::Error(ProbeError::new(
        ErrorReason::BadResponse,
        detail,
    )));
    app.store
        .record(name, generations[name], &error, Duration::ZERO);
    let r = app.get("/", &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let page = r.text();
    assert!(page.contains("href=\"/metrics\""), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(&quot;n&quot;)&lt;/script&gt;&amp;&#39;"),
        "{page}"
    );
    assert!(
        page.contains("&lt;img src=x onerror=alert(&#39;d&#39;)&gt; &amp; &quot;quoted&quot;"),
        "{page}"
    );
    assert!(!page.contains("<script"), "unescaped name:\n{page}");
    assert!(!page.contains("<img"), "unescaped error detail:\n{page}");
}
