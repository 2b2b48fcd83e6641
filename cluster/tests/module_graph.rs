//! ARCHITECTURE.md promises that the modules of each crate depend on each
//! other without a circle (the protocol modules reach each other through
//! `transport`, models import nothing from checkers). This test reads every
//! `crate::` path in the code (comments aside) of `cluster`, `harness` and
//! `workloads`, builds the graph of top-level modules, and fails on a cycle,
//! naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> the top-level modules it names through `crate::`.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("a folder entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

fn identifier(text: &str) -> String {
    text.trim_start().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect()
}

/// The first path segment after each `crate::` of `line`, with each item of
/// a `crate::{a::x, b}` group.
fn modules_named(line: &str) -> Vec<String> {
    let mut named = Vec::new();
    for (at, _) in line.match_indices("crate::") {
        let rest = &line[at + "crate::".len()..];
        let Some(group) = rest.strip_prefix('{') else {
            named.push(identifier(rest));
            continue;
        };
        let (mut depth, mut item_start) = (1, true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 1 => break,
                '}' => depth -= 1,
                ',' if depth == 1 => item_start = true,
                c if item_start && !c.is_whitespace() => {
                    named.push(identifier(&group[i..]));
                    item_start = false;
                }
                _ => {}
            }
        }
    }
    named.into_iter().filter(|name| !name.is_empty()).collect()
}

fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative.components().next().expect("a path").as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if ["lib", "main", "bin"].contains(&module.as_str()) {
            continue; // the crate root and binaries may name anything
        }
        let text = std::fs::read_to_string(&file).expect("a readable source file");
        let code = text.lines().filter(|line| !line.trim_start().starts_with("//"));
        let named: BTreeSet<String> = code.flat_map(modules_named).filter(|name| *name != module).collect();
        graph.entry(module).or_default().extend(named);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten().filter(|n| graph.contains_key(*n)) {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_parser_and_the_cycle_finder_work() {
    assert_eq!(modules_named("use crate::transport::{Entry, Transport};"), ["transport"]);
    assert_eq!(modules_named("use crate::{a::{b, c}, d, e::f};"), ["a", "d", "e"]);
    assert_eq!(modules_named("let now = crate::clock::monotonic_now();"), ["clock"]);
    let graph = |edges: &[(&str, &str)]| {
        let mut graph = Graph::new();
        for (from, to) in edges {
            graph.entry(from.to_string()).or_default().insert(to.to_string());
            graph.entry(to.to_string()).or_default();
        }
        graph
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn no_crate_has_a_circle_of_modules() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    for krate in ["cluster", "harness", "workloads"] {
        let graph = graph_of(&workspace.join(krate).join("src"));
        assert!(graph.len() > 2, "{krate}: too few modules found to mean anything: {graph:?}");
        if let Some(found) = cycle(&graph) {
            panic!("{krate}'s modules import each other in a circle: {}", found.join(" -> "));
        }
    }
}
