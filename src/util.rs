//! Small vendor-neutral helpers every layer may use: the clock, build identity, bounded
//! file reads, time parsing and label clipping. This module depends on no other module
//! of the crate (docs/architecture.md).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = match option_env!("APITOKEN_EXPORTER_REVISION") {
    Some(r) => r,
    None => "unknown",
};

/// Unix time now, in seconds with sub-second precision.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads at most `limit + 1` bytes of a file: a result longer than `limit` means the file
/// is too large. The bound holds for pipes and devices too, whose size reads as 0.
pub fn read_at_most(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses a humantime duration with an error message that says what is expected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); expected e.g. 30s, 5m, 1h, 7d"))
}

/// Parses RFC 3339 (`2026-12-31T10:00:00Z`) or a plain date (`2026-12-31`, UTC midnight)
/// into Unix seconds.
pub fn parse_timestamp(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        if let Some(dt) = date.and_hms_opt(0, 0, 0) {
            return Ok(dt.and_utc().timestamp());
        }
    }
    Err(format!(
        "invalid timestamp {s:?}; expected RFC 3339 (2026-12-31T23:59:59Z) or YYYY-MM-DD"
    ))
}

/// Longest label value taken from an upstream answer (account ids are ~24-128 chars); a
/// hostile or broken server must not be able to blow up our series.
pub const MAX_UPSTREAM_LABEL: usize = 256;

/// The first `max_chars` characters of `s` (never splits a character).
pub fn clip(s: &str, max_chars: usize) -> &str {
    s.char_indices().nth(max_chars).map_or(s, |(i, _)| &s[..i])
}

/// Called by the renders (`/metrics`, the status page) once they are under way, from the
/// thread that renders: the tests of "a probe result is written while a render runs" pause
/// a render here with a hook of their own thread. Does nothing outside tests.
pub fn render_checkpoint() {
    #[cfg(test)]
    RENDER_HOOK.with(|h| {
        if let Some(hook) = h.borrow_mut().as_mut() {
            hook();
        }
    });
}

#[cfg(test)]
thread_local! {
    /// The hook [`render_checkpoint`] calls on this thread (tests only).
    pub static RENDER_HOOK: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_accept_both_forms() {
        assert_eq!(parse_timestamp("1970-01-02").unwrap(), 86_400);
        assert_eq!(parse_timestamp("1970-01-01T01:00:00+01:00").unwrap(), 0);
        assert!(parse_timestamp("tomorrow").is_err());
    }

    #[test]
    fn clip_never_splits_a_character() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("abc", 10), "abc");
    }

    #[test]
    fn bounded_read_stops_one_byte_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, vec![b'x'; 100]).unwrap();
        assert_eq!(read_at_most(&p, 10).unwrap().len(), 11);
        assert_eq!(read_at_most(&p, 1000).unwrap().len(), 100);
    }
}
