//! Input guards: limits that keep a hostile or broken config file from costing more than
//! it should (size, nesting depth), the YAML error text, and redaction of anything in an
//! error that looks like a credential.

use crate::providers::Provider;
use crate::secret::looks_like_secret;

/// Config files larger than this are refused before parsing (a YAML bomb guard; 10,000
/// tokens take well under 4 MiB).
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// Deepest nesting of flow collections (`[`, `{`) accepted; the schema needs 3
/// (`tokens: [{labels: {…}}]`). libyaml's scanner re-walks its stack of open flow levels
/// for every token, so parsing costs depth × size: 100,000 nested `[` took 15 s (release)
/// to reject, a 16 MiB file of them hours. Deep input is refused before parsing instead.
pub(super) const MAX_FLOW_DEPTH: usize = 64;

/// Line and column (1-based) where flow collections first nest deeper than
/// [`MAX_FLOW_DEPTH`]. A linear pre-scan, not a YAML parser: brackets inside quoted
/// scalars and comments do not count; a plain scalar full of unbalanced `[` may (a false
/// alarm no real config raises).
pub(super) fn flow_too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let (mut quote, mut escaped, mut comment) = (None, false, false);
    let mut prev = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column, comment) = (line + 1, 0, false);
        } else if comment {
        } else if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if q == '\'' && c == '\'' && chars.peek() == Some(&'\'') {
                chars.next(); // `''` is an escaped quote inside single quotes
                column += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                '#' if prev.is_whitespace() => comment = true,
                // A quote opens a quoted scalar only where a scalar can start (`it's` is
                // a plain scalar).
                '"' | '\'' if prev.is_whitespace() || "[{,:".contains(prev) => quote = Some(c),
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, column));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        prev = c;
    }
    None
}

/// Names the exact field (`tokens[2].expires_at`) with serde_path_to_error, keeps
/// serde_yaml's message and position. serde_yaml prefixes its message with the *parent*
/// path for errors raised inside a field's type; that prefix is replaced by the full path.
pub(super) fn yaml_error(e: &serde_path_to_error::Error<serde_yaml::Error>) -> String {
    let inner = e.inner();
    let msg = inner.to_string();
    if inner.location().is_none() {
        return format!("invalid YAML: {msg}");
    }
    let path = e.path().to_string();
    let msg = match msg.split_once(": ") {
        Some((prefix, rest)) if !prefix.contains(' ') => rest.to_string(),
        _ => msg,
    };
    if path == "." || path.is_empty() {
        format!("invalid YAML: {msg}")
    } else if msg.starts_with("unknown field") || msg.starts_with("missing field") {
        // The path already ends at the offending key's parent plus the key itself.
        let parent = path.rsplit_once('.').map_or(path.as_str(), |(p, _)| p);
        let parent = if msg.starts_with("missing field") {
            path.as_str()
        } else {
            parent
        };
        format!("{parent}: {msg}")
    } else {
        format!("{path}: {msg}")
    }
}

pub(super) const PASTED_TOKEN: &str = "this looks like a token itself; put it in an environment variable or file and name that here (inline secrets are not supported)";

/// Whether `s` looks like a credential: it starts with a prefix that a registered provider
/// declares for its secrets, or has a credential's shape whatever the vendor
/// ([`looks_like_secret`]). Used to keep a secret written into the config out of every
/// error message.
pub(super) fn looks_like_token(s: &str) -> bool {
    let s = s.trim();
    (s.len() >= 20 && Provider::all_secret_prefixes().any(|p| s.starts_with(p)))
        || looks_like_secret(s)
}

/// Replaces every token-looking word in an error message by `***` (serde quotes the values
/// it cannot use, e.g. `invalid type: string "ATATT…"`).
pub(super) fn redact_tokens(msg: &str) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric() || "-_=+/.".contains(c);
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(start) = rest.find(|c: char| is_word(c)) {
        out.push_str(&rest[..start]);
        let word_len = rest[start..]
            .find(|c: char| !is_word(c))
            .unwrap_or(rest.len() - start);
        let word = &rest[start..start + word_len];
        out.push_str(if looks_like_token(word) { "***" } else { word });
        rest = &rest[start + word_len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_where_it_starts() {
        let deep = format!("tokens:\n  - {}", "[".repeat(10_000));
        assert_eq!(flow_too_deep(&deep), Some((2, 5 + MAX_FLOW_DEPTH)));
        let ok = format!(
            "x: {}{}",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(flow_too_deep(&ok), None);
    }

    #[test]
    fn brackets_in_quotes_and_comments_do_not_count() {
        let many = "[".repeat(100);
        for text in [
            format!("a: \"{many}\"\n"),
            format!("a: '{many}'\n"),
            format!("a: 'it''s {many}'\n"),
            format!("a: \"\\\" {many}\"\n"),
            format!("# {many}\na: 1 # {many}\n"),
        ] {
            assert_eq!(flow_too_deep(&text), None, "{text}");
        }
        // `it's` is plain: the quote does not hide what follows.
        assert!(flow_too_deep(&format!("a: it's {many}\n")).is_some());
    }
}
