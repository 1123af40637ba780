//! Renders the [`Store`] as Prometheus text (format 0.0.4). No I/O: scrapes read cached
//! state and never trigger probes. The body is cached per state version and wall-clock
//! second (days-until-expiry moves with time), plain and gzipped, so a scrape storm
//! renders once per change instead of once per request.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use prometheus::core::Collector;
use prometheus::Encoder;

use crate::inventory::ListedToken;
use crate::provider::{ErrorReason, OutcomeKind};
use crate::state::{unix_now, Inner, Store, TokenEntry};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Longest label value taken from an upstream answer (account ids are ~24-128 chars); a
/// hostile or broken server must not be able to blow up our series.
pub const MAX_UPSTREAM_LABEL: usize = 256;

/// The first `max_chars` characters of `s` (never splits a character).
pub fn clip(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

const SCRAPE_NOTE: &str = "(cached state; scrapes never trigger probes)";

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("APITOKEN_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Escapes a label value per the text exposition format: `\`, `"` and newline.
pub fn escape_label(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
}

const fn family(name: &'static str, kind: &'static str, help: &'static str) -> Family {
    Family { name, kind, help }
}

const VALID: Family = family(
    "apitoken_valid",
    "gauge",
    "1 if the last conclusive probe authenticated the token",
);
const ANONYMOUS: Family = family(
    "apitoken_anonymous_fallback",
    "gauge",
    "1 if the site silently served the token as anonymous",
);
const MISMATCH: Family = family(
    "apitoken_identity_mismatch",
    "gauge",
    "1 if the token authenticated as an unexpected account",
);
const EXPIRY: Family = family(
    "apitoken_expiry_timestamp_seconds",
    "gauge",
    "Unix time the token expires (absent when unknown)",
);
const DAYS: Family = family(
    "apitoken_days_until_expiry",
    "gauge",
    "Days until the token expires, computed at scrape time; negative once expired",
);
const REVOKED: Family = family(
    "apitoken_revoked_timestamp_seconds",
    "gauge",
    "revoked_at from the config: the token was deliberately revoked and must stop working",
);
const SUCCESS: Family = family(
    "apitoken_probe_success",
    "gauge",
    "1 if the last probe reached a conclusive answer",
);
const LAST_PROBE: Family = family(
    "apitoken_last_probe_timestamp_seconds",
    "gauge",
    "Unix time of the last finished probe",
);
const LAST_VALID: Family = family(
    "apitoken_last_valid_timestamp_seconds",
    "gauge",
    "Unix time the token was last seen valid",
);
const DURATION: Family = family(
    "apitoken_probe_duration_seconds",
    "gauge",
    "Duration of the last probe in seconds",
);
const INTERVAL: Family = family(
    "apitoken_probe_interval_seconds",
    "gauge",
    "Effective probe interval in seconds: the configured interval, or longer while the server asked to back off (Retry-After)",
);
const PROBES: Family = family(
    "apitoken_probes_total",
    "counter",
    "Probes by result: valid, mismatch, anonymous, rejected, error",
);
const ERRORS: Family = family(
    "apitoken_probe_errors_total",
    "counter",
    "Inconclusive probes by reason",
);
const INFO: Family = family(
    "apitoken_info",
    "gauge",
    "Static information about a configured token; always 1",
);
const ORG_TOKEN_EXPIRY: Family = family(
    "apitoken_org_token_expiry_timestamp_seconds",
    "gauge",
    "Unix time a user API token listed by the organization's Admin API expires (tokens without an expiry have no series)",
);
const ORG_TOKEN_LAST_ACTIVE: Family = family(
    "apitoken_org_token_last_active_timestamp_seconds",
    "gauge",
    "Unix time a user API token listed by the organization's Admin API was last used (lastActiveAt)",
);
const ORG_KEY_EXPIRY: Family = family(
    "apitoken_org_api_key_expiry_timestamp_seconds",
    "gauge",
    "Unix time an admin API key listed by the organization's Admin API expires",
);
const ORG_SUCCESS: Family = family(
    "apitoken_org_inventory_success",
    "gauge",
    "1 if the last organization inventory fetch completed (every page of both lists); on 0 the last complete inventory is kept",
);
const ORG_LAST_SUCCESS: Family = family(
    "apitoken_org_inventory_last_success_timestamp_seconds",
    "gauge",
    "Unix time the organization inventory last completed",
);

/// How stale a cached body may be when only probe results changed.
pub const MAX_STALENESS: std::time::Duration = std::time::Duration::from_secs(1);

/// Work for the render thread.
pub type RenderJob = Box<dyn FnOnce() + Send>;

/// Caches the rendered body.
#[derive(Default)]
pub struct MetricsCache {
    cached: Mutex<Option<Rendered>>,
    /// Held by the one scrape that renders; the others serve the previous body meanwhile.
    rendering: Mutex<()>,
    process: Option<prometheus::process_collector::ProcessCollector>,
    /// The one thread that renders (started on first use; ends when the cache is dropped).
    render_thread: std::sync::OnceLock<Option<std::sync::mpsc::Sender<RenderJob>>>,
}

#[derive(Clone)]
pub struct Rendered {
    config: u64,
    version: u64,
    second: u64,
    at: std::time::Instant,
    /// Only the compressed body is kept: Prometheus always asks for gzip, and holding the
    /// plain text too would double the memory (12 MB at 10,000 tokens).
    pub gzip: Bytes,
}

impl MetricsCache {
    pub fn new() -> Self {
        Self {
            cached: Mutex::new(None),
            rendering: Mutex::new(()),
            process: Some(prometheus::process_collector::ProcessCollector::for_self()),
            render_thread: std::sync::OnceLock::new(),
        }
    }

    /// Runs `job` on the cache's render thread and returns its result. Rendering thousands
    /// of tokens takes milliseconds, so it stays off the async workers; and it always runs
    /// on the same thread, so its multi-megabyte buffers are reused from one allocator
    /// arena instead of being spread over every blocking-pool thread that happened to
    /// serve a scrape (which grew the resident size several-fold under a scrape storm).
    /// `None` if the thread could not be started or has gone.
    pub async fn on_render_thread<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let sender = self.render_thread.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<RenderJob>();
            std::thread::Builder::new()
                .name("metrics-render".to_string())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        // A panicking render answers that one scrape with an error (its
                        // reply is dropped) and must not take the thread down with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .ok()
                .map(|_| tx)
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        sender
            .as_ref()?
            .send(Box::new(move || {
                let _ = tx.send(job());
            }))
            .ok()?;
        rx.await.ok()
    }

    /// The previous body while another scrape is rendering, if the configuration has not
    /// changed since (so a scrape storm never queues behind a render).
    pub fn previous_while_rendering(&self, store: &Store) -> Option<Rendered> {
        if self.rendering.try_lock().is_ok() {
            return None;
        }
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|r| r.config == store.config_version())
            .cloned()
    }

    /// The current body. A configuration change (reload, token set) re-renders at once;
    /// probe results re-render at most once per [`MAX_STALENESS`], so with thousands of
    /// tokens probing every second a scrape storm still renders about once a second.
    /// Renders are serialized; a scrape that should not wait behind one asks
    /// [`MetricsCache::previous_while_rendering`] first (the server does).
    pub fn get(&self, store: &Store) -> Rendered {
        if let Some(r) = self.fresh(store) {
            return r;
        }
        let _rendering = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        // Another scrape may have rendered while we waited for the lock.
        if let Some(r) = self.fresh(store) {
            return r;
        }
        let r = self.render(store);
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
        r
    }

    /// The cached body if it is still current (cheap; never renders).
    pub fn fresh(&self, store: &Store) -> Option<Rendered> {
        let now = unix_now() as u64;
        let (config, version) = (store.config_version(), store.version());
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        cached
            .as_ref()
            .filter(|r| {
                r.config == config
                    && if r.version == version {
                        r.second == now
                    } else {
                        r.at.elapsed() < MAX_STALENESS
                    }
            })
            .cloned()
    }

    fn render(&self, store: &Store) -> Rendered {
        let now = unix_now();
        // Versions are read before the state, so a change during rendering makes the next
        // scrape re-render rather than being hidden behind a newer version number.
        let (config, version) = (store.config_version(), store.version());
        // Process metrics read /proc: collected before the state lock is taken.
        let mut process = String::new();
        if let Some(p) = &self.process {
            encode_process(p, &mut process);
        }
        let gzip = render_gzip(&store.read(), now, |out| out.push_str(&process));
        Rendered {
            config,
            version,
            second: now as u64,
            at: std::time::Instant::now(),
            gzip,
        }
    }
}

impl Rendered {
    /// The uncompressed body in chunks of 64 KiB, decompressed as they are sent: a client
    /// that does not accept gzip costs no 10 MB buffer at 10,000 tokens.
    pub fn plain_chunks(
        &self,
    ) -> impl Iterator<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        use bytes::Buf as _;
        use std::io::Read;
        let mut decoder = flate2::read::GzDecoder::new(self.gzip.clone().reader());
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            let mut chunk = Vec::with_capacity(64 * 1024);
            match decoder.by_ref().take(64 * 1024).read_to_end(&mut chunk) {
                Ok(0) => {
                    done = true;
                    None
                }
                Ok(_) => Some(Ok(Bytes::from(chunk))),
                Err(e) => {
                    done = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// The whole uncompressed body (tests).
    #[cfg(test)]
    pub fn plain(&self) -> Bytes {
        let mut out = Vec::new();
        for chunk in self.plain_chunks() {
            out.extend_from_slice(&chunk.unwrap_or_default());
        }
        Bytes::from(out)
    }
}

fn gzip(data: &[u8]) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(data.len() / 8), Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    Bytes::from(enc.finish().unwrap_or_default())
}

fn encode_process(p: &prometheus::process_collector::ProcessCollector, out: &mut String) {
    let mut buf = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&p.collect(), &mut buf)
        .is_ok()
    {
        out.push_str(&String::from_utf8_lossy(&buf));
    }
}

/// Writes `{token="…",provider="…"` (unterminated, so callers may add labels).
fn token_labels(out: &mut String, e: &TokenEntry) {
    out.push_str("{token=\"");
    escape_label(&e.meta.name, out);
    out.push_str("\",provider=\"");
    out.push_str(e.meta.provider.as_str());
    out.push('"');
}

fn header(out: &mut String, f: &Family) {
    let _ = writeln!(out, "# HELP {} {} {SCRAPE_NOTE}", f.name, f.help);
    let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
}

/// Writes one family: a sample for every token where `value` returns Some.
fn gauge_family(
    out: &mut Out,
    inner: &Inner,
    f: &Family,
    value: impl Fn(&TokenEntry) -> Option<f64>,
) {
    let mut wrote_header = false;
    for e in inner.tokens.values() {
        let Some(v) = value(e) else { continue };
        if !wrote_header {
            header(out, f);
            wrote_header = true;
        }
        out.push_str(f.name);
        token_labels(out, e);
        out.push_str("} ");
        push_value(out, v);
        out.push('\n');
        out.sample_done();
    }
}

fn push_value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
    } else {
        let _ = write!(out, "{v}");
    }
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Where the exposition is written: a text buffer that, when compressing, is handed to
/// the gzip encoder every [`Out::CHUNK`] bytes, so rendering 10,000 tokens holds ~64 KiB
/// of text at a time instead of the whole 9 MB body.
pub struct Out {
    buf: String,
    gz: Option<GzEncoder<Vec<u8>>>,
}

impl Out {
    const CHUNK: usize = 64 * 1024;

    fn plain(capacity: usize) -> Self {
        Self {
            buf: String::with_capacity(capacity),
            gz: None,
        }
    }

    fn gzip() -> Self {
        Self {
            buf: String::with_capacity(Self::CHUNK + 4096),
            gz: Some(GzEncoder::new(Vec::new(), Compression::fast())),
        }
    }

    /// Call after each sample: compresses the buffer once it is a chunk long.
    fn sample_done(&mut self) {
        if self.buf.len() >= Self::CHUNK {
            if let Some(gz) = &mut self.gz {
                // Writing into a Vec cannot fail.
                let _ = gz.write_all(self.buf.as_bytes());
                self.buf.clear();
            }
        }
    }

    fn finish_gzip(mut self) -> Bytes {
        match self.gz.take() {
            Some(mut gz) => {
                let _ = gz.write_all(self.buf.as_bytes());
                Bytes::from(gz.finish().unwrap_or_default())
            }
            None => gzip(self.buf.as_bytes()),
        }
    }
}

impl std::ops::Deref for Out {
    type Target = String;
    fn deref(&self) -> &String {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut String {
        &mut self.buf
    }
}

/// The full exposition for the token families and the exporter's own metrics.
pub fn render(inner: &Inner, now: f64) -> String {
    let mut out = Out::plain(512 + inner.tokens.len() * 1000);
    render_into(&mut out, inner, now);
    out.buf
}

/// The same exposition, gzipped while it is written, with `extra` appended (process
/// metrics).
pub fn render_gzip(inner: &Inner, now: f64, extra: impl FnOnce(&mut String)) -> Bytes {
    let mut out = Out::gzip();
    render_into(&mut out, inner, now);
    extra(&mut out);
    out.finish_gzip()
}

fn render_into(out: &mut Out, inner: &Inner, now: f64) {
    let conclusive = |e: &TokenEntry| e.status.conclusive;
    gauge_family(out, inner, &VALID, |e| {
        conclusive(e).map(|c| bool_value(c.valid))
    });
    gauge_family(out, inner, &ANONYMOUS, |e| {
        conclusive(e).map(|c| bool_value(c.anonymous_fallback))
    });
    gauge_family(out, inner, &MISMATCH, |e| {
        conclusive(e).map(|c| bool_value(c.identity_mismatch))
    });
    gauge_family(out, inner, &EXPIRY, |e| e.meta.expires_at.map(|t| t as f64));
    gauge_family(out, inner, &DAYS, |e| {
        e.meta
            .expires_at
            .map(|t| ((t as f64 - now) / 86_400.0 * 1000.0).round() / 1000.0)
    });
    gauge_family(out, inner, &REVOKED, |e| {
        e.meta.revoked_at.map(|t| t as f64)
    });
    gauge_family(out, inner, &SUCCESS, |e| {
        e.status.probe_success.map(bool_value)
    });
    gauge_family(out, inner, &LAST_PROBE, |e| e.status.last_probe);
    gauge_family(out, inner, &LAST_VALID, |e| e.status.last_valid);
    gauge_family(out, inner, &DURATION, |e| e.status.last_duration);
    gauge_family(out, inner, &INTERVAL, |e| {
        Some(
            e.status
                .effective_interval
                .unwrap_or(e.meta.probe_interval.as_secs_f64()),
        )
    });

    if !inner.tokens.is_empty() {
        // Only results that happened: five zero-initialised series per token would be a
        // third of the body at 10,000 tokens; alerts use the gauges, not these counters.
        header(out, &PROBES);
        for e in inner.tokens.values() {
            for kind in OutcomeKind::ALL {
                let n = e.status.results[kind.index()];
                if n == 0 {
                    continue;
                }
                out.push_str(PROBES.name);
                token_labels(out, e);
                let _ = writeln!(out, ",result=\"{}\"}} {n}", kind.as_str());
            }
            out.sample_done();
        }
        // Only reasons that happened: initialising 7 reasons x N tokens would dominate the
        // body; alerts use probe_success, not these counters.
        let any_errors = inner
            .tokens
            .values()
            .any(|e| e.status.errors.iter().any(|&n| n > 0));
        if any_errors {
            header(out, &ERRORS);
            for e in inner.tokens.values() {
                for reason in ErrorReason::ALL {
                    let n = e.status.errors[reason.index()];
                    if n == 0 {
                        continue;
                    }
                    out.push_str(ERRORS.name);
                    token_labels(out, e);
                    let _ = writeln!(out, ",reason=\"{}\"}} {n}", reason.as_str());
                }
                out.sample_done();
            }
        }
        header(out, &INFO);
        for e in inner.tokens.values() {
            out.push_str(INFO.name);
            token_labels(out, e);
            out.push_str(",site=\"");
            escape_label(&e.meta.site, out);
            out.push('"');
            if let Some(id) = &e.status.account_id {
                out.push_str(",account_id=\"");
                escape_label(clip(id, MAX_UPSTREAM_LABEL), out);
                out.push('"');
            }
            out.push_str(",expiry_source=\"");
            out.push_str(e.meta.expiry_source.as_str());
            out.push('"');
            for (k, v) in &e.meta.labels {
                let _ = write!(out, ",{k}=\"");
                escape_label(v, out);
                out.push('"');
            }
            out.push_str("} 1\n");
            out.sample_done();
        }
    }

    org_families(out, inner);

    let x = &inner.exporter;
    let _ = writeln!(
        out,
        "# HELP apitoken_exporter_build_info Build information; always 1\n# TYPE apitoken_exporter_build_info gauge\napitoken_exporter_build_info{{version=\"{VERSION}\",revision=\"{REVISION}\"}} 1"
    );
    let _ = writeln!(
        out,
        "# HELP apitoken_exporter_config_last_reload_successful 1 if the last config (re)load succeeded\n# TYPE apitoken_exporter_config_last_reload_successful gauge\napitoken_exporter_config_last_reload_successful {}",
        u8::from(x.last_reload_successful)
    );
    if let Some(t) = x.last_reload_success {
        out.push_str("# HELP apitoken_exporter_config_last_reload_success_timestamp_seconds Unix time of the last successful config (re)load\n# TYPE apitoken_exporter_config_last_reload_success_timestamp_seconds gauge\napitoken_exporter_config_last_reload_success_timestamp_seconds ");
        push_value(out, t.floor());
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# HELP apitoken_exporter_tokens Number of configured tokens (not counting the implicit {{org}}-admin-key tokens)\n# TYPE apitoken_exporter_tokens gauge\napitoken_exporter_tokens {}",
        inner.tokens.values().filter(|e| !e.meta.implicit).count()
    );
}

/// Writes `{name}{org="…"` plus `labels` and the value (label values escaped).
fn org_sample(out: &mut String, f: &Family, org: &str, labels: &[(&str, &str)], v: f64) {
    out.push_str(f.name);
    out.push_str("{org=\"");
    escape_label(org, out);
    out.push('"');
    for (k, val) in labels {
        let _ = write!(out, ",{k}=\"");
        escape_label(val, out);
        out.push('"');
    }
    out.push_str("} ");
    push_value(out, v);
    out.push('\n');
}

/// The organization inventory families. Entries come from the last *complete* listing.
fn org_families(out: &mut Out, inner: &Inner) {
    let listed = || {
        inner
            .orgs
            .iter()
            .filter_map(|(name, o)| o.inventory.as_ref().map(|inv| (name.as_str(), inv)))
    };
    type TokenTime = fn(&ListedToken) -> Option<i64>;
    let token_families: [(&Family, TokenTime); 2] = [
        (&ORG_TOKEN_EXPIRY, |t| t.expires_at),
        (&ORG_TOKEN_LAST_ACTIVE, |t| t.last_active_at),
    ];
    for (f, value) in token_families {
        let mut wrote_header = false;
        for (org, inv) in listed() {
            for t in inv.tokens.values() {
                let Some(v) = value(t) else { continue };
                if !std::mem::replace(&mut wrote_header, true) {
                    header(out, f);
                }
                let labels = [
                    ("token_id", t.id.as_str()),
                    ("token_label", t.label.as_str()),
                    ("account_id", t.account_id.as_deref().unwrap_or("")),
                    ("status", t.status.as_str()),
                ];
                org_sample(out, f, org, &labels, v as f64);
                out.sample_done();
            }
        }
    }
    let mut wrote_header = false;
    for (org, inv) in listed() {
        for k in inv.api_keys.values() {
            let Some(v) = k.expires_at else { continue };
            if !std::mem::replace(&mut wrote_header, true) {
                header(out, &ORG_KEY_EXPIRY);
            }
            let labels = [("key_id", k.id.as_str()), ("key_label", k.label.as_str())];
            org_sample(out, &ORG_KEY_EXPIRY, org, &labels, v as f64);
            out.sample_done();
        }
    }
    let done: Vec<(&str, bool)> = inner
        .orgs
        .iter()
        .filter_map(|(name, o)| o.success.map(|ok| (name.as_str(), ok)))
        .collect();
    if !done.is_empty() {
        header(out, &ORG_SUCCESS);
        for (org, ok) in done {
            org_sample(out, &ORG_SUCCESS, org, &[], bool_value(ok));
        }
    }
    if inner.orgs.values().any(|o| o.last_success.is_some()) {
        header(out, &ORG_LAST_SUCCESS);
        for (org, o) in &inner.orgs {
            if let Some(t) = o.last_success {
                org_sample(out, &ORG_LAST_SUCCESS, org, &[], t.floor());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::config::ExpirySource;
    use crate::provider::{Outcome, Provider};
    use crate::state::TokenMeta;

    fn store_with(name: &str, labels: &[(&str, &str)], expires_at: Option<i64>) -> Store {
        let store = Store::new();
        store.set_tokens(
            vec![TokenMeta {
                name: name.into(),
                provider: Provider::Jira,
                site: "https://acme.atlassian.net".into(),
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                expires_at,
                expiry_source: ExpirySource::Config,
                config_expiry: (expires_at, ExpirySource::Config),
                org_token_id: None,
                expected_account_id: None,
                revoked_at: None,
                probe_interval: Duration::from_secs(300),
                implicit: false,
            }],
            &|_| false,
        );
        store
    }

    #[test]
    fn label_values_are_escaped() {
        let mut s = String::new();
        escape_label("a\"b\\c\nd", &mut s);
        assert_eq!(s, "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn unknown_expiry_and_unprobed_tokens_have_no_series() {
        let store = store_with("t", &[], None);
        let text = render(&store.read(), 1_000.0);
        for absent in [
            "apitoken_valid",
            "apitoken_expiry_timestamp_seconds",
            "apitoken_days_until_expiry",
            "apitoken_probe_success",
            "apitoken_probe_errors_total",
        ] {
            assert!(!text.contains(absent), "{absent} present:\n{text}");
        }
        // counters appear with the first probe of each result, not zero-initialised
        assert!(!text.contains("apitoken_probes_total{"), "{text}");
        assert!(text.contains("expiry_source=\"config\""));
    }

    #[test]
    fn days_until_expiry_is_computed_at_render_time() {
        let store = store_with("t", &[("team", "a\"b")], Some(864_000));
        let text = render(&store.read(), 0.0);
        assert!(
            text.contains("apitoken_days_until_expiry{token=\"t\",provider=\"jira\"} 10\n"),
            "{text}"
        );
        let text = render(&store.read(), 864_000.0 + 43_200.0);
        assert!(
            text.contains("apitoken_days_until_expiry{token=\"t\",provider=\"jira\"} -0.5\n"),
            "{text}"
        );
        assert!(text.contains("team=\"a\\\"b\""), "{text}");
    }

    #[test]
    fn conclusive_outcomes_set_the_three_gauges() {
        let store = store_with("t", &[], None);
        let g = store.read().tokens["t"].generation;
        store.record(
            "t",
            g,
            &Outcome::Anonymous { detail: "x".into() },
            Duration::ZERO,
        );
        let text = render(&store.read(), 0.0);
        assert!(text.contains("apitoken_valid{token=\"t\",provider=\"jira\"} 0\n"));
        assert!(text.contains("apitoken_anonymous_fallback{token=\"t\",provider=\"jira\"} 1\n"));
        assert!(text.contains("apitoken_identity_mismatch{token=\"t\",provider=\"jira\"} 0\n"));
        assert!(text.contains("result=\"anonymous\"} 1\n"));
    }

    #[test]
    fn org_inventory_families() {
        use crate::inventory::{Inventory, ListedKey, ListedToken};
        let store = Store::new();
        let g = store.set_orgs(&["acme".into(), "later".into()], &|_| false);
        let token = |id: &str, label: &str, expires_at| ListedToken {
            id: id.into(),
            label: label.into(),
            status: "ALLOWED".into(),
            account_id: Some("acc-1".into()),
            created_at: Some(1),
            expires_at,
            last_active_at: Some(500),
        };
        let inv = Inventory {
            tokens: [
                ("t1".to_string(), token("t1", "ci \"bot\"\n", Some(1_000))),
                ("t2".to_string(), token("t2", "no expiry", None)),
            ]
            .into(),
            api_keys: [(
                "k1".to_string(),
                ListedKey {
                    id: "k1".into(),
                    label: "ops".into(),
                    created_at: None,
                    expires_at: Some(2_000),
                },
            )]
            .into(),
            pages: 2,
        };
        store.record_inventory("acme", g["acme"], Ok(inv));
        let text = render(&store.read(), 0.0);
        assert!(text.contains("# HELP apitoken_org_token_expiry_timestamp_seconds "));
        assert!(text.contains(
            "apitoken_org_token_expiry_timestamp_seconds{org=\"acme\",token_id=\"t1\",token_label=\"ci \\\"bot\\\"\\n\",account_id=\"acc-1\",status=\"ALLOWED\"} 1000\n"
        ), "{text}");
        assert!(!text
            .contains("apitoken_org_token_expiry_timestamp_seconds{org=\"acme\",token_id=\"t2\""));
        assert!(text.contains("apitoken_org_token_last_active_timestamp_seconds{org=\"acme\",token_id=\"t2\",token_label=\"no expiry\",account_id=\"acc-1\",status=\"ALLOWED\"} 500\n"));
        assert!(text.contains(
            "apitoken_org_api_key_expiry_timestamp_seconds{org=\"acme\",key_id=\"k1\",key_label=\"ops\"} 2000\n"
        ));
        assert!(text.contains("apitoken_org_inventory_success{org=\"acme\"} 1\n"));
        assert!(
            text.contains("apitoken_org_inventory_last_success_timestamp_seconds{org=\"acme\"} ")
        );
        // An organization whose first run has not finished has no series yet.
        assert!(!text.contains("org=\"later\""), "{text}");
        assert_eq!(text.matches("# TYPE apitoken_org_").count(), 5);
    }

    #[test]
    fn streamed_gzip_body_equals_the_plain_rendering() {
        // Enough tokens for many 64 KiB chunks, with probe results in every family.
        let store = store_with("base", &[("team", "platform")], None);
        let base = store.read().tokens["base"].meta.clone();
        let metas = (0..2000)
            .map(|i| TokenMeta {
                name: format!("tok-{i}"),
                expires_at: Some(1_900_000_000 + i),
                ..base.clone()
            })
            .collect();
        let generations = store.set_tokens(metas, &|_| true);
        for (name, gen) in &generations {
            let outcome = Outcome::Valid {
                account_id: Some(format!("acc-{name}")),
            };
            store.record(name, *gen, &outcome, Duration::from_millis(12));
        }
        let inner = store.read();
        let plain = render(&inner, 1_800_000_000.0);
        assert!(plain.len() > 20 * Out::CHUNK, "{} bytes", plain.len());
        let gz = render_gzip(&inner, 1_800_000_000.0, |out| out.push_str("# tail\n"));
        // Decompressed in one go, independently of the server's chunked path.
        let mut unzipped = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut unzipped)
            .expect("valid gzip");
        assert_eq!(
            String::from_utf8_lossy(&unzipped),
            format!("{plain}# tail\n")
        );
        // What a client without gzip receives: the same bytes, in chunks of at most 64 KiB.
        let mut streamed = Vec::new();
        let mut chunks = 0;
        for chunk in rendered_chunks(&gz) {
            let chunk = chunk.expect("chunk decompresses");
            assert!(!chunk.is_empty() && chunk.len() <= 64 * 1024);
            streamed.extend_from_slice(&chunk);
            chunks += 1;
        }
        assert_eq!(streamed, unzipped);
        assert!(chunks > 20, "{chunks} chunks");
    }

    fn rendered_chunks(gzip: &Bytes) -> impl Iterator<Item = Result<Bytes, std::io::Error>> {
        Rendered {
            config: 0,
            version: 0,
            second: 0,
            at: std::time::Instant::now(),
            gzip: gzip.clone(),
        }
        .plain_chunks()
    }

    #[test]
    fn cache_rerenders_on_change() {
        let store = store_with("t", &[], None);
        let cache = MetricsCache::new();
        let a = cache.get(&store);
        assert!(a
            .plain()
            .starts_with(b"# HELP apitoken_probe_interval_seconds"));
        assert!(!a.gzip.is_empty());
        store.set_tokens(vec![], &|_| false);
        let b = cache.get(&store);
        assert!(!String::from_utf8_lossy(&b.plain()).contains("token=\"t\""));
    }

    #[test]
    fn probe_results_rerender_at_most_once_per_staleness_window() {
        let store = store_with("t", &[], None);
        let cache = MetricsCache::new();
        let _ = cache.get(&store);
        let g = store.read().tokens["t"].generation;
        let valid = Outcome::Valid { account_id: None };
        store.record("t", g, &valid, Duration::ZERO);
        let cached = String::from_utf8_lossy(&cache.get(&store).plain()).into_owned();
        assert!(
            !cached.contains("apitoken_valid{"),
            "re-rendered within the window"
        );
        std::thread::sleep(MAX_STALENESS + Duration::from_millis(100));
        let fresh = String::from_utf8_lossy(&cache.get(&store).plain()).into_owned();
        assert!(
            fresh.contains("apitoken_valid{token=\"t\",provider=\"jira\"} 1"),
            "{fresh}"
        );
    }
}
