//! A `/metrics` body parsed into samples by a strict reader of the text exposition format
//! (0.0.4): lines end in `\n`, label values know only the escapes `\\`, `\"` and `\n`.
//! Every scrape in the suite goes through it, so a malformed body fails whichever test
//! reads it.

use std::collections::BTreeMap;

/// Label pairs in the order the body lists them.
pub type Labels = Vec<(String, String)>;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    /// Parses one sample line (no trailing newline).
    pub fn parse(line: &str) -> Result<Sample, String> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!("no metric name in {line:?}"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if rest.starts_with('{') {
            let (parsed, after) = parse_labels(rest).map_err(|e| format!("{e} in {line:?}"))?;
            labels = parsed;
            rest = after;
        }
        let value = rest
            .strip_prefix(' ')
            .ok_or_else(|| format!("no space before the value in {line:?}"))?;
        // An optional timestamp may follow; the exporter writes none.
        let value = value.split(' ').next().unwrap_or(value);
        let value = value
            .parse::<f64>()
            .map_err(|e| format!("bad value {value:?} in {line:?}: {e}"))?;
        Ok(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)` in `wanted` is among this sample's labels (exact match).
    fn matches(&self, name: &str, wanted: &[(&str, &str)]) -> bool {
        self.name == name && wanted.iter().all(|(k, v)| self.label(k) == Some(*v))
    }
}

/// Parses `{k="v",…}` at the start of `s`; returns the labels and the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let body = s.strip_prefix('{').ok_or("no label set")?;
    if let Some(rest) = body.strip_prefix('}') {
        return Ok((Vec::new(), rest));
    }
    let mut labels = Vec::new();
    let mut chars = body.char_indices();
    loop {
        let mut key = String::new();
        loop {
            match chars.next() {
                Some((_, '=')) => break,
                Some((_, c)) => key.push(c),
                None => return Err(format!("label {key:?} has no value")),
            }
        }
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {key} has no opening quote"));
        }
        let mut value = String::new();
        loop {
            match chars.next().map(|(_, c)| c) {
                Some('\\') => match chars.next().map(|(_, c)| c) {
                    Some('\\') => value.push('\\'),
                    Some('"') => value.push('"'),
                    Some('n') => value.push('\n'),
                    other => return Err(format!("bad escape \\{other:?} in {key}")),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => return Err(format!("unterminated value of {key}")),
            }
        }
        labels.push((key, value));
        match chars.next() {
            Some((_, ',')) => continue,
            Some((i, '}')) => return Ok((labels, &body[i + 1..])),
            other => return Err(format!("unexpected {other:?} after a label")),
        }
    }
}

/// A parsed `/metrics` body.
#[derive(Debug, Clone)]
pub struct Metrics {
    text: String,
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses a whole body: `# HELP`/`# TYPE` comments and sample lines, each ending in
    /// `\n` (not `\r\n`), no blank lines.
    pub fn parse(text: impl Into<String>) -> Result<Metrics, String> {
        let text = text.into();
        if !text.is_empty() && !text.ends_with('\n') {
            return Err("the body does not end with a newline".into());
        }
        let mut samples = Vec::new();
        for (i, line) in text.split_terminator('\n').enumerate() {
            if line.starts_with('#') {
                continue;
            }
            if line.is_empty() {
                return Err(format!("blank line {}", i + 1));
            }
            samples.push(Sample::parse(line).map_err(|e| format!("line {}: {e}", i + 1))?);
        }
        Ok(Metrics { text, samples })
    }

    /// The body as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The samples of family `name` carrying every one of `labels`.
    pub fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.matches(name, labels))
    }

    /// The value of the one sample of `name` with `labels`; None when there is none.
    /// Panics when several match: the lookup would be ambiguous.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut found = self.samples(name, labels);
        let first = found.next()?;
        if let Some(second) = found.next() {
            panic!("{name} {labels:?} is ambiguous: {first:?} and {second:?} both match");
        }
        Some(first.value)
    }

    /// As [`Metrics::value`], for a sample that must be there: fails the test with the
    /// body when it is not.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{}", self.text))
    }

    /// [`Metrics::get`] of `token`'s sample of `name`.
    pub fn for_token(&self, name: &str, token: &str) -> f64 {
        self.get(name, &[("token", token)])
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples(name, labels).next().is_some()
    }

    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.samples(name, labels).count()
    }

    /// Fails the test when any sample of `name` with `labels` exists.
    pub fn assert_absent(&self, name: &str, labels: &[(&str, &str)]) {
        let found: Vec<&Sample> = self.samples(name, labels).collect();
        assert!(
            found.is_empty(),
            "{name} {labels:?} must be absent, found {found:?}"
        );
    }

    /// Whether any sample of any family carries `key="value"`.
    pub fn mentions(&self, key: &str, value: &str) -> bool {
        self.samples.iter().any(|s| s.label(key) == Some(value))
    }

    /// `apitoken_probe_errors_total` of `token` for `reason`; 0 while never counted.
    pub fn errors(&self, token: &str, reason: &str) -> f64 {
        self.value(
            "apitoken_probe_errors_total",
            &[("token", token), ("reason", reason)],
        )
        .unwrap_or(0.0)
    }

    /// The labels of `token`'s one `apitoken_info` sample; fails the test without one.
    pub fn info(&self, token: &str) -> BTreeMap<String, String> {
        let of_token = [("token", token)];
        let mut found = self.samples("apitoken_info", &of_token);
        let info = found
            .next()
            .unwrap_or_else(|| panic!("no apitoken_info for {token}:\n{}", self.text));
        assert!(found.next().is_none(), "several apitoken_info for {token}");
        info.labels.iter().cloned().collect()
    }

    /// The `scope` labels of `token`'s `apitoken_scope_info`, in the body's order.
    pub fn scopes(&self, token: &str) -> Vec<String> {
        self.samples("apitoken_scope_info", &[("token", token)])
            .map(|s| s.label("scope").expect("a scope label").to_string())
            .collect()
    }

    /// `apitoken_probes_total` of `token` for `result`; 0 while never counted.
    pub fn probes(&self, token: &str, result: &str) -> f64 {
        self.value(
            "apitoken_probes_total",
            &[("token", token), ("result", result)],
        )
        .unwrap_or(0.0)
    }
}
