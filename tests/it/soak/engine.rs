//! The soak's load phase, shared by the short soak in the suite (`tests/it/soak.rs`) and
//! the full one (`tests/soak/main.rs`, `scripts/soak.sh`): many tokens against the
//! simulator with ~1 % failing in rotating ways, while clients scrape, the config is
//! reloaded every second (alternating two configs) and token files are rotated on disk.
//! Invariants: no panic, no stuck probe (every token's `time() - last_probe` stays under
//! 2× its interval), flat RSS, every reload accepted.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apitoken_sim::{Behaviour, RunningSimulator};

use crate::harness::*;

pub struct Plan {
    /// Tokens reading their secret from an env var (1 % of them failing at any time).
    pub env_tokens: usize,
    /// Tokens reading their secret from a file that is rotated during the run.
    pub file_tokens: usize,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_concurrency: usize,
    /// How long scrapes, reloads, rotations and failures run (after the warm-up).
    pub duration: Duration,
    pub scrapers: usize,
    /// Extra clients scraping without `Accept-Encoding: gzip` (the whole plain body each
    /// time): they must not delay probes either.
    pub plain_scrapers: usize,
    /// How often the failing 1 % moves on to other tokens and other failure modes.
    pub failure_every: Duration,
    pub rotate_files_every: Duration,
}

#[derive(Debug, Default)]
pub struct Figures {
    tokens: usize,
    warm_up_s: f64,
    rss_start_kib: u64,
    /// RSS halfway through the load phase: growth after it would be a leak, growth
    /// before it is the storm's working set and allocator arenas filling up.
    rss_mid_kib: u64,
    rss_end_kib: u64,
    /// RSS every 10 s of the load phase, MiB.
    rss_series_mib: Vec<u64>,
    hwm_end_kib: u64,
    scrapes: usize,
    scrape_p50_ms: f64,
    scrape_p99_ms: f64,
    scrape_max_ms: f64,
    scrape_gzip_bytes: usize,
    plain_scrapes: u64,
    scrape_plain_bytes: usize,
    reloads: u64,
    failure_switches: u64,
    file_rotations: u64,
    stuck_samples: usize,
    oldest_probe_age_s: f64,
    probes_total: f64,
    probe_errors_total: f64,
}

pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub(crate) fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `apitoken_last_probe_timestamp_seconds` of every token.
pub(crate) fn last_probes(m: &Metrics) -> HashMap<&str, f64> {
    m.samples("apitoken_last_probe_timestamp_seconds", &[])
        .filter_map(|s| Some((s.label("token")?, s.value)))
        .collect()
}

/// Sum of a counter family over all tokens and label values.
pub(crate) fn family_sum(m: &Metrics, name: &str) -> f64 {
    m.samples(name, &[]).map(|s| s.value).sum()
}

struct Fixture {
    sim: RunningSimulator,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    env_secrets: Vec<String>,
    files: Vec<PathBuf>,
}

impl Fixture {
    async fn new(plan: &Plan) -> Fixture {
        let sim = simulator(&[]).await;
        let dir = tempfile::tempdir().unwrap();
        let valid = || cred("acc", EMAIL, Behaviour::Valid);
        let env_secrets: Vec<String> = (0..plan.env_tokens)
            .map(|i| format!("ATATT3xSOAK{i}"))
            .collect();
        for s in &env_secrets {
            sim.sim.add_credential(s, valid());
        }
        let mut env: Vec<(String, String)> = env_secrets
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("S{i}"), s.clone()))
            .collect();
        // Extra tokens that only config B has (they come and go with every reload).
        for i in 0..5 {
            let s = format!("ATATT3xSOAKEXTRA{i}");
            sim.sim.add_credential(&s, valid());
            env.push((format!("X{i}"), s));
        }
        let files = (0..plan.file_tokens)
            .map(|j| {
                let secret = format!("ATATT3xSOAKFILE{j}v0");
                sim.sim.add_credential(&secret, valid());
                write(dir.path(), &format!("f{j}"), &format!("{secret}\n"))
            })
            .collect();
        Fixture {
            sim,
            dir,
            env,
            env_secrets,
            files,
        }
    }

    /// Config A (`b == false`) or B: B relabels the first 100 tokens and adds 5 tokens.
    fn config(&self, plan: &Plan, b: bool) -> String {
        let base = self.sim.base_url();
        let env_tokens = (0..plan.env_tokens).map(|i| {
            let gen = if b && i < 100 { "b" } else { "a" };
            jira(&format!("t{i}"), &base, &format!("S{i}")).label("gen", gen)
        });
        let file_tokens = self.files.iter().enumerate().map(|(j, f)| {
            TokenSpec::jira(&format!("f{j}"))
                .site(&base)
                .email(EMAIL)
                .token_file(f)
        });
        let extra = (0..5)
            .filter(|_| b)
            .map(|i| jira(&format!("x{i}"), &base, &format!("X{i}")));
        ConfigBuilder::new()
            .global("probe_interval", format!("{}s", plan.interval.as_secs()))
            .global("probe_timeout", format!("{}ms", plan.timeout.as_millis()))
            .global("max_concurrency", plan.max_concurrency)
            .tokens(env_tokens.chain(file_tokens).chain(extra))
            .yaml()
    }
}

/// The failure modes the failing 1 % cycle through.
fn failure(k: u64, timeout: Duration) -> Behaviour {
    match k % 5 {
        0 => Behaviour::ServerError { status: 503 },
        1 => Behaviour::RateLimited {
            retry_after: Some("1".into()),
        },
        2 => Behaviour::Slow {
            delay: timeout + Duration::from_secs(1),
        },
        3 => Behaviour::NonJson,
        _ => Behaviour::Dead,
    }
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub async fn soak(plan: Plan) -> Figures {
    // Latencies and probe ages are measured: no other exporter runs meanwhile.
    let alone = gate::exclusive();
    let fx = Arc::new(Fixture::new(&plan).await);
    let env: Vec<(&str, &str)> = fx
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let config_a = fx.config(&plan, false);
    let config_b = fx.config(&plan, true);
    let e = Exporter::start_alone(&config_a, &env, &alone);
    let pid = e.pid();
    let total = plan.env_tokens + plan.file_tokens;
    let mut fig = Figures {
        tokens: total,
        ..Figures::default()
    };

    // Warm-up: first probes are spread over one interval.
    let started = Instant::now();
    let deadline = started + plan.interval * 3 + Duration::from_secs(10);
    loop {
        let probed = last_probes(&e.scrape().await).len();
        if probed >= total {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "warm-up: only {probed} of {total} tokens probed after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    fig.warm_up_s = started.elapsed().as_secs_f64();
    fig.rss_start_kib = vm_kib(pid, "VmRSS");

    let stop = Arc::new(AtomicBool::new(false));
    let load_start = Instant::now();
    let end = load_start + plan.duration;
    println!(
        "soak: {} tokens warmed up in {:.1} s; load phase {:?}",
        plan.env_tokens + plan.file_tokens,
        fig.warm_up_s,
        plan.duration
    );
    let mut tasks = tokio::task::JoinSet::new();

    // 1 % failing, moving on every `failure_every` to other tokens and another mode.
    let switches = Arc::new(AtomicU64::new(0));
    {
        let (fx, stop, switches) = (fx.clone(), stop.clone(), switches.clone());
        let (n, every, timeout) = (plan.env_tokens, plan.failure_every, plan.timeout);
        tasks.spawn(async move {
            let width = (n / 100).max(1);
            let mut failing: Vec<usize> = Vec::new();
            for k in 0..10_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                for &i in &failing {
                    fx.sim
                        .sim
                        .add_credential(&fx.env_secrets[i], cred("acc", EMAIL, Behaviour::Valid));
                }
                let first = (k as usize * width * 7) % n;
                failing = (first..first + width).map(|i| i % n).collect();
                for &i in &failing {
                    fx.sim.sim.add_credential(
                        &fx.env_secrets[i],
                        cred("acc", EMAIL, failure(k, timeout)),
                    );
                }
                switches.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
            for &i in &failing {
                fx.sim
                    .sim
                    .add_credential(&fx.env_secrets[i], cred("acc", EMAIL, Behaviour::Valid));
            }
        });
    }

    // Token files rotated on disk: a new valid secret, registered before it is written.
    let rotations = Arc::new(AtomicU64::new(0));
    {
        let (fx, stop, rotations) = (fx.clone(), stop.clone(), rotations.clone());
        let every = plan.rotate_files_every;
        tasks.spawn(async move {
            for v in 1..10_000u64 {
                if stop.load(Ordering::Relaxed) || fx.files.is_empty() {
                    break;
                }
                for (j, f) in fx.files.iter().enumerate() {
                    let secret = format!("ATATT3xSOAKFILE{j}v{v}");
                    fx.sim
                        .sim
                        .add_credential(&secret, cred("acc", EMAIL, Behaviour::Valid));
                    // A different length each time, so even coarse mtimes see the change.
                    std::fs::write(f, format!("{secret}\n{}", " ".repeat(v as usize % 7))).unwrap();
                }
                rotations.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(every).await;
            }
        });
    }

    // The scrape storm: bounded by `end`, each client one request at a time.
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let body_bytes = Arc::new(AtomicU64::new(0));
    let scrape_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let plain_scrapes = Arc::new(AtomicU64::new(0));
    let plain_bytes = Arc::new(AtomicU64::new(0));
    for n in 0..plan.scrapers + plan.plain_scrapers {
        let gzip = n < plan.scrapers;
        let (url, latencies, failed) = (
            format!("{}/metrics", e.base),
            latencies.clone(),
            scrape_errors.clone(),
        );
        let (body_bytes, plain_scrapes) = if gzip {
            (body_bytes.clone(), None)
        } else {
            (plain_bytes.clone(), Some(plain_scrapes.clone()))
        };
        tasks.spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            while Instant::now() < end {
                let t = Instant::now();
                // As Prometheus does: it always asks for gzip (the plain clients do not).
                let request = if gzip {
                    client.get(&url).header("Accept-Encoding", "gzip")
                } else {
                    client.get(&url)
                };
                let body = match request.send().await {
                    Ok(r) if r.status().is_success() => r.bytes().await.map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                };
                match body {
                    Ok(body) if !gzip && !body.starts_with(b"# HELP ") => {
                        failed.lock().unwrap().push(format!(
                            "plain body does not start with # HELP ({} bytes)",
                            body.len()
                        ))
                    }
                    Ok(body) => {
                        body_bytes.store(body.len() as u64, Ordering::Relaxed);
                        match &plain_scrapes {
                            Some(count) => {
                                count.fetch_add(1, Ordering::Relaxed);
                            }
                            None => latencies
                                .lock()
                                .unwrap()
                                .push(t.elapsed().as_secs_f64() * 1000.0),
                        }
                    }
                    Err(e) => failed.lock().unwrap().push(format!(
                        "{e} after {:.1} s of the load phase",
                        load_start.elapsed().as_secs_f64()
                    )),
                }
            }
        });
    }

    // Reload every second, alternating A and B; sample for stuck probes in between.
    let mut oldest = 0.0f64;
    let base_tokens: Vec<String> = (0..plan.env_tokens)
        .map(|i| format!("t{i}"))
        .chain((0..plan.file_tokens).map(|j| format!("f{j}")))
        .collect();
    let mut reloads = 0u64;
    while Instant::now() < end {
        let tick = Instant::now();
        e.write_config(if reloads % 2 == 0 {
            &config_b
        } else {
            &config_a
        });
        let (status, body) = e.reload().await;
        assert_eq!(status, 200, "{body}");
        reloads += 1;

        let m = e.scrape().await;
        let now = now_unix();
        let probes = last_probes(&m);
        for t in &base_tokens {
            let last = *probes
                .get(t.as_str())
                .unwrap_or_else(|| panic!("{t} lost its last probe"));
            oldest = oldest.max(now - last);
        }
        fig.stuck_samples += 1;
        let rss = vm_kib(pid, "VmRSS");
        if fig.rss_mid_kib == 0 && Instant::now() + plan.duration / 2 >= end {
            fig.rss_mid_kib = rss;
        }
        if fig.stuck_samples % 10 == 1 {
            fig.rss_series_mib.push(rss / 1024);
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = tasks.join_next().await {
        r.unwrap(); // a panicking client (non-200, error) fails the soak
    }

    let m = e.scrape().await;
    fig.rss_end_kib = vm_kib(pid, "VmRSS");
    fig.hwm_end_kib = vm_kib(pid, "VmHWM");
    fig.reloads = reloads;
    fig.failure_switches = switches.load(Ordering::Relaxed);
    fig.file_rotations = rotations.load(Ordering::Relaxed);
    fig.oldest_probe_age_s = oldest;
    fig.probes_total = family_sum(&m, "apitoken_probes_total");
    fig.probe_errors_total = family_sum(&m, "apitoken_probe_errors_total");
    fig.scrape_gzip_bytes = body_bytes.load(Ordering::Relaxed) as usize;
    fig.plain_scrapes = plain_scrapes.load(Ordering::Relaxed);
    fig.scrape_plain_bytes = plain_bytes.load(Ordering::Relaxed) as usize;
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    fig.scrapes = l.len();
    fig.scrape_p50_ms = percentile(&l, 0.50);
    fig.scrape_p99_ms = percentile(&l, 0.99);
    fig.scrape_max_ms = l.last().copied().unwrap_or(0.0);
    println!("soak of {} tokens, figures: {fig:#?}", fig.tokens);

    // The invariants.
    let out = e.output();
    let errors = scrape_errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "{} scrapes failed, e.g. {:?}\nexporter output (tail):\n{}",
        errors.len(),
        &errors[..errors.len().min(5)],
        out.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    assert!(!out.contains("panicked"), "the exporter panicked:\n{out}");
    assert_eq!(e.get("/-/healthy").await.0, 200);
    let limit = plan.interval.as_secs_f64() * 2.0;
    assert!(
        oldest < limit,
        "a probe got stuck: a token went {oldest:.1} s without a probe (limit {limit} s)"
    );
    assert!(fig.stuck_samples >= 3, "too few samples: {fig:?}");
    assert!(
        fig.scrapes >= plan.scrapers,
        "scrape storm did not run: {fig:?}"
    );
    assert!(
        fig.plain_scrapes >= plan.plain_scrapers as u64,
        "plain-text scrapers did not run: {fig:?}"
    );
    // Flat memory: after the first half of the load (the storm's working set, allocator
    // arenas filled), what the process holds no longer grows.
    let growth = fig.rss_end_kib as f64 - fig.rss_mid_kib as f64;
    let allowed = (fig.rss_mid_kib as f64 * 0.2).max(24.0 * 1024.0);
    assert!(
        growth < allowed,
        "RSS kept growing: {:.1} MiB in the second half (start {:.1} MiB, mid {:.1} MiB)",
        growth / 1024.0,
        fig.rss_start_kib as f64 / 1024.0,
        fig.rss_mid_kib as f64 / 1024.0
    );
    // Rotated files are read again: those tokens end valid with the newest secret.
    for j in 0..plan.file_tokens {
        assert_eq!(
            m.value("apitoken_valid", &[("token", &format!("f{j}"))]),
            Some(1.0),
            "f{j}"
        );
    }
    let _ = &fx.dir;
    fig
}
