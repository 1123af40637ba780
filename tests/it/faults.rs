//! Upstream fault matrix (README "How tokens are classified"): for every way an upstream can fail, the exact error
//! `reason`, the last conclusive state kept (an outage must not page "token invalid"), and
//! an exporter that stays healthy. The upstream is a raw-TCP fault server on 127.0.0.1
//! (`harness::faults`) that first answers like a healthy Jira `/myself`, then fails.

use std::time::{Duration, Instant};

use crate::harness::faults::{response, Fault, FaultServer, FAULT_EMAIL};
use crate::harness::*;

const SECRET: &str = "ATATT3xFAULTMATRIXsecret0001";
const REASONS: [&str; 7] = [
    "timeout",
    "connect",
    "tls",
    "rate_limited",
    "http_5xx",
    "bad_response",
    "credential_unavailable",
];

/// A jira token on a fault server, with the identity its valid answers carry.
fn fault_token(name: &str, site: &str) -> TokenSpec {
    TokenSpec::jira(name)
        .site(site)
        .email(FAULT_EMAIL)
        .token_env("S")
}

/// One exporter probing each `(token, site)` every second with `timeout`.
fn exporter(tokens: &[(&str, String)], timeout: &str) -> Exporter {
    exporter_with(
        tokens.iter().map(|(name, site)| fault_token(name, site)),
        timeout,
    )
}

/// One exporter probing `tokens` (every second unless a token says otherwise).
fn exporter_with(tokens: impl IntoIterator<Item = TokenSpec>, timeout: &str) -> Exporter {
    let config = ConfigBuilder::new()
        .global("probe_interval", "1s")
        .global("probe_timeout", timeout)
        .tokens(tokens);
    Exporter::start(&config.yaml(), &[("S", SECRET)])
}

/// Waits for the `reason` error on `token`, then checks the whole contract: exactly that
/// reason, probe_success 0, the conclusive state kept (`kept`) or still absent, and an
/// exporter that still answers `/-/healthy` and `/metrics`.
async fn assert_fault(e: &Exporter, token: &str, reason: &str, kept: bool) -> Metrics {
    let m = e
        .wait_for(
            Duration::from_secs(20),
            &format!("{token}: {reason}"),
            |m| m.errors(token, reason) >= 1.0,
        )
        .await;
    for other in REASONS.iter().filter(|r| **r != reason) {
        assert_eq!(
            m.errors(token, other),
            0.0,
            "{token}: expected only {reason}, also got {other}:\n{}",
            m.text()
        );
    }
    assert_eq!(
        m.value("apitoken_probe_success", &[("token", token)]),
        Some(0.0),
        "{}",
        m.text()
    );
    assert!(m.probes(token, "error") >= 1.0);
    if kept {
        assert!(m.probes(token, "valid") >= 1.0, "{}", m.text());
        assert_eq!(
            m.value("apitoken_valid", &[("token", token)]),
            Some(1.0),
            "{}",
            m.text()
        );
        assert_eq!(
            m.value("apitoken_anonymous_fallback", &[("token", token)]),
            Some(0.0)
        );
        assert_eq!(
            m.value("apitoken_identity_mismatch", &[("token", token)]),
            Some(0.0)
        );
    } else {
        // No conclusive probe yet: the conclusive gauges stay absent.
        for family in [
            "apitoken_valid",
            "apitoken_anonymous_fallback",
            "apitoken_identity_mismatch",
        ] {
            m.assert_absent(family, &[("token", token)]);
        }
    }
    assert_eq!(e.get("/-/healthy").await.0, 200);
    assert_eq!(e.get("/").await.0, 200);
    m
}

/// A fault server that answers one valid `/myself`, then `fault`; one token `t` on it.
async fn one_valid_then(fault: Fault, timeout: &str) -> (FaultServer, Exporter) {
    let server = FaultServer::start(1, fault).await;
    let e = exporter(&[("t", server.http_url())], timeout);
    (server, e)
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_refused_is_connect_and_keeps_state() {
    let (_s, e) = one_valid_then(Fault::Refuse, "2s").await;
    assert_fault(&e, "t", "connect", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_mid_response_is_connect_and_keeps_state() {
    let (_s, e) = one_valid_then(Fault::ResetMidResponse, "2s").await;
    assert_fault(&e, "t", "connect", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_failures_are_tls() {
    // A self-signed certificate, and https:// to a plain-HTTP server. No earlier valid
    // answer is possible on the same URL, so the state must stay absent (not 0).
    let tls = FaultServer::start_self_signed_tls().await;
    let plain = FaultServer::start(usize::MAX, Fault::Refuse).await;
    let e = exporter(
        &[
            ("selfsigned", tls.https_url()),
            ("plain", plain.https_url()),
        ],
        "2s",
    );
    assert_fault(&e, "selfsigned", "tls", false).await;
    assert_fault(&e, "plain", "tls", false).await;
    assert_eq!(
        tls.request_count(),
        0,
        "a request went over an untrusted TLS"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_failure_is_connect() {
    // `.invalid` never resolves (RFC 6761); the lookup fails locally.
    let e = exporter(&[("t", "https://nonexistent.invalid".to_string())], "5s");
    assert_fault(&e, "t", "connect", false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_server_is_timeout_and_keeps_state() {
    let (_s, e) = one_valid_then(Fault::Silence, "1s").await;
    let m = assert_fault(&e, "t", "timeout", true).await;
    let took = m
        .value("apitoken_probe_duration_seconds", &[("token", "t")])
        .unwrap();
    assert!((0.9..3.0).contains(&took), "probe took {took}s");
}

#[tokio::test(flavor = "multi_thread")]
async fn body_trickled_past_the_timeout_is_timeout_and_keeps_state() {
    let (_s, e) = one_valid_then(
        Fault::Trickle {
            every: Duration::from_millis(200),
        },
        "1s",
    )
    .await;
    assert_fault(&e, "t", "timeout", true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_error_storm_is_http_5xx_and_keeps_state() {
    let mut servers = Vec::new();
    let mut tokens = Vec::new();
    for status in [
        "500 Internal Server Error",
        "502 Bad Gateway",
        "503 Service Unavailable",
        "504 Gateway Timeout",
    ] {
        let body = "<html>upstream is down</html>";
        let s = FaultServer::start(1, Fault::Raw(response(status, &[], body))).await;
        tokens.push((status[..3].to_string(), s.http_url()));
        servers.push(s);
    }
    let refs: Vec<(&str, String)> = tokens
        .iter()
        .map(|(n, u)| (n.as_str(), u.clone()))
        .collect();
    let e = exporter(&refs, "2s");
    for (name, _) in &tokens {
        assert_fault(&e, name, "http_5xx", true).await;
    }
    // A storm: the state survives several consecutive failures.
    let m = e
        .wait_for(Duration::from_secs(10), "three 5xx each", |m| {
            tokens.iter().all(|(n, _)| m.errors(n, "http_5xx") >= 3.0)
        })
        .await;
    for (name, _) in &tokens {
        assert_eq!(m.value("apitoken_valid", &[("token", name)]), Some(1.0));
    }
}

/// Gaps between consecutive requests a fault server saw, from its `from`-th request on.
fn gaps(server: &FaultServer, from: usize) -> Vec<f64> {
    let r = server.requests();
    r.windows(2)
        .skip(from)
        .map(|w| w[1].at.duration_since(w[0].at).as_secs_f64())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_in_every_retry_after_form_backs_off_and_keeps_probing() {
    let started = Instant::now();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(7));
    // Negative and garbage values clamp to the 1 s minimum, which must not shorten the
    // interval: those two probe every 3 s, so probing every second would show.
    let cases: [(&str, String, &str); 5] = [
        ("seconds", "3".into(), "1s"),
        ("date", date, "1s"),
        ("huge", "9223372036854775807".into(), "1s"),
        ("negative", "-5".into(), "3s"),
        ("garbage", "soon, maybe".into(), "3s"),
    ];
    let mut servers = Vec::new();
    for (_, value, _) in &cases {
        let header = format!("Retry-After: {value}");
        let raw = response("429 Too Many Requests", &[&header], "{}");
        servers.push(FaultServer::start(1, Fault::Raw(raw)).await);
    }
    let e = exporter_with(
        cases
            .iter()
            .zip(&servers)
            .map(|((n, _, every), s)| fault_token(n, &s.http_url()).probe_interval(every)),
        "2s",
    );
    for (name, _, _) in &cases {
        assert_fault(&e, name, "rate_limited", true).await;
    }
    // Until every form has come round again (request 0 is the valid answer, 1 the first
    // 429): seconds twice more, date once after its date, negative and garbage 3 times.
    eventually(
        Duration::from_secs(30),
        "every Retry-After form probed again",
        || {
            servers[0].request_count() >= 4
                && servers[1].request_count() >= 3
                && servers[3].request_count() >= 5
                && servers[4].request_count() >= 5
        },
    )
    .await;
    let m = e.scrape().await;
    let interval = |n: &str| {
        m.value("apitoken_probe_interval_seconds", &[("token", n)])
            .unwrap()
    };

    // Request 0 is the valid answer, request 1 the first 429; gaps from the 429 on.
    let g = gaps(&servers[0], 1);
    assert!(g.len() >= 2, "seconds: probing stalled: {g:?}");
    assert!(
        g.iter().all(|&x| x >= 2.9),
        "seconds: Retry-After 3 not honoured: {g:?}"
    );

    let date_reqs = servers[1].requests();
    let after_first_429: Vec<f64> = date_reqs
        .iter()
        .skip(2)
        .map(|r| r.at.duration_since(started).as_secs_f64())
        .collect();
    assert!(
        !after_first_429.is_empty(),
        "date: no probe after the date passed (stalled)"
    );
    // The date is 7 s after start, at 1 s resolution: nothing before 6 s.
    assert!(
        after_first_429[0] >= 6.0,
        "date: probed before the Retry-After date: {after_first_429:?}"
    );

    // Long.MAX seconds is clamped to 1 h: a long wait, but a finite one.
    assert_eq!(servers[2].request_count(), 2, "huge: probed again too soon");
    assert_eq!(
        interval("huge"),
        3600.0,
        "huge Retry-After must clamp to 1 h"
    );

    for (i, name) in [(3, "negative"), (4, "garbage")] {
        let g = gaps(&servers[i], 1);
        assert!(g.len() >= 3, "{name}: probing stalled: {g:?}");
        // The fixed cadence may catch up after a late probe, but never every second.
        assert!(
            g.iter().all(|&x| x >= 2.5),
            "{name}: the 1 s minimum replaced the 3 s interval: {g:?}"
        );
        assert_eq!(interval(name), 3.0, "{name}: not the configured interval");
    }
    assert_eq!(e.get("/-/healthy").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_headers_are_bad_response_and_keep_state() {
    let body = r#"{"accountId":"acc","emailAddress":"svc@acme.example"}"#;
    let with_head = |extra: &[u8]| {
        let mut raw = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n".to_vec();
        raw.extend_from_slice(extra);
        raw.extend_from_slice(
            format!(
                "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        raw
    };
    // Invalid UTF-8 (and invalid token bytes) in a header name.
    let bad_name = with_head(b"X-\xff\xfeBroken: yes\r\n");
    // A 512 KiB header block in one header, and 120 KB over 200 headers.
    let one_huge = with_head(format!("X-Huge: {}\r\n", "a".repeat(512 * 1024)).as_bytes());
    let many: String = (0..200)
        .map(|i| format!("X-Many-{i}: {}\r\n", "b".repeat(600)))
        .collect();
    let many = with_head(many.as_bytes());
    let mut servers = Vec::new();
    for raw in [bad_name, one_huge, many] {
        servers.push(FaultServer::start(1, Fault::Raw(raw)).await);
    }
    let names = ["badname", "hugeheader", "manyheaders"];
    let tokens: Vec<(&str, String)> = names
        .iter()
        .zip(&servers)
        .map(|(n, s)| (*n, s.http_url()))
        .collect();
    let e = exporter(&tokens, "2s");
    for name in names {
        assert_fault(&e, name, "bad_response", true).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_in_a_header_value_is_ignored_not_fatal() {
    // obs-text bytes in a value are legal HTTP/1.1; the header is unreadable, so it counts
    // as absent, and the (valid) answer stands.
    let body = r#"{"accountId":"acc","emailAddress":"svc@acme.example"}"#;
    let mut raw =
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Seraph-LoginReason: \xff\xfe\r\n"
            .to_vec();
    raw.extend_from_slice(
        format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let server = FaultServer::start(0, Fault::Raw(raw)).await;
    let e = exporter(&[("t", server.http_url())], "2s");
    let m = e
        .wait_for(Duration::from_secs(10), "two probes", |m| {
            m.probes("t", "valid") >= 2.0
        })
        .await;
    assert_eq!(m.value("apitoken_valid", &[("token", "t")]), Some(1.0));
    assert_eq!(m.probes("t", "error"), 0.0, "{}", m.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_or_garbage_json_is_bad_response_and_keeps_state() {
    let ct = "Content-Type: application/json";
    let truncated = response("200 OK", &[ct], r#"{"accountId":"acc","emailAdd"#);
    let garbage = response("200 OK", &[ct], "\u{1}\u{2}not json at all }{");
    let s1 = FaultServer::start(1, Fault::Raw(truncated)).await;
    let s2 = FaultServer::start(1, Fault::Raw(garbage)).await;
    let e = exporter(
        &[("truncated", s1.http_url()), ("garbage", s2.http_url())],
        "2s",
    );
    assert_fault(&e, "truncated", "bad_response", true).await;
    assert_fault(&e, "garbage", "bad_response", true).await;
}

/// Peak resident set size of a process, from `/proc/<pid>/status`, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_megabyte_body_is_bad_response_without_buffering_it() {
    let (server, e) = one_valid_then(
        Fault::Endless {
            bytes: 50 * 1024 * 1024,
        },
        "5s",
    )
    .await;
    e.wait_for(Duration::from_secs(10), "first valid probe", |m| {
        m.value("apitoken_valid", &[("token", "t")]) == Some(1.0)
    })
    .await;
    let before = vm_hwm_kib(e.pid());
    assert_fault(&e, "t", "bad_response", true).await;
    let m = e
        .wait_for(Duration::from_secs(10), "three oversized bodies", |m| {
            m.errors("t", "bad_response") >= 3.0
        })
        .await;
    let after = vm_hwm_kib(e.pid());
    let grew_mib = (after.saturating_sub(before)) as f64 / 1024.0;
    println!("50 MB body: VmHWM {before} KiB -> {after} KiB (+{grew_mib:.1} MiB)");
    assert!(
        grew_mib < 16.0,
        "peak RSS grew by {grew_mib:.1} MiB reading 50 MB bodies (cap is 1 MiB)"
    );
    assert!(server.request_count() >= 4);
    assert_eq!(m.value("apitoken_exporter_tokens", &[]), Some(1.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_bad_response_and_never_followed() {
    // Another host (127.0.0.2 is loopback too) that must never see a request.
    let elsewhere = FaultServer::start_on("127.0.0.2:0", usize::MAX, Fault::Refuse).await;
    let away = format!("http://{}/rest/api/3/myself", elsewhere.addr);
    let to_self = FaultServer::start(1, Fault::RedirectToSelf).await;
    let to_other = FaultServer::start(1, Fault::RedirectTo(away)).await;
    let e = exporter(
        &[("loop", to_self.http_url()), ("away", to_other.http_url())],
        "2s",
    );
    assert_fault(&e, "loop", "bad_response", true).await;
    let m = assert_fault(&e, "away", "bad_response", true).await;
    // Not followed: one request per probe (the valid one, then one per 302).
    let probes = m.probes("loop", "valid") + m.probes("loop", "error");
    let seen = to_self.request_count() as f64;
    assert!(
        seen <= probes + 1.0,
        "redirect loop followed: {seen} requests for {probes} probes"
    );
    assert_eq!(
        elsewhere.request_count(),
        0,
        "credentials went to another host"
    );
    assert!(to_other.requests().iter().all(|r| r.has_authorization));
    // Every request the loop server saw is the probe itself, never a followed Location.
    for r in to_self.requests() {
        assert!(
            r.request_line.starts_with("GET /rest/api/3/myself "),
            "unexpected request: {}",
            r.request_line
        );
    }
}
