//! `rate_limit`: a token bucket over every request but `/-/healthy` (as Go's
//! `golang.org/x/time/rate` limiter the toolkit uses: `burst` requests at once, refilled one
//! per `interval`; `interval: 0` turns it off, `burst: 0` refuses everything), and Go's
//! duration syntax for `interval`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `rate_limit` as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub interval: Duration,
    pub burst: u32,
}

pub struct Bucket {
    spec: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    pub fn new(spec: RateLimit) -> Self {
        Self {
            spec,
            state: Mutex::new((f64::from(spec.burst), Instant::now())),
        }
    }

    pub fn spec(&self) -> RateLimit {
        self.spec
    }

    /// Takes one token if there is one.
    pub fn allow(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = &mut *state;
        let now = Instant::now();
        let refill = now.duration_since(*at).as_secs_f64() / self.spec.interval.as_secs_f64();
        *tokens = (*tokens + refill).min(f64::from(self.spec.burst));
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Go's `time.ParseDuration`: `300ms`, `1.5h`, `2h45m`, `0`; units ns, us (µs), ms, s, m, h.
/// Negative durations are refused (the toolkit would turn its limiter off).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (Go syntax, e.g. 1s, 500ms, 1m30s)");
    let t = s.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    if t == "0" {
        return Ok(Duration::ZERO);
    }
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let mut rest = t;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += value * nanos;
    }
    if !total.is_finite() || total > 9.2e18 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("10µs"), Ok(Duration::from_micros(10)));
        for bad in ["", "fast", "1", "1d", "-1s", "s", "1s2"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let b = Bucket::new(RateLimit {
            interval: Duration::from_millis(50),
            burst: 2,
        });
        assert!(b.allow());
        assert!(b.allow());
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.allow());
        let none = Bucket::new(RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        });
        assert!(!none.allow(), "burst 0 refuses every request, as in Go");
    }
}
