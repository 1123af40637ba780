//! State -> exposition: every token family, the organization inventory families and the
//! exporter's own metrics. No I/O; `now` is passed in so days-until-expiry is computed at
//! scrape time.

use std::fmt::Write as _;

use bytes::Bytes;

use super::exposition::{bool_value, escape_label, push_value, Out};
use super::families::*;
use crate::probe::{ErrorReason, OutcomeKind};
use crate::providers::atlassian::inventory::{List, ListedKey, ListedToken};
use crate::state::{Inner, Listing, OrgEntry, StatusCounts, TokenEntry};
use crate::util::{clip, MAX_UPSTREAM_LABEL, REVISION, VERSION};

/// Writes `{token="…",provider="…"` (unterminated, so callers may add labels).
fn token_labels(out: &mut String, e: &TokenEntry) {
    out.push_str("{token=\"");
    escape_label(e.meta.name(), out);
    out.push_str("\",provider=\"");
    out.push_str(e.meta.provider().as_str());
    out.push('"');
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

/// `apitoken_revoked_timestamp_seconds{…,source}`: the config's `revoked_at`, else the
/// organization inventory's revocation.
fn revoked_family(out: &mut Out, inner: &Inner) {
    let mut wrote_header = false;
    for e in inner.tokens.values() {
        let Some((at, source)) = e.revoked() else {
            continue;
        };
        if !std::mem::replace(&mut wrote_header, true) {
            header(out, &REVOKED);
        }
        out.push_str(REVOKED.name);
        token_labels(out, e);
        out.push_str(",source=\"");
        out.push_str(source.as_str());
        out.push_str("\"} ");
        push_value(out, at.floor());
        out.push('\n');
        out.sample_done();
    }
}

/// The full exposition for the token families and the exporter's own metrics.
pub fn render(inner: &Inner, now: f64) -> String {
    let mut out = Out::plain(512 + inner.tokens.len() * 1000);
    render_into(&mut out, inner, now);
    out.into_text()
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
    gauge_family(out, inner, &EXPIRY, |e| e.expiry().0.map(|t| t as f64));
    gauge_family(out, inner, &DAYS, |e| {
        e.expiry()
            .0
            .map(|t| ((t as f64 - now) / 86_400.0 * 1000.0).round() / 1000.0)
    });
    gauge_family(out, inner, &LIFETIME, |e| e.lifetime().map(|t| t as f64));
    gauge_family(out, inner, &LAST_USED, |e| {
        e.last_used_at().map(|t| t as f64)
    });
    revoked_family(out, inner);
    gauge_family(out, inner, &REVOCATION_LAG, TokenEntry::revocation_lag);
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
                .unwrap_or(e.meta.config.probe_interval.as_secs_f64()),
        )
    });

    crate::util::render_checkpoint();
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
        if inner.tokens.values().any(|e| !e.scopes().is_empty()) {
            header(out, &SCOPE_INFO);
            for e in inner.tokens.values() {
                for scope in e.scopes() {
                    out.push_str(SCOPE_INFO.name);
                    token_labels(out, e);
                    out.push_str(",scope=\"");
                    escape_label(scope, out);
                    out.push_str("\"} 1\n");
                }
                out.sample_done();
            }
        }
        header(out, &INFO);
        for e in inner.tokens.values() {
            out.push_str(INFO.name);
            token_labels(out, e);
            out.push_str(",site=\"");
            escape_label(e.meta.site(), out);
            out.push('"');
            if let Some(id) = &e.status.account_id {
                out.push_str(",account_id=\"");
                escape_label(clip(id, MAX_UPSTREAM_LABEL), out);
                out.push('"');
            }
            out.push_str(",expiry_source=\"");
            out.push_str(e.expiry().1.as_str());
            out.push_str("\",auth=\"");
            out.push_str(e.meta.config.auth.as_str());
            out.push('"');
            if let Some(kind) = e.credential_type() {
                out.push_str(",credential_type=\"");
                escape_label(kind, out);
                out.push('"');
            }
            for (k, v) in &e.meta.config.labels {
                let _ = write!(out, ",{k}=\"");
                escape_label(v, out);
                out.push('"');
            }
            out.push_str("} 1\n");
            out.sample_done();
        }
    }

    org_families(out, inner, now);

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

/// The `expires_within` buckets of `apitoken_org_tokens`, in order.
pub(crate) const BUCKETS: [&str; 6] = ["expired", "7d", "30d", "90d", "later", "never"];

/// Buckets one status's entries by their remaining time r = expiry − `now`: `expired`
/// (r < 0), `7d` (0 ≤ r < 7 d), `30d` (7 d ≤ r < 30 d), `90d` (30 d ≤ r < 90 d), `later`
/// (r ≥ 90 d), `never` (no expiry). Four binary searches over the sorted expiries.
pub(crate) fn bucket_counts(c: &StatusCounts, now: f64) -> [u64; 6] {
    const DAY: f64 = 86_400.0;
    let below = |limit: f64| c.expiries.partition_point(|&t| (t as f64) < limit) as u64;
    let [expired, d7, d30, d90] =
        [now, now + 7.0 * DAY, now + 30.0 * DAY, now + 90.0 * DAY].map(below);
    let total = c.expiries.len() as u64;
    [
        expired,
        d7 - expired,
        d30 - d7,
        d90 - d30,
        total - d90,
        c.never,
    ]
}

fn token_entry_labels(t: &ListedToken) -> [(&'static str, &str); 4] {
    [
        ("token_id", t.id.as_str()),
        ("token_label", t.label.as_str()),
        ("account_id", t.account_id.as_deref().unwrap_or("")),
        ("status", t.status.as_str()),
    ]
}

fn key_entry_labels(k: &ListedKey) -> [(&'static str, &str); 2] {
    [("key_id", k.id.as_str()), ("key_label", k.label.as_str())]
}

/// One per-entry family over every listing in `listings`: a sample per entry where
/// `value` is known.
fn entry_family<'a, T: 'a, const N: usize>(
    out: &mut Out,
    f: &Family,
    listings: &[(&'a str, &'a Listing<T>)],
    value: fn(&T) -> Option<i64>,
    labels: fn(&T) -> [(&'static str, &str); N],
) {
    let mut wrote_header = false;
    for (org, listing) in listings {
        for e in listing.entries.values() {
            let Some(v) = value(e) else { continue };
            if !std::mem::replace(&mut wrote_header, true) {
                header(out, f);
            }
            org_sample(out, f, org, &labels(e), v as f64);
            out.sample_done();
        }
    }
}

/// The organization inventory families. Entries come from each list's last *complete*
/// listing; organizations with `per_token_series: false` export only the aggregates and
/// the list health.
fn org_families(out: &mut Out, inner: &Inner, now: f64) {
    let per_entry = |o: &OrgEntry| o.per_token_series;
    let tokens: Vec<(&str, &Listing<ListedToken>)> = inner
        .orgs
        .iter()
        .filter(|(_, o)| per_entry(o))
        .filter_map(|(name, o)| o.api_tokens.listing.as_deref().map(|l| (name.as_str(), l)))
        .collect();
    let keys: Vec<(&str, &Listing<ListedKey>)> = inner
        .orgs
        .iter()
        .filter(|(_, o)| per_entry(o))
        .filter_map(|(name, o)| o.api_keys.listing.as_deref().map(|l| (name.as_str(), l)))
        .collect();
    entry_family(
        out,
        &ORG_TOKEN_EXPIRY,
        &tokens,
        |t| t.expires_at,
        token_entry_labels,
    );
    entry_family(
        out,
        &ORG_TOKEN_CREATED,
        &tokens,
        |t| t.created_at,
        token_entry_labels,
    );
    entry_family(
        out,
        &ORG_TOKEN_LAST_ACTIVE,
        &tokens,
        |t| t.last_active_at,
        token_entry_labels,
    );
    entry_family(
        out,
        &ORG_KEY_EXPIRY,
        &keys,
        |k| k.expires_at,
        key_entry_labels,
    );
    entry_family(
        out,
        &ORG_KEY_CREATED,
        &keys,
        |k| k.created_at,
        key_entry_labels,
    );

    // The aggregates: every status of a list (API tokens always show ALLOWED, API keys
    // the empty status), every bucket, zeros included, so that sums never go absent.
    let mut wrote_header = false;
    let none = StatusCounts::default();
    for (org, o) in &inner.orgs {
        let lists = [
            (
                List::ApiTokens,
                o.api_tokens.listing.as_ref().map(|l| &l.counts),
            ),
            (
                List::ApiKeys,
                o.api_keys.listing.as_ref().map(|l| &l.counts),
            ),
        ];
        for (list, counts) in lists {
            let Some(counts) = counts else { continue };
            let always = if list == List::ApiTokens {
                "ALLOWED"
            } else {
                ""
            };
            let missing = (!counts.contains_key(always)).then_some((always, &none));
            let statuses = missing
                .into_iter()
                .chain(counts.iter().map(|(s, c)| (s.as_str(), c)));
            for (status, c) in statuses {
                if !std::mem::replace(&mut wrote_header, true) {
                    header(out, &ORG_TOKENS);
                }
                for (bucket, n) in BUCKETS.iter().zip(bucket_counts(c, now)) {
                    let labels = [
                        ("list", list.label()),
                        ("status", status),
                        ("expires_within", bucket),
                    ];
                    org_sample(out, &ORG_TOKENS, org, &labels, n as f64);
                }
                out.sample_done();
            }
        }
    }

    // Each list's health on its own.
    for (f, value) in [
        (
            &ORG_SUCCESS,
            (|ok, _| ok.map(bool_value)) as fn(Option<bool>, Option<f64>) -> Option<f64>,
        ),
        (&ORG_LAST_SUCCESS, |_, t: Option<f64>| t.map(f64::floor)),
    ] {
        let mut wrote_header = false;
        for (org, o) in &inner.orgs {
            for list in List::ALL {
                let (ok, last) = o.health(list);
                let Some(v) = value(ok, last) else { continue };
                if !std::mem::replace(&mut wrote_header, true) {
                    header(out, f);
                }
                org_sample(out, f, org, &[("list", list.label())], v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use super::super::test_support::{probed, store_with};
    use super::super::Rendered;
    use crate::probe::Outcome;
    use crate::providers::atlassian::inventory::InventoryRun;
    use crate::state::{Store, TokenMeta};

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
            &probed(Outcome::Anonymous { detail: "x".into() }),
            Duration::ZERO,
        );
        let text = render(&store.read(), 0.0);
        assert!(text.contains("apitoken_valid{token=\"t\",provider=\"jira\"} 0\n"));
        assert!(text.contains("apitoken_anonymous_fallback{token=\"t\",provider=\"jira\"} 1\n"));
        assert!(text.contains("apitoken_identity_mismatch{token=\"t\",provider=\"jira\"} 0\n"));
        assert!(text.contains("result=\"anonymous\"} 1\n"));
    }

    fn listed_token(id: &str, label: &str, status: &str, expires_at: Option<i64>) -> ListedToken {
        ListedToken {
            id: id.into(),
            label: label.into(),
            status: status.into(),
            account_id: Some("acc-1".into()),
            created_at: Some(1),
            expires_at,
            last_active_at: Some(500),
        }
    }

    fn key(id: &str, expires_at: Option<i64>) -> ListedKey {
        ListedKey {
            id: id.into(),
            label: "ops".into(),
            created_at: Some(7),
            expires_at,
        }
    }

    fn run(tokens: Vec<ListedToken>, keys: Vec<ListedKey>) -> InventoryRun {
        InventoryRun {
            api_tokens: Ok(tokens.into_iter().map(|t| (t.id.clone(), t)).collect()),
            api_keys: Ok(keys.into_iter().map(|k| (k.id.clone(), k)).collect()),
            token_pages: 1,
            key_pages: 1,
        }
    }

    #[test]
    fn org_inventory_families() {
        let store = Store::new();
        let g = store.set_orgs(&["acme".into(), "later".into()], &|_| false);
        let inv = run(
            vec![
                listed_token("t1", "ci \"bot\"\n", "ALLOWED", Some(1_000)),
                listed_token("t2", "no expiry", "ALLOWED", None),
            ],
            vec![key("k1", Some(2_000))],
        );
        store.record_inventory("acme", g["acme"], inv);
        let text = render(&store.read(), 0.0);
        assert!(text.contains("# HELP apitoken_org_token_expiry_timestamp_seconds "));
        assert!(text.contains(
            "apitoken_org_token_expiry_timestamp_seconds{org=\"acme\",token_id=\"t1\",token_label=\"ci \\\"bot\\\"\\n\",account_id=\"acc-1\",status=\"ALLOWED\"} 1000\n"
        ), "{text}");
        assert!(!text
            .contains("apitoken_org_token_expiry_timestamp_seconds{org=\"acme\",token_id=\"t2\""));
        assert!(text.contains("apitoken_org_token_last_active_timestamp_seconds{org=\"acme\",token_id=\"t2\",token_label=\"no expiry\",account_id=\"acc-1\",status=\"ALLOWED\"} 500\n"));
        assert!(text.contains("apitoken_org_token_created_timestamp_seconds{org=\"acme\",token_id=\"t2\",token_label=\"no expiry\",account_id=\"acc-1\",status=\"ALLOWED\"} 1\n"));
        assert!(text.contains(
            "apitoken_org_api_key_expiry_timestamp_seconds{org=\"acme\",key_id=\"k1\",key_label=\"ops\"} 2000\n"
        ));
        assert!(text.contains(
            "apitoken_org_api_key_created_timestamp_seconds{org=\"acme\",key_id=\"k1\",key_label=\"ops\"} 7\n"
        ));
        for list in ["api_tokens", "api_keys"] {
            assert!(
                text.contains(&format!(
                    "apitoken_org_inventory_success{{org=\"acme\",list=\"{list}\"}} 1\n"
                )),
                "{text}"
            );
            assert!(text.contains(&format!(
                "apitoken_org_inventory_last_success_timestamp_seconds{{org=\"acme\",list=\"{list}\"}} "
            )));
        }
        assert!(text.contains("apitoken_org_tokens{org=\"acme\",list=\"api_tokens\",status=\"ALLOWED\",expires_within=\"7d\"} 1\n"), "{text}");
        assert!(text.contains("apitoken_org_tokens{org=\"acme\",list=\"api_tokens\",status=\"ALLOWED\",expires_within=\"never\"} 1\n"));
        assert!(text.contains("apitoken_org_tokens{org=\"acme\",list=\"api_keys\",status=\"\",expires_within=\"7d\"} 1\n"));
        assert_eq!(
            text.matches("apitoken_org_tokens{").count(),
            12,
            "6 buckets x 2 lists"
        );
        // An organization whose first run has not finished has no series yet.
        assert!(!text.contains("org=\"later\""), "{text}");
        assert_eq!(text.matches("# TYPE apitoken_org_").count(), 8);
    }

    #[test]
    fn aggregates_bucket_by_remaining_time_at_the_boundaries() {
        const DAY: i64 = 86_400;
        let now = 1_000_000_i64;
        let mut expiries = vec![
            now - 1,            // expired
            now,                // r = 0: 7d
            now + 7 * DAY - 1,  // 7d
            now + 7 * DAY,      // 30d
            now + 30 * DAY - 1, // 30d
            now + 30 * DAY,     // 90d
            now + 90 * DAY - 1, // 90d
            now + 90 * DAY,     // later
            now + 900 * DAY,    // later
        ];
        expiries.sort_unstable();
        let c = StatusCounts { expiries, never: 3 };
        assert_eq!(bucket_counts(&c, now as f64), [1, 2, 2, 2, 2, 3]);
        // Half a second later, the r = 0 token has expired.
        assert_eq!(bucket_counts(&c, now as f64 + 0.5), [2, 2, 2, 2, 1, 3]);
        assert_eq!(bucket_counts(&StatusCounts::default(), 0.0), [0; 6]);
        // Through the renderer: every bucket of every status, zeros included; API keys
        // have the empty status; an empty token list still shows ALLOWED zeros.
        let store = Store::new();
        let g = store.set_orgs(&["acme".into()], &|_| false)["acme"];
        let inv = run(
            vec![
                listed_token("a", "", "BLOCKED", Some(now + 7 * DAY)),
                listed_token("b", "", "BLOCKED", Some(now - 1)),
            ],
            vec![key("k", None)],
        );
        store.record_inventory("acme", g, inv);
        let text = render(&store.read(), now as f64);
        let sample = |list: &str, status: &str, bucket: &str| {
            let prefix = format!("apitoken_org_tokens{{org=\"acme\",list=\"{list}\",status=\"{status}\",expires_within=\"{bucket}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(|v| v.to_string())
        };
        assert_eq!(
            sample("api_tokens", "BLOCKED", "expired").as_deref(),
            Some("1")
        );
        assert_eq!(sample("api_tokens", "BLOCKED", "30d").as_deref(), Some("1"));
        assert_eq!(sample("api_tokens", "BLOCKED", "7d").as_deref(), Some("0"));
        assert_eq!(
            sample("api_tokens", "ALLOWED", "later").as_deref(),
            Some("0")
        );
        assert_eq!(sample("api_keys", "", "never").as_deref(), Some("1"));
        assert_eq!(text.matches("apitoken_org_tokens{").count(), 18);
    }

    #[test]
    fn without_per_token_series_only_aggregates_and_health_are_rendered_but_links_hold() {
        use crate::config::ExpirySource;
        use crate::state::OrgSettings;
        let store = store_with("linked", &[], Some(1));
        let mut c = (*store.read().tokens["linked"].meta.config).clone();
        c.org_token_id = Some("t1".into());
        store.set_tokens(vec![TokenMeta::new(std::sync::Arc::new(c))], &|_| false);
        let settings = [OrgSettings {
            name: "acme",
            per_token_series: false,
        }];
        let g = store.set_orgs(&settings, &|_| false)["acme"];
        let inv = run(
            vec![listed_token("t1", "l", "ALLOWED", Some(50_000))],
            vec![key("k1", Some(60_000))],
        );
        store.record_inventory("acme", g, inv);
        let text = render(&store.read(), 0.0);
        for absent in [
            "apitoken_org_token_expiry_timestamp_seconds",
            "apitoken_org_token_created_timestamp_seconds",
            "apitoken_org_token_last_active_timestamp_seconds",
            "apitoken_org_api_key_expiry_timestamp_seconds",
            "apitoken_org_api_key_created_timestamp_seconds",
            "token_id=",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert!(text.contains("apitoken_org_tokens{org=\"acme\",list=\"api_tokens\",status=\"ALLOWED\",expires_within=\"7d\"} 1\n"), "{text}");
        assert!(text.contains("apitoken_org_inventory_success{org=\"acme\",list=\"api_keys\"} 1\n"));
        assert_eq!(
            store.read().tokens["linked"].expiry(),
            (Some(50_000), ExpirySource::OrgInventory)
        );
        assert!(text.contains(
            "apitoken_expiry_timestamp_seconds{token=\"linked\",provider=\"jira\"} 50000\n"
        ));
        // Switching it on again (a reload) keeps the listing and renders the entries.
        let settings = [OrgSettings {
            name: "acme",
            per_token_series: true,
        }];
        store.set_orgs(&settings, &|_| false);
        let text = render(&store.read(), 0.0);
        assert!(text
            .contains("apitoken_org_token_expiry_timestamp_seconds{org=\"acme\",token_id=\"t1\""));
    }

    #[test]
    fn revocations_carry_their_source_and_the_lag_appears_once_known() {
        let store = store_with("t", &[], None);
        let mut c = (*store.read().tokens["t"].meta.config).clone();
        c.revoked_at = Some(1_000);
        let g = store.set_tokens(vec![TokenMeta::new(std::sync::Arc::new(c))], &|_| false)["t"];
        let text = render(&store.read(), 0.0);
        assert!(text.contains("apitoken_revoked_timestamp_seconds{token=\"t\",provider=\"jira\",source=\"config\"} 1000\n"), "{text}");
        assert!(!text.contains("apitoken_revocation_lag_seconds"));
        store.record(
            "t",
            g,
            &probed(Outcome::Valid { account_id: None }),
            Duration::ZERO,
        );
        store.record(
            "t",
            g,
            &probed(Outcome::Rejected { status: 401 }),
            Duration::ZERO,
        );
        let text = render(&store.read(), 0.0);
        assert!(text.contains("# TYPE apitoken_revocation_lag_seconds gauge\n"));
        assert!(
            text.contains("apitoken_revocation_lag_seconds{token=\"t\",provider=\"jira\"} "),
            "{text}"
        );
    }

    #[test]
    fn streamed_gzip_body_equals_the_plain_rendering() {
        // Enough tokens for many 64 KiB chunks, with probe results in every family.
        let store = store_with("base", &[("team", "platform")], None);
        let base = store.read().tokens["base"].meta.config.clone();
        let metas = (0..2000)
            .map(|i| {
                let mut c = (*base).clone();
                c.name = format!("tok-{i}");
                c.expires_at = Some(1_900_000_000 + i);
                TokenMeta::new(std::sync::Arc::new(c))
            })
            .collect();
        let generations = store.set_tokens(metas, &|_| true);
        for (name, gen) in &generations {
            let outcome = probed(Outcome::Valid {
                account_id: Some(format!("acc-{name}")),
            });
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
        Rendered::from_gzip(gzip.clone()).plain_chunks()
    }

    #[test]
    fn what_the_vendor_reports_becomes_lifetime_last_use_scopes_and_credential_type() {
        let store = store_with("bb", &[], None);
        let g = store.read().tokens["bb"].generation;
        let reported = crate::providers::Probed {
            outcome: Outcome::Valid { account_id: None },
            facts: crate::probe::Facts {
                expires_at: Some(1_000 + 90 * 86_400),
                created_at: Some(1_000),
                last_used_at: Some(5_000),
                scopes: Some(vec!["read:user:bitbucket".into(), "a\"b".into()]),
                credential_type: Some("api_token".into()),
            },
        };
        store.record("bb", g, &reported, Duration::ZERO);
        let text = render(&store.read(), 0.0);
        for line in [
            "apitoken_lifetime_seconds{token=\"bb\",provider=\"jira\"} 7776000\n",
            "apitoken_last_used_timestamp_seconds{token=\"bb\",provider=\"jira\"} 5000\n",
            "apitoken_scope_info{token=\"bb\",provider=\"jira\",scope=\"read:user:bitbucket\"} 1\n",
            "apitoken_scope_info{token=\"bb\",provider=\"jira\",scope=\"a\\\"b\"} 1\n",
            "expiry_source=\"provider\",auth=\"basic\",credential_type=\"api_token\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_token_without_vendor_facts_has_no_lifetime_scope_or_credential_type_series() {
        let store = store_with("t", &[], Some(10_000));
        let text = render(&store.read(), 0.0);
        for absent in [
            "apitoken_lifetime_seconds",
            "apitoken_last_used_timestamp_seconds",
            "apitoken_scope_info",
            "credential_type=",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        assert!(text.contains(",auth=\"basic\"} 1\n"), "{text}");
    }

    #[test]
    fn a_config_with_created_at_and_expires_at_has_their_difference_as_lifetime() {
        let c = crate::config::Config::parse(
            "tokens:\n  - {name: t, provider: jira, site: \"https://x\", email: e, token_env: X, created_at: 2026-01-01, expires_at: 2026-01-08}\n",
        )
        .unwrap();
        let store = Store::new();
        let t = std::sync::Arc::new(c.tokens[0].clone());
        store.set_tokens(vec![TokenMeta::new(t)], &|_| false);
        let text = render(&store.read(), 0.0);
        assert!(
            text.contains("apitoken_lifetime_seconds{token=\"t\",provider=\"jira\"} 604800\n"),
            "{text}"
        );
    }

    /// What `promtool check metrics` holds a family to, checked in-process: HELP then TYPE
    /// once per family, before its first sample, and its samples (with a counter's
    /// `_total`) together, never after another family started.
    fn assert_well_formed(text: &str) {
        let mut families: Vec<String> = Vec::new();
        let mut helped: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line}\n{text}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped = Some(rest.split(' ').next().unwrap_or("").to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or("").to_string();
                assert_eq!(
                    helped.take().as_deref(),
                    Some(name.as_str()),
                    "TYPE without its HELP, {}",
                    at()
                );
                assert!(
                    !families.contains(&name),
                    "a second header of {name}, {}",
                    at()
                );
                families.push(name);
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = families
                .last()
                .unwrap_or_else(|| panic!("a sample before any header, {}", at()));
            assert!(
                name == family || name.strip_suffix("_total") == Some(family.as_str()),
                "{name} is not in the family whose header came last, {}",
                at()
            );
        }
        assert!(!families.is_empty());
    }

    #[test]
    fn every_family_has_one_header_before_its_samples() {
        let store = store_with("base", &[("team", "platform")], Some(2_000_000_000));
        let base = store.read().tokens["base"].meta.config.clone();
        let metas = ["a", "b", "c", "d"]
            .iter()
            .map(|name| {
                let mut c = (*base).clone();
                c.name = name.to_string();
                // Two revoked tokens: the revocation family's header must still come once.
                if *name < "c" {
                    c.revoked_at = Some(1_000);
                }
                TokenMeta::new(std::sync::Arc::new(c))
            })
            .collect();
        let g = store.set_tokens(metas, &|_| true);
        let outcomes = [
            Outcome::Valid {
                account_id: Some("x".into()),
            },
            Outcome::Rejected { status: 401 },
            Outcome::Anonymous {
                detail: "anonymous".into(),
            },
            Outcome::Error(crate::probe::ProbeError::new(
                crate::probe::ErrorReason::Timeout,
                "t",
            )),
        ];
        for ((name, gen), outcome) in g.iter().zip(outcomes) {
            store.record(name, *gen, &probed(outcome), Duration::from_millis(3));
        }
        let orgs = store.set_orgs(&["acme".into()], &|_| false);
        let inv = run(
            vec![
                listed_token("t1", "ci", "ALLOWED", Some(1_000)),
                listed_token("t2", "old", "BLOCKED", None),
            ],
            vec![key("k1", Some(2_000)), key("k2", None)],
        );
        store.record_inventory("acme", orgs["acme"], inv);
        let text = render(&store.read(), 1_500.0);
        assert_eq!(
            text.matches("# TYPE apitoken_revoked_timestamp_seconds ")
                .count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("apitoken_revoked_timestamp_seconds{").count(),
            2
        );
        assert!(
            text.contains(
                "apitoken_probe_errors_total{token=\"d\",provider=\"jira\",reason=\"timeout\"} 1\n"
            ),
            "{text}"
        );
        assert_well_formed(&text);
    }
}
