//! Property tests: the config parser never panics whatever it is fed, and label values of
//! any content survive the exposition format (checked by our own parser and by the real
//! `promtool check metrics`).

use std::collections::BTreeMap;

use apitoken_exporter::config::Config;
use apitoken_exporter::metrics::render;
use apitoken_exporter::state::{Store, TokenMeta};
use proptest::prelude::*;
use serde_yaml::Value;

use crate::harness::inproc::token_config;
use crate::harness::{promtool_check_metrics, Metrics};

// ---- (a) the config parser never panics --------------------------------------------------

/// Pieces of YAML syntax and of our schema, to build inputs that get past the first byte.
const FRAGMENTS: &[&str] = &[
    "global:",
    "tokens:",
    "organizations:",
    "\n",
    "\n  ",
    "\n    ",
    "- ",
    "  - ",
    ": ",
    "name: a",
    "provider: jira",
    "provider: atlassian_admin",
    "site: https://x",
    "site: http://127.0.0.1:1",
    "email: e@x",
    "token_env: X",
    "token_file: /f",
    "expires_at: 2026-12-31",
    "created_at: 2026-01-01T00:00:00Z",
    "lifetime: 90d",
    "probe_interval: 5m",
    "probe_interval: 0s",
    "labels: {a: b}",
    "labels:",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!str ",
    "!!binary ",
    "? ",
    "|",
    ">",
    "'",
    "\"",
    "#",
    "---",
    "...",
    "%YAML 1.2",
    "~",
    "null",
    "true",
    "1e400",
    "-",
    "\t",
    "\u{0}",
    "\u{feff}",
    "<<: *a",
];

fn yamlish() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(FRAGMENTS), 0..80).prop_map(|v| v.concat())
}

const KEYS: &[&str] = &[
    "global",
    "tokens",
    "organizations",
    "name",
    "provider",
    "site",
    "email",
    "token_env",
    "token_file",
    "expires_at",
    "created_at",
    "lifetime",
    "expected_account_id",
    "revoked_at",
    "org_token_id",
    "probe_interval",
    "probe_timeout",
    "max_concurrency",
    "default_token_lifetime",
    "allow_insecure_http",
    "labels",
    "org_id",
    "api_key_env",
    "api_key_file",
    "base_url",
    "team",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        prop::sample::select(
            &[
                "jira",
                "confluence",
                "bitbucket",
                "atlassian_admin",
                "5m",
                "1s",
                "0s",
                "365d",
                "2026-12-31",
                "2026-01-01T00:00:00Z",
                "https://acme.atlassian.net",
                "http://127.0.0.1:1",
                "https://u:p@x",
                "X",
                "1BAD",
                "a-b.c_d",
                "",
                " ",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        any::<f64>().prop_map(|f| Value::Number(f.into())),
        Just(Value::Null),
    ]
}

/// Arbitrary YAML trees whose keys are mostly the schema's own.
fn yaml_tree() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
            prop::collection::vec(
                (
                    prop_oneof![
                        4 => prop::sample::select(KEYS).prop_map(|k| Value::String(k.into())),
                        1 => scalar(),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Mapping(kv.into_iter().collect())),
        ]
    })
}

/// Ok or a non-empty list of problems; reaching the end at all means no panic.
fn parse_never_panics(text: &str) {
    match Config::parse(text) {
        Ok(c) => {
            let mut names: Vec<&str> = c.tokens.iter().map(|t| t.name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), c.tokens.len(), "duplicate names accepted");
        }
        Err(problems) => assert!(!problems.is_empty(), "an error without a problem"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn config_parser_never_panics_on_arbitrary_strings(text in any::<String>()) {
        parse_never_panics(&text);
    }

    #[test]
    fn config_parser_never_panics_on_yaml_fragments(text in yamlish()) {
        parse_never_panics(&text);
    }

    #[test]
    fn config_parser_never_panics_on_yaml_structures(tree in yaml_tree()) {
        let text = serde_yaml::to_string(&tree).unwrap();
        parse_never_panics(&text);
    }
}

// ---- (b) label values round-trip through the exposition format ---------------------------

/// Label values that stress the escaping: any Unicode, plus the three escaped characters
/// and their look-alikes, often.
fn label_value() -> impl Strategy<Value = String> {
    let tricky = prop::sample::select(
        &[
            "\\",
            "\"",
            "\n",
            "\\n",
            "\\\"",
            "\r",
            "\t",
            "\u{0}",
            "}",
            "{",
            ",",
            "=",
            " 1\n",
            "# HELP",
            "é",
            "\u{1F600}",
            "\u{2028}",
            "\u{feff}",
            "",
        ][..],
    )
    .prop_map(str::to_string);
    prop::collection::vec(prop_oneof![tricky, any::<String>()], 0..8).prop_map(|v| v.concat())
}

/// A store with one jira token `t{i}` per entry, carrying labels `team` and `owner`.
fn store_with_labels(values: &[(String, String)]) -> Store {
    let metas = values
        .iter()
        .enumerate()
        .map(|(i, (team, owner))| {
            let mut t = token_config(&format!("t{i}"));
            t.labels = BTreeMap::from([
                ("team".to_string(), team.clone()),
                ("owner".to_string(), owner.clone()),
            ]);
            TokenMeta::new(std::sync::Arc::new(t))
        })
        .collect();
    let store = Store::new();
    store.set_tokens(metas, &|_| true);
    store
}

/// The `team`/`owner` labels of every `apitoken_info` sample, by token, read back by the
/// harness's strict exposition parser (escapes `\\`, `\"`, `\n` only; lines split at
/// `\n`, never `\r\n`).
fn info_labels(text: &str) -> Result<BTreeMap<String, (String, String)>, String> {
    let m = Metrics::parse(text)?;
    let mut out = BTreeMap::new();
    for s in m.samples("apitoken_info", &[]) {
        if s.value != 1.0 {
            return Err(format!("info value {}", s.value));
        }
        let get = |k: &str| {
            s.label(k)
                .map(str::to_string)
                .ok_or(format!("no {k} label"))
        };
        out.insert(get("token")?, (get("team")?, get("owner")?));
    }
    Ok(out)
}

/// Runs the real `promtool check metrics` on `text`; Err with what it said unless it
/// passed.
fn promtool_check(text: &str) -> Result<(), String> {
    let (status, said) = promtool_check_metrics(text);
    if status.success() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {status}\n{said}"))
    }
}

fn batch() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((label_value(), label_value()), 1..64)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn label_values_round_trip_through_the_exposition(values in batch()) {
        let store = store_with_labels(&values);
        let text = render(&store.read(), 1_700_000_000.0);
        let parsed = info_labels(&text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(parsed.len(), values.len());
        for (i, want) in values.iter().enumerate() {
            prop_assert_eq!(&parsed[&format!("t{i}")], want);
        }
    }
}

proptest! {
    // Each case is one promtool run over a batch of up to 63 tokens' worth of label values.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn promtool_accepts_every_rendered_label_value(values in batch()) {
        let store = store_with_labels(&values);
        let text = render(&store.read(), 1_700_000_000.0);
        promtool_check(&text).map_err(TestCaseError::fail)?;
    }
}

#[test]
fn promtool_check_is_real_and_catches_a_bad_escape() {
    // Guards the property above against a promtool that accepts anything.
    assert!(promtool_check("x{a=\"b\\q\"} 1\n").is_err());
    let store = store_with_labels(&[("a\"b\\c\nd".into(), "\u{0}\r\t\u{1F600}".into())]);
    promtool_check(&render(&store.read(), 0.0)).unwrap();
}
