//! The rendered body, cached per state version and wall-clock second (days-until-expiry
//! moves with time), gzipped only, so a scrape storm renders once per change instead of
//! once per request; rendering runs on one dedicated thread.

use bytes::Bytes;
use prometheus::core::Collector;
use prometheus::Encoder;

use std::sync::Mutex;

use super::render::render_gzip;
use crate::state::Store;
use crate::util::unix_now;

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
    /// A body not tied to any state version (tests of the chunked path).
    #[cfg(test)]
    pub(crate) fn from_gzip(gzip: Bytes) -> Self {
        Rendered {
            config: 0,
            version: 0,
            second: 0,
            at: std::time::Instant::now(),
            gzip,
        }
    }

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

fn encode_process(p: &prometheus::process_collector::ProcessCollector, out: &mut String) {
    let mut buf = Vec::new();
    if prometheus::TextEncoder::new()
        .encode(&p.collect(), &mut buf)
        .is_ok()
    {
        out.push_str(&String::from_utf8_lossy(&buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use super::super::test_support::{probed, store_with};
    use crate::probe::Outcome;

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
        let valid = probed(Outcome::Valid { account_id: None });
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
