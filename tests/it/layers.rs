//! The layer rule (ARCHITECTURE.md, "Layers"): no import cycle between the modules of `src/`. A
//! module names another by `crate::a::b`, `super::b` or a `use` group; the test reads those
//! names from the source (tests excluded), maps each to the module that holds it, and fails on
//! any cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`web::api`) → its source text, less its `#[cfg(test)]` tail and comments.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            let mut text = std::fs::read_to_string(&path).unwrap();
            if let Some(at) = text.find("#[cfg(test)]") {
                text.truncate(at);
            }
            let code: String = text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// The longest known module that `path` (`web::api::status`) lies in.
fn holder<'a>(known: &'a BTreeMap<String, String>, path: &str) -> Option<&'a str> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len()).rev().find_map(|n| known.get_key_value(&segments[..n].join("::")).map(|(k, _)| k.as_str()))
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Paths named after `crate::` or `super::` (resolved against `module`), and the items of
/// `use crate::{...}` / `use super::{...}` groups.
fn named_paths(module: &str, code: &str) -> Vec<String> {
    let parent = module.rsplit_once("::").map_or("", |(p, _)| p);
    let absolute = |base: &str, rest: &str| match base {
        "super" if parent.is_empty() => rest.to_string(),
        "super" => format!("{parent}::{rest}"),
        _ => rest.to_string(),
    };
    let mut out = Vec::new();
    for base in ["crate", "super"] {
        let marker = format!("{base}::");
        let mut from = 0;
        while let Some(found) = code[from..].find(&marker) {
            let start = from + found;
            from = start + marker.len();
            if start > 0 && code[..start].chars().next_back().is_some_and(ident_char) {
                continue;
            }
            let rest = &code[from..];
            let end = rest.find(|c: char| !(ident_char(c) || c == ':')).unwrap_or(rest.len());
            let prefix = rest[..end].trim_end_matches(':');
            if let Some(group) = rest[end..].strip_prefix('{') {
                // `use crate::web::{api::X, pages}`: each item under the prefix (nested groups
                // are read by their first path only).
                let close = group.find('}').unwrap_or(group.len());
                for item in group[..close].split(',') {
                    let item: String = item.trim().chars().take_while(|&c| ident_char(c) || c == ':').collect();
                    let item = item.trim_end_matches(':');
                    if !item.is_empty() {
                        out.push(absolute(base, &if prefix.is_empty() { item.to_string() } else { format!("{prefix}::{item}") }));
                    }
                }
            } else if !prefix.is_empty() {
                out.push(absolute(base, prefix));
            }
        }
    }
    out
}

/// A cycle in the graph, if any (depth first, in module order, so the answer is stable).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(at: &str, edges: &BTreeMap<String, BTreeSet<String>>, done: &mut BTreeSet<String>, path: &mut Vec<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            let mut cycle = path[start..].to_vec();
            cycle.push(at.to_string());
            return Some(cycle);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, done, path) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut done, &mut Vec::new()))
}

fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, code) in &known {
        for path in named_paths(module, code) {
            let Some(target) = holder(&known, &path) else { continue };
            // A module may name itself and its ancestors' items (`super::Failure` from a child).
            if target == module || target.is_empty() || module.starts_with(&format!("{target}::")) {
                continue;
            }
            edges.entry(module.clone()).or_default().insert(target.to_string());
        }
    }
    edges
}

#[test]
fn no_module_of_src_imports_in_a_cycle() {
    let edges = module_graph(&super::common::repo_root().join("src"));
    assert!(edges.len() > 30, "the graph was not read: {edges:?}");
    assert!(edges["web::api"].contains("web::candidate"), "known edges are found: {:?}", edges["web::api"]);
    if let Some(cycle) = find_cycle(&edges) {
        panic!("an import cycle: {} (ARCHITECTURE.md, \"Layers\": move what both need to a lower module)", cycle.join(" -> "));
    }
}

#[test]
fn the_cycle_finder_finds_a_planted_cycle() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("web")).unwrap();
    std::fs::write(dir.path().join("lib.rs"), "pub mod a;\npub mod web;\n").unwrap();
    std::fs::write(dir.path().join("a.rs"), "use crate::web::{pages::Page, Failure};\n").unwrap();
    std::fs::write(dir.path().join("web/mod.rs"), "pub mod pages;\npub struct Failure;\n").unwrap();
    std::fs::write(dir.path().join("web/pages.rs"), "// crate::a::x in a comment is no edge\nfn f() { super::super::a::g(); crate::a::f() }\n").unwrap();
    let edges = module_graph(dir.path());
    assert!(edges["a"].contains("web::pages"), "a group's items are named under its prefix: {edges:?}");
    assert_eq!(find_cycle(&edges), Some(vec!["a".to_string(), "web::pages".to_string(), "a".to_string()]), "{edges:?}");
}

/// HTML is written through maud templates, which escape every value: text becomes markup only
/// through `PreEscaped`, and only where the markup is ours or a library's that escapes (CSS, other
/// templates' output joined under a budget, tree-sitter's highlighter, pulldown-cmark with raw
/// HTML turned into text). A new `PreEscaped`, or a hand-written entity escape, fails here until
/// it is reviewed and added with its reason.
#[test]
fn html_is_escaped_by_the_template_engine_only() {
    let allowed: BTreeMap<&str, usize> = [
        ("report::html", 1),   // STYLE
        ("review::code", 1),   // tree-sitter's renderer (it escapes the source)
        ("web", 2),            // PAGE_STYLE, &nbsp;
        ("web::candidate", 1), // STYLE
        ("web::pages", 1),     // the brief: review::markdown
        ("web::review", 7),    // code::CSS ×2, review::markdown ×2, joined templates ×3
        ("web::signals", 3),   // its CSS, joined templates ×2
    ]
    .into_iter()
    .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    for (module, code) in modules(&src) {
        let n = code.matches("PreEscaped(").count();
        if n > 0 {
            found.insert(module.clone(), n);
        }
        // Markdown's own escaping, and JUnit XML (not a page).
        if module != "report::markdown" && module != "check" {
            assert!(!code.contains("\"&lt;\"") && !code.contains("\"&amp;\""), "{module} escapes HTML by hand: write a template");
        }
    }
    let found: BTreeMap<&str, usize> = found.iter().map(|(m, n)| (m.as_str(), *n)).collect();
    assert_eq!(found, allowed, "PreEscaped by module: review each new one (is the text ours, or escaped by a library?) and list it here");
}
