//! A golden `/metrics` of the `demo` subcommand: the real binary's demo on 127.0.0.1:0,
//! scraped once every demo token has had its first probe (a conclusive one where the demo
//! allows it) and the demo organization's inventory is complete, normalised, and compared
//! with `tests/it/golden/demo.metrics`.
//!
//! Normalised, because they differ from run to run: timestamps (written as whole days
//! from the scrape, `<now+5d>`), durations, counter values above 0, days until expiry
//! and lifetimes (rounded to whole days; up, for an expiry a vendor reports as a date), every `process_*` value, ports in label values, the build
//! revision. Kept exactly: every family, its HELP and TYPE, every series with all its
//! labels, and every other value (valid, anonymous_fallback, identity_mismatch,
//! probe_success, probe_interval_seconds, info, inventory success, token counts).
//!
//! `UPDATE_GOLDEN=1 cargo test --test it golden` rewrites the file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apitoken_exporter::metrics::escape_label;

use crate::harness::{Exporter, Metrics, Sample};

const HEADER: &str = "# The demo's /metrics, normalised (tests/it/golden.rs).\n# Rewrite with: UPDATE_GOLDEN=1 cargo test --test it golden\n";

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/golden/demo.metrics")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every token has finished its first probe, and holds a conclusive state unless that
/// probe failed (the demo's rate-limited and unreachable tokens never conclude); every
/// organization's inventory is complete.
fn first_probes_done(m: &Metrics) -> bool {
    let tokens: Vec<&str> = m
        .samples("apitoken_info", &[])
        .filter_map(|s| s.label("token"))
        .collect();
    let orgs: Vec<f64> = m
        .samples("apitoken_org_inventory_success", &[])
        .map(|s| s.value)
        .collect();
    !tokens.is_empty()
        && tokens.iter().all(|t| {
            let token = [("token", *t)];
            m.has("apitoken_last_probe_timestamp_seconds", &token)
                && (m.has("apitoken_valid", &token)
                    || m.value("apitoken_probe_success", &token) == Some(0.0))
        })
        && !orgs.is_empty()
        && orgs.iter().all(|v| *v == 1.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_metrics_match_the_golden_file() {
    let e = Exporter::start_with_args("", &[], &["demo"]);
    let m = e
        .wait_for(
            Duration::from_secs(30),
            "every demo token's first probe and a complete inventory",
            first_probes_done,
        )
        .await;
    let actual = format!("{HEADER}{}", normalise(m.text(), unix_now()));
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &actual).unwrap();
        println!("rewrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_GOLDEN=1 cargo test --test it golden",
            path.display()
        )
    });
    if let Some(diff) = diff(&expected, &actual, 40) {
        panic!(
            "the demo's /metrics differs from {} (- golden, + now):\n{diff}\n\
             If the change is intended: UPDATE_GOLDEN=1 cargo test --test it golden",
            path.display()
        );
    }
}

/// The family a `# HELP` / `# TYPE` line is about.
fn comment_family(line: &str) -> Option<&str> {
    let rest = line
        .strip_prefix("# HELP ")
        .or_else(|| line.strip_prefix("# TYPE "))?;
    rest.split(' ').next()
}

/// Present only when the process runs under an address-space limit (`ulimit -v`).
const OPTIONAL_FAMILY: &str = "process_virtual_memory_max_bytes";

/// The body with what varies between runs replaced (see the module comment).
fn normalise(text: &str, now: f64) -> String {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut out = String::new();
    for line in text.split_terminator('\n') {
        if line.starts_with('#') {
            if comment_family(line) == Some(OPTIONAL_FAMILY) {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                if let Some((family, kind)) = rest.split_once(' ') {
                    types.insert(family.to_string(), kind.to_string());
                }
            }
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let sample = Sample::parse(line).unwrap_or_else(|e| panic!("{e}"));
        if sample.name == OPTIONAL_FAMILY {
            continue;
        }
        let raw_value = line.rsplit_once(' ').map_or("", |(_, v)| v);
        let value = normalised_value(&sample, raw_value, types.get(&sample.name), now);
        out.push_str(&sample.name);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let v = if sample.name == "apitoken_exporter_build_info" && k == "revision" {
                    "<revision>".to_string()
                } else {
                    without_ports(v)
                };
                out.push_str(k);
                out.push_str("=\"");
                escape_label(&v, &mut out);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

/// GitLab reports an expiry as a date: the token stops at that day's midnight UTC, so its
/// expiry, days left and lifetime lie anywhere in (N − 1, N] whole days depending on the
/// time of day. Rounding would flip at noon UTC; these are rounded up instead.
fn expiry_is_a_date(sample: &Sample) -> bool {
    sample.label("provider") == Some("gitlab")
        && matches!(
            sample.name.as_str(),
            "apitoken_expiry_timestamp_seconds"
                | "apitoken_days_until_expiry"
                | "apitoken_lifetime_seconds"
        )
}

fn normalised_value(sample: &Sample, raw: &str, kind: Option<&String>, now: f64) -> String {
    let whole_days = |days: f64| {
        if expiry_is_a_date(sample) {
            days.ceil() as i64
        } else {
            days.round() as i64
        }
    };
    let v = sample.value;
    let name = sample.name.as_str();
    if name.starts_with("process_") {
        "<process>".into()
    } else if kind.is_some_and(|k| k == "counter") {
        if v > 0.0 {
            "<count>".into()
        } else {
            raw.into()
        }
    } else if name.ends_with("_timestamp_seconds") {
        format!("<now{:+}d>", whole_days((v - now) / 86_400.0))
    } else if name.ends_with("_duration_seconds") {
        "<seconds>".into()
    } else if name == "apitoken_days_until_expiry" {
        format!("{}", whole_days(v))
    } else if name == "apitoken_lifetime_seconds" || name == "apitoken_revocation_lag_seconds" {
        // Expiry and creation come from different clocks' "now" (the demo's and the
        // simulated vendor's): whole days are what the demo decides.
        format!("<{}d>", whole_days(v / 86_400.0))
    } else {
        raw.into()
    }
}

/// `127.0.0.1:PORT` becomes `127.0.0.1:<port>`.
fn without_ports(value: &str) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find(HOST) {
        out.push_str(&rest[..at + HOST.len()]);
        rest = &rest[at + HOST.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str("<port>");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// The first `limit` differing lines between `expected` and `actual` (a line diff on
/// the longest common subsequence), or None when they are equal.
fn diff(expected: &str, actual: &str, limit: usize) -> Option<String> {
    if expected == actual {
        return None;
    }
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    // lcs[i][j]: length of the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::new();
    let mut more = 0;
    let mut emit = |line: String| {
        if lines.len() < limit {
            lines.push(line);
        } else {
            more += 1;
        }
    };
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            emit(format!("-{:>5}: {}", i + 1, a[i]));
            i += 1;
        } else {
            emit(format!("+{:>5}: {}", j + 1, b[j]));
            j += 1;
        }
    }
    if lines.is_empty() {
        // Same lines, different line endings or a missing final newline.
        lines.push("(the files differ only in line endings)".into());
    }
    if more > 0 {
        lines.push(format!("… and {more} more differing lines"));
    }
    Some(lines.join("\n"))
}

#[test]
fn golden_normalisation_hides_what_varies_and_keeps_what_the_demo_decides() {
    let body = |valid: &str, ts: &str, port: &str, count: &str, rev: &str, token: &str| {
        format!(
            "# TYPE apitoken_valid gauge\n\
             apitoken_valid{{token=\"{token}\",provider=\"jira\"}} {valid}\n\
             # TYPE apitoken_last_probe_timestamp_seconds gauge\n\
             apitoken_last_probe_timestamp_seconds{{token=\"{token}\"}} {ts}\n\
             # TYPE apitoken_probe_duration_seconds gauge\n\
             apitoken_probe_duration_seconds{{token=\"{token}\"}} 0.00{port}\n\
             # TYPE apitoken_probes_total counter\n\
             apitoken_probes_total{{token=\"{token}\",result=\"valid\"}} {count}\n\
             apitoken_info{{token=\"{token}\",site=\"http://127.0.0.1:{port}/closed\"}} 1\n\
             apitoken_exporter_build_info{{version=\"0.1.0\",revision=\"{rev}\"}} 1\n\
             process_open_fds {port}\n"
        )
    };
    let now = 1_800_000_000.0;
    let n = |text: &str| normalise(text, now);
    let base = n(&body("1", "1800000001.5", "4242", "3", "abc", "t"));
    // What varies between runs: a timestamp the same day, a port, a duration, a counter
    // value, the revision, process_* values.
    assert_eq!(base, n(&body("1", "1799999990", "51000", "7", "def", "t")));
    // What must be caught: a gauge's value, a label value, a timestamp days away, a
    // counter that is 0.
    assert_ne!(base, n(&body("0", "1800000001.5", "4242", "3", "abc", "t")));
    assert_ne!(base, n(&body("1", "1800000001.5", "4242", "3", "abc", "u")));
    assert_ne!(base, n(&body("1", "1800259200", "4242", "3", "abc", "t")));
    assert_ne!(base, n(&body("1", "1800000001.5", "4242", "0", "abc", "t")));
    assert!(
        base.contains("site=\"http://127.0.0.1:<port>/closed\""),
        "{base}"
    );
    assert!(diff(&base, &base, 10).is_none());
    let changed = n(&body("0", "1800000001.5", "4242", "3", "abc", "t"));
    let shown = diff(&base, &changed, 10).unwrap();
    assert!(
        shown.contains("-    2: apitoken_valid{token=\"t\",provider=\"jira\"} 1")
            && shown.contains("+    2: apitoken_valid{token=\"t\",provider=\"jira\"} 0"),
        "{shown}"
    );
}
