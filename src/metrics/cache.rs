//! The rendered body, cached per state version and wall-clock second (days-until-expiry
//! moves with time), gzipped only, so a scrape storm renders once per change instead of
//! once per request; rendering runs on one dedicated thread. The status page is cached
//! the same way (per configuration version and second).
//!
//! The render thread's queue is bounded ([`RENDER_QUEUE`]): a request that finds it full
//! is told [`RenderError::Busy`] at once. A queued job whose requester has gone (the
//! client disconnected or timed out) is dropped without running.

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

/// Jobs waiting for the render thread at most.
pub const RENDER_QUEUE: usize = 64;

/// Why a job did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderError {
    /// The queue is full: answer 503 and let the client retry.
    Busy,
    /// The thread could not be started, has gone, or the job panicked.
    Failed,
}

#[derive(Clone)]
struct Page {
    config: u64,
    second: u64,
    html: Bytes,
}

/// Caches the rendered body.
#[derive(Default)]
pub struct MetricsCache {
    cached: Mutex<Option<Rendered>>,
    /// Held by the one scrape that renders; the others serve the previous body meanwhile.
    rendering: Mutex<()>,
    process: Option<prometheus::process_collector::ProcessCollector>,
    /// The one thread that renders (started on first use; ends when the cache is dropped).
    render_thread: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<RenderJob>>>,
    /// The status page last rendered.
    page: Mutex<Option<Page>>,
    /// Jobs run and jobs dropped because their requester had gone (tests, figures).
    ran: std::sync::atomic::AtomicU64,
    skipped: std::sync::atomic::AtomicU64,
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
            page: Mutex::new(None),
            ran: Default::default(),
            skipped: Default::default(),
        }
    }

    /// (jobs run, jobs dropped unrun because nobody waited for them any more).
    pub fn job_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.ran.load(Relaxed), self.skipped.load(Relaxed))
    }

    /// The cached status page if it is of this configuration and second.
    pub fn fresh_status_page(&self, store: &Store) -> Option<Bytes> {
        let now = unix_now() as u64;
        let config = store.config_version();
        let page = self.page.lock().unwrap_or_else(|e| e.into_inner());
        page.as_ref()
            .filter(|p| p.config == config && p.second == now)
            .map(|p| p.html.clone())
    }

    /// The status page: the cached one if still fresh, else `render`ed and cached. Call on
    /// the render thread ([`MetricsCache::on_render_thread`]).
    pub fn status_page(&self, store: &Store, render: impl FnOnce(&Store) -> String) -> Bytes {
        if let Some(p) = self.fresh_status_page(store) {
            return p;
        }
        // Read before rendering, so a change during the render is not hidden.
        let (config, second) = (store.config_version(), unix_now() as u64);
        let html = Bytes::from(render(store));
        *self.page.lock().unwrap_or_else(|e| e.into_inner()) = Some(Page {
            config,
            second,
            html: html.clone(),
        });
        html
    }

    /// Runs `job` on the cache's render thread and returns its result. Rendering thousands
    /// of tokens takes milliseconds, so it stays off the async workers; and it always runs
    /// on the same thread, so its multi-megabyte buffers are reused from one allocator
    /// arena instead of being spread over every blocking-pool thread that happened to
    /// serve a scrape (which grew the resident size several-fold under a scrape storm).
    /// `None` if the thread could not be started or has gone.
    pub async fn on_render_thread<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, RenderError> {
        let sender = self.render_thread.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<RenderJob>(RENDER_QUEUE);
            std::thread::Builder::new()
                .name("metrics-render".to_string())
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        // A panicking render answers that one request with an error (its
                        // reply is dropped) and must not take the thread down with it.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })
                .ok()
                .map(|_| tx)
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let counts = std::sync::Arc::downgrade(self);
        let wrapped: RenderJob = Box::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            let Some(cache) = counts.upgrade() else {
                return;
            };
            if tx.is_closed() {
                // Nobody waits for this answer any more.
                cache.skipped.fetch_add(1, Relaxed);
                return;
            }
            cache.ran.fetch_add(1, Relaxed);
            let _ = tx.send(job());
        });
        match sender
            .as_ref()
            .ok_or(RenderError::Failed)?
            .try_send(wrapped)
        {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(_)) => return Err(RenderError::Busy),
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(RenderError::Failed),
        }
        rx.await.map_err(|_| RenderError::Failed)
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
        // Rendered from a snapshot: probe results are written meanwhile, not held behind
        // the store's lock for the whole render (a 9 MB body at 10,000 tokens).
        let snapshot = store.snapshot();
        let gzip = render_gzip(&snapshot, now, |out| out.push_str(&process));
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

    /// What the snapshot costs next to the render it frees the lock from, at 10,000 tokens
    /// (`cargo test --lib snapshot_ -- --nocapture` prints both).
    #[test]
    fn snapshot_of_10000_tokens_costs_a_small_part_of_a_render() {
        use crate::config::TokenConfig;
        use crate::providers::atlassian::jira;
        use crate::state::TokenMeta;
        use std::sync::Arc;
        use std::time::Instant;
        let store = Store::new();
        let metas = (0..10_000)
            .map(|i| {
                let mut c = TokenConfig::for_tests(&format!("token-{i}"), jira::PROVIDER);
                c.labels.insert("team".into(), format!("team-{}", i % 50));
                TokenMeta::new(Arc::new(c))
            })
            .collect();
        let generations = store.set_tokens(metas, &|_| false);
        let valid = probed(Outcome::Valid {
            account_id: Some("5b10a2844c20165700ede21g".into()),
        });
        for (name, g) in &generations {
            store.record(name, *g, &valid, Duration::from_millis(120));
        }
        let (mut snap, mut render) = (Duration::MAX, Duration::MAX);
        for _ in 0..3 {
            let t = Instant::now();
            let snapshot = store.snapshot();
            snap = snap.min(t.elapsed());
            let t = Instant::now();
            let body = render_gzip(&snapshot, 0.0, |_| {});
            render = render.min(t.elapsed());
            assert!(body.len() > 100_000);
        }
        println!("10,000 tokens: snapshot {snap:?}, gzip render {render:?} (best of 3)");
        assert!(
            snap * 5 < render,
            "snapshot {snap:?} is not small next to the render {render:?}"
        );
    }

    #[test]
    fn a_probe_result_is_written_while_a_render_runs() {
        use std::sync::{mpsc, Arc};
        let store = Arc::new(store_with("t", &[], None));
        let g = store.read().tokens["t"].generation;
        let cache = Arc::new(MetricsCache::new());
        // The render pauses half-way until released.
        let (entered_tx, entered_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let (s, c) = (store.clone(), cache.clone());
        let render = std::thread::spawn(move || {
            crate::util::RENDER_HOOK.with(|h| {
                *h.borrow_mut() = Some(Box::new(move || {
                    let _ = entered_tx.send(());
                    let _ = release_rx.recv_timeout(Duration::from_secs(30));
                }));
            });
            c.get(&s)
        });
        entered_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the render started");
        // A probe result, while the render is paused: written at once, not after it.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let s = store.clone();
        let writer = std::thread::spawn(move || {
            let valid = probed(Outcome::Valid { account_id: None });
            s.record("t", g, &valid, Duration::from_millis(5));
            let _ = done_tx.send(());
        });
        let written = done_rx.recv_timeout(Duration::from_secs(5));
        release_tx.send(()).unwrap();
        writer.join().unwrap();
        let paused = render.join().unwrap();
        assert!(
            written.is_ok(),
            "the probe result waited for the render to finish"
        );
        // The paused render shows its snapshot; the result is in the next one.
        let text = |r: &Rendered| String::from_utf8(r.plain().to_vec()).unwrap();
        assert!(!text(&paused).contains("apitoken_valid{"));
        std::thread::sleep(MAX_STALENESS);
        assert!(text(&cache.get(&store)).contains("apitoken_valid{token=\"t\""));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn render_queue_is_bounded_and_abandoned_jobs_do_not_run() {
        let cache = std::sync::Arc::new(MetricsCache::new());
        // Hold the render thread until released.
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let c = cache.clone();
        let blocker = tokio::spawn(async move {
            c.on_render_thread(move || {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
            .await
        });
        started_rx.await.unwrap();
        // Requests that give up before their turn: their jobs must not run.
        let ran = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        for _ in 0..10 {
            let (c, ran) = (cache.clone(), ran.clone());
            let _ = tokio::time::timeout(
                Duration::from_millis(20),
                c.on_render_thread(move || {
                    ran.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }),
            )
            .await;
        }
        // Fill the queue: beyond RENDER_QUEUE the answer is Busy at once.
        let mut waiting = Vec::new();
        for _ in 0..(RENDER_QUEUE - 10) {
            let c = cache.clone();
            waiting.push(tokio::spawn(async move { c.on_render_thread(|| 1).await }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        assert_eq!(
            cache.on_render_thread(|| 1).await,
            Err(RenderError::Busy),
            "the queue is not bounded"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        release_tx.send(()).unwrap();
        blocker.await.unwrap().unwrap();
        for w in waiting {
            assert_eq!(w.await.unwrap(), Ok(1));
        }
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "abandoned jobs ran"
        );
        assert_eq!(cache.job_counts().1, 10);
    }

    #[test]
    fn status_page_is_rendered_once_per_configuration_and_second() {
        let store = store_with("t", &[], None);
        let cache = MetricsCache::new();
        let renders = std::cell::Cell::new(0);
        let render = |_: &Store| {
            renders.set(renders.get() + 1);
            format!("page {}", renders.get())
        };
        let first = cache.status_page(&store, render);
        let again = cache.status_page(&store, render);
        // Within one second (a render may straddle a second boundary: at most two).
        assert!(renders.get() <= 2, "{}", renders.get());
        if renders.get() == 1 {
            assert_eq!(first, again);
        }
        // A configuration change renders at once.
        let before = renders.get();
        store.set_tokens(vec![], &|_| false);
        let _ = cache.status_page(&store, render);
        assert_eq!(renders.get(), before + 1);
        // The next second renders again.
        std::thread::sleep(Duration::from_millis(1100));
        let _ = cache.status_page(&store, render);
        assert_eq!(renders.get(), before + 2);
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
