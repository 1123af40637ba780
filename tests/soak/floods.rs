//! The soak's flood phases (issue #15): 10,000 tokens probed every 30 s while
//!
//! - **bcrypt flood**: `--web.config.file` with a bcrypt user, clients looping on wrong
//!   passwords (a third of them unknown users, every password new), and one authorised
//!   scraper;
//! - **status-page flood**: clients looping on `GET /` (the 10,000-row page), and one
//!   scraper.
//!
//! Each phase reports the probe cadence (probes a second from `apitoken_probes_total`
//! against the 10,000 / 30 s expected), the oldest probe age and the scraper's `/metrics`
//! latency (p50, p99, max), and fails on a broken invariant: a token going more than 2×
//! its interval without a probe, a cadence below 80 % of the expected, a scrape that is not
//! 200, a wrong password let in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apitoken_sim::Behaviour;

use crate::engine::{family_sum, last_probes, now_unix, percentile, vm_kib};
use crate::harness::*;

const TOKENS: usize = 10_000;
const INTERVAL: Duration = Duration::from_secs(30);

/// How long each flood runs (after the warm-up): 60 s, or `SOAK_FLOOD_SECONDS` (10 … 3600).
fn flood_duration() -> Duration {
    let secs = std::env::var("SOAK_FLOOD_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs.clamp(10, 3600))
}

/// What one flood phase measured.
#[derive(Debug, Default)]
#[allow(dead_code)] // printed with {:#?}
pub struct FloodFigures {
    pub phase: &'static str,
    pub tokens: usize,
    pub clients: usize,
    pub flood_s: f64,
    /// Answers the flooding clients got (401/429 for wrong passwords; 200/503 for `/`).
    pub flood_answers: u64,
    pub probes_per_s: f64,
    pub expected_probes_per_s: f64,
    pub oldest_probe_age_s: f64,
    pub scrapes: usize,
    pub scrape_p50_ms: f64,
    pub scrape_p99_ms: f64,
    pub scrape_max_ms: f64,
    pub rss_end_mib: u64,
    pub threads_max: u64,
}

/// A client of the exporter, with basic auth when the phase has users.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    auth: Option<(String, String)>,
}

impl Client {
    fn new(base: &str, auth: Option<(&str, &str)>) -> Client {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            base: base.to_string(),
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    /// `GET path` as this client: the status and the body.
    async fn get(&self, path: &str, gzip: bool) -> Result<(u16, bytes::Bytes), String> {
        let mut r = self.http.get(format!("{}{path}", self.base));
        if let Some((u, p)) = &self.auth {
            r = r.basic_auth(u, Some(p));
        }
        if gzip {
            r = r.header("Accept-Encoding", "gzip");
        }
        let resp = r.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    async fn scrape(&self) -> Metrics {
        let (status, body) = self.get("/metrics", false).await.unwrap();
        assert_eq!(status, 200, "GET /metrics");
        Metrics::parse(String::from_utf8(body.to_vec()).unwrap()).unwrap()
    }
}

/// The flooding clients of one phase: each loops until `end` and counts its answers.
type Flooder = Box<dyn Fn(usize, Client, Instant, Arc<AtomicU64>) -> tokio::task::JoinHandle<()>>;

/// Runs one phase: 10,000 tokens, the exporter with `args` (and `auth` for its own
/// scrapes), warmed up, then `clients` flooders for [`flood_duration`] beside one scraper.
async fn phase(
    name: &'static str,
    args: &[&str],
    auth: Option<(&str, &str)>,
    clients: usize,
    flooder: Flooder,
) -> FloodFigures {
    let sim = simulator(&[]).await;
    let fleet = Fleet::new(&sim, TOKENS, "FLOOD", Behaviour::Valid);
    let config = ConfigBuilder::new()
        .global("probe_interval", format!("{}s", INTERVAL.as_secs()))
        .global("probe_timeout", "2s")
        .global("max_concurrency", 16)
        .tokens(fleet.tokens.clone())
        .yaml();
    let e = Exporter::start_with_args(&config, &fleet.env(), args);
    let pid = e.pid();
    let scraper = Client::new(&e.base, auth);

    // Warm-up: first probes are spread over one interval.
    let started = Instant::now();
    loop {
        let probed = last_probes(&scraper.scrape().await).len();
        if probed >= TOKENS {
            break;
        }
        assert!(
            started.elapsed() < INTERVAL * 3 + Duration::from_secs(10),
            "{name}: only {probed} of {TOKENS} tokens probed after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let duration = flood_duration();
    println!(
        "soak phase {name}: {TOKENS} tokens warmed up in {:.1} s; {clients} clients for {duration:?}",
        started.elapsed().as_secs_f64()
    );

    let answers = Arc::new(AtomicU64::new(0));
    let flood_start = Instant::now();
    let end = flood_start + duration;
    let flood_client = Client::new(&e.base, None);
    let flooders: Vec<_> = (0..clients)
        .map(|c| flooder(c, flood_client.clone(), end, answers.clone()))
        .collect();

    // The scraper, as Prometheus does (gzip), one request at a time.
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let failed = Arc::new(Mutex::new(Vec::<String>::new()));
    let scraping = {
        let (scraper, latencies, failed) = (scraper.clone(), latencies.clone(), failed.clone());
        tokio::spawn(async move {
            while Instant::now() < end {
                let t = Instant::now();
                match scraper.get("/metrics", true).await {
                    Ok((200, _)) => latencies
                        .lock()
                        .unwrap()
                        .push(t.elapsed().as_secs_f64() * 1000.0),
                    Ok((status, _)) => failed.lock().unwrap().push(format!("HTTP {status}")),
                    Err(e) => failed.lock().unwrap().push(e),
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    // Cadence and probe ages, sampled every 2 s (plain scrapes, parsed).
    let first = scraper.scrape().await;
    let (probes_start, at_start) = (family_sum(&first, "apitoken_probes_total"), Instant::now());
    let mut oldest = 0.0f64;
    let mut threads_max = 0u64;
    let mut last = first;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let m = scraper.scrape().await;
        let now = now_unix();
        let probes = last_probes(&m);
        assert_eq!(probes.len(), TOKENS, "{name}: a token lost its last probe");
        for t in probes.values() {
            oldest = oldest.max(now - t);
        }
        threads_max = threads_max.max(vm_kib(pid, "Threads"));
        last = m;
    }
    let elapsed = at_start.elapsed().as_secs_f64();
    let probes_per_s = (family_sum(&last, "apitoken_probes_total") - probes_start) / elapsed;
    scraping.await.unwrap();
    for f in flooders {
        f.await.unwrap(); // a flooder that saw a broken answer panicked
    }

    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let fig = FloodFigures {
        phase: name,
        tokens: TOKENS,
        clients,
        flood_s: flood_start.elapsed().as_secs_f64(),
        flood_answers: answers.load(Ordering::Relaxed),
        probes_per_s: (probes_per_s * 10.0).round() / 10.0,
        expected_probes_per_s: TOKENS as f64 / INTERVAL.as_secs_f64(),
        oldest_probe_age_s: (oldest * 10.0).round() / 10.0,
        scrapes: l.len(),
        scrape_p50_ms: percentile(&l, 0.50),
        scrape_p99_ms: percentile(&l, 0.99),
        scrape_max_ms: l.last().copied().unwrap_or(0.0),
        rss_end_mib: vm_kib(pid, "VmRSS") / 1024,
        threads_max,
    };
    println!("soak phase {name}, figures: {fig:#?}");

    let failed = failed.lock().unwrap().clone();
    assert!(
        failed.is_empty(),
        "{name}: {} scrapes failed, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let out = e.output();
    assert!(!out.contains("panicked"), "the exporter panicked:\n{out}");
    let limit = INTERVAL.as_secs_f64() * 2.0;
    assert!(
        fig.oldest_probe_age_s < limit,
        "{name}: a token went {:.1} s without a probe (limit {limit} s)",
        fig.oldest_probe_age_s
    );
    assert!(
        fig.probes_per_s >= fig.expected_probes_per_s * 0.8,
        "{name}: probing slowed to {} probes/s (expected {})",
        fig.probes_per_s,
        fig.expected_probes_per_s
    );
    assert!(fig.scrapes >= 3, "{name}: the scraper did not run: {fig:?}");
    assert!(fig.flood_answers > 0, "{name}: the flood got no answer");
    let _ = &sim;
    fig
}

/// Wrong passwords (a third for unknown users, every one new) against a bcrypt user, with
/// an authorised scraper.
pub async fn bcrypt_flood(clients: usize) -> FloodFigures {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("right-password", 10).unwrap();
    let web = write(
        dir.path(),
        "web.yml",
        &format!("basic_auth_users:\n  prom: \"{hash}\"\n"),
    );
    let arg = format!("--web.config.file={}", web.display());
    let flooder: Flooder = Box::new(|c, client, end, answers| {
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let user = if c % 3 == 0 {
                    format!("nobody{c}")
                } else {
                    "prom".to_string()
                };
                let wrong = Client {
                    auth: Some((user, format!("wrong-{c}-{n}"))),
                    ..client.clone()
                };
                let r = tokio::time::timeout(Duration::from_secs(5), wrong.get("/metrics", true));
                match r.await {
                    Ok(Ok((status, _))) => {
                        assert!(
                            status == 401 || status == 429,
                            "a wrong password got {status}"
                        );
                        answers.fetch_add(1, Ordering::Relaxed);
                    }
                    // Given up (5 s) or refused: the client tries again.
                    Ok(Err(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
    });
    phase(
        "bcrypt_flood",
        &[&arg],
        Some(("prom", "right-password")),
        clients,
        flooder,
    )
    .await
}

/// Clients looping on `GET /` (the 10,000-row page); every other one gives up after 50 ms.
pub async fn status_page_flood(clients: usize) -> FloodFigures {
    let flooder: Flooder = Box::new(|_, client, end, answers| {
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < end {
                n += 1;
                let patience = if n % 2 == 0 {
                    Duration::from_millis(50)
                } else {
                    Duration::from_secs(15)
                };
                // An abandoned or failed request: the client asks again.
                if let Ok(Ok((status, _))) =
                    tokio::time::timeout(patience, client.get("/", true)).await
                {
                    assert!(status == 200 || status == 503, "GET / answered {status}");
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    phase("status_page_flood", &[], None, clients, flooder).await
}
