//! The consumer's layering, read from its source: the database layer knows nothing of HTTP, and
//! no two of the consumer's modules import each other (directly or round a longer circle).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The top-level modules of `src/` (a file or a folder each) and the modules each one names in
/// `use crate::…` (or `crate::…` paths anywhere in its code, test modules included).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a UTF-8 name")
            .to_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut text = String::new();
        collect_sources(&path, &mut text);
        let uses = crate_paths(&text)
            .into_iter()
            .filter(|used| *used != name)
            .collect();
        graph.insert(name, uses);
    }
    graph
}

fn collect_sources(path: &Path, text: &mut String) {
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("read a module folder") {
            collect_sources(&entry.expect("a directory entry").path(), text);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        text.push_str(&fs::read_to_string(path).expect("read a source file"));
    }
}

/// The first segment of every `crate::` path in code (comments left out), also inside a
/// group (`crate::{a::X, b}`).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `event_consumer::`-style paths and the like
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` and after each `,` at depth 0.
            let mut depth = 0;
            let mut at_name = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => at_name = true,
                    c if at_name && (c.is_alphanumeric() || c == '_') => {
                        found.insert(first_segment(&group[i..]));
                        at_name = false;
                    }
                    _ => {}
                }
            }
        } else {
            let segment = first_segment(rest);
            if !segment.is_empty() {
                found.insert(segment);
            }
        }
    }
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn the_database_layer_imports_nothing_of_the_consumer_outside_itself() {
    let graph = module_graph();
    let db = graph.get("db").expect("src/db/ exists");
    assert!(
        db.is_empty(),
        "db/ must take plain data and know nothing of HTTP, but it uses crate::{db:?}"
    );
}

#[test]
fn no_two_modules_of_the_consumer_import_each_other() {
    let graph = module_graph();
    assert!(graph.len() > 5, "found the modules: {graph:?}");
    // Depth-first search for a back edge; the circle is named in the message.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(start) = path.iter().position(|n| *n == node) {
            panic!(
                "the consumer's modules import each other in a circle: {} -> {node}",
                path[start..].join(" -> ")
            );
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                visit(next, graph, path, done);
            }
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
}
