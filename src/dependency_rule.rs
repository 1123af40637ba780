//! The dependency rule of docs/architecture.md, checked on the source itself: at every
//! level of the module tree, sibling modules depend on each other without a cycle
//! (`providers` may use `upstream`, never the other way round). A parent and its own
//! children may refer to each other (a parent registers or re-exports its children; a
//! child uses what its parent shares), and test modules are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`providers::atlassian::jira`, "" for the crate root) -> its source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            match parts.last().map(String::as_str) {
                Some("main") if parts.len() == 1 => continue, // the binary, not the library
                Some("lib") if parts.len() == 1 => parts.clear(),
                Some("mod") => {
                    parts.pop();
                }
                _ => {}
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            out.insert(parts.join("::"), production_code(&text));
        }
    }
    out
}

/// The source without comments and without the trailing `#[cfg(test)] mod …` block.
fn production_code(text: &str) -> String {
    let mut out = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]")
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Every path written after `crate::`, `super::` or `self::`, with `{…}` groups expanded,
/// as segments relative to the crate root.
fn referenced_paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !is_ident_byte(bytes[i - 1]);
        // Matched on bytes: `i` may be inside a multi-byte character of a string literal.
        let rest = &bytes[i..];
        let base = if !starts_word {
            None
        } else if rest.starts_with(b"crate::") {
            Some((Vec::new(), "crate::".len()))
        } else if rest.starts_with(b"self::") {
            Some((here.clone(), "self::".len()))
        } else if rest.starts_with(b"super::") {
            let mut base = here.clone();
            let mut len = 0;
            while bytes[i + len..].starts_with(b"super::") {
                base.pop();
                len += "super::".len();
            }
            Some((base, len))
        } else {
            None
        };
        match base {
            Some((base, len)) => {
                let consumed = parse_tree(&text[i + len..], &base, &mut out);
                i += len + consumed.max(1);
            }
            None => i += 1,
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` at the start of `s`, pushing each leaf path (prefixed by
/// `prefix`); returns the bytes consumed.
fn parse_tree(s: &str, prefix: &[String], out: &mut Vec<Vec<String>>) -> usize {
    let bytes = s.as_bytes();
    let mut path = prefix.to_vec();
    let mut i = 0;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < bytes.len() && bytes[i] == b'{' {
            i += 1;
            loop {
                i += parse_tree(&s[i..], &path, out);
                while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b',') {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'}' {
                    return i + 1;
                }
            }
        }
        let start = i;
        while i < bytes.len() && is_ident_byte(bytes[i]) {
            i += 1;
        }
        if start == i {
            out.push(path);
            return i;
        }
        path.push(s[start..i].to_string());
        if s[i..].starts_with("::") {
            i += 2;
        } else {
            out.push(path);
            return i;
        }
    }
}

/// The longest known module that is a prefix of `path`.
fn owning_module(path: &[String], known: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| known.contains(p))
        .unwrap_or_default()
}

/// Every dependency edge between distinct modules, as module paths.
fn edges(src: &Path) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mods = modules(src);
    let split = |m: &str| -> Vec<String> {
        m.split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let known: BTreeSet<Vec<String>> = mods.keys().map(|m| split(m)).collect();
    let mut out = BTreeSet::new();
    for (m, text) in &mods {
        let from = split(m);
        for path in referenced_paths(m, text) {
            let to = owning_module(&path, &known);
            if to != from {
                out.insert((from.clone(), to));
            }
        }
    }
    out
}

/// For each parent module, the edges between its children (each endpoint lifted to the
/// child of that parent containing it), and a cycle among them if there is one.
fn sibling_cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let mut by_parent: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (from, to) in edges {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        // One contains the other: a parent and its own descendant.
        if common == from.len() || common == to.len() {
            continue;
        }
        by_parent
            .entry(from[..common].to_vec())
            .or_default()
            .entry(from[common].clone())
            .or_default()
            .insert(to[common].clone());
    }
    let mut cycles = Vec::new();
    for (parent, graph) in &by_parent {
        if let Some(cycle) = find_cycle(graph) {
            let at = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            cycles.push(format!("in {at}: {}", cycle.join(" -> ")));
        }
    }
    cycles
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_depends_on_its_siblings_in_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    assert!(edges.len() > 20, "the scan found too few edges: {edges:?}");
    let cycles = sibling_cycles(&edges);
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_bottom_layers_depend_on_nothing_above_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = edges(&src);
    let allowed: BTreeMap<&str, &[&str]> = BTreeMap::from([
        ("util", &[][..]),
        ("secret", &["util"][..]),
        ("probe", &["secret"][..]),
        ("upstream", &["probe", "secret", "util"][..]),
    ]);
    for (from, to) in &edges {
        let (Some(f), Some(t)) = (from.first(), to.first()) else {
            continue;
        };
        if let Some(ok) = allowed.get(f.as_str()) {
            assert!(
                f == t || ok.contains(&t.as_str()),
                "{} depends on {} (allowed: {ok:?})",
                from.join("::"),
                to.join("::")
            );
        }
    }
}

#[test]
fn the_checker_sees_a_cycle_and_grouped_imports() {
    let mut edges = BTreeSet::new();
    let m = |s: &str| -> Vec<String> { s.split("::").map(str::to_string).collect() };
    edges.insert((m("a"), m("b::x")));
    edges.insert((m("b::y"), m("a")));
    edges.insert((m("b::x"), m("b"))); // child -> parent: allowed
    let cycles = sibling_cycles(&edges);
    assert_eq!(cycles, vec!["in crate: a -> b -> a".to_string()]);

    let paths = referenced_paths(
        "p::q",
        "use crate::{a::X, b::{c::Y, Z}};\nuse super::super::r::T; let v = self::s::f();",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["a::X", "b::c::Y", "b::Z", "r::T", "p::q::s::f"]);
}
