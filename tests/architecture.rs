//! The layout's promises, read from the source (docs/ARCHITECTURE.md): imports between
//! `src/`'s top-level modules flow one way (no cycle), motion sources and renderers never
//! import each other, GStreamer types appear only in the element's folder (and in
//! `lib.rs`'s plugin definition and the render command, which builds a pipeline), and no
//! source file grows past about 800 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The top-level module a file of the library belongs to (`None`: lib.rs, bin/).
fn top_module(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative
        .components()
        .next()?
        .as_os_str()
        .to_str()?
        .to_owned();
    if first == "lib.rs" || first == "bin" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// The code of a file without its comments (doc links are not imports).
fn code(file: &Path) -> String {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::name` references of a piece of code.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            // `crate::{a, b}`.
            let group = &rest[1..rest.find('}').unwrap_or(rest.len())];
            for part in group.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.insert(name.to_owned());
                }
            }
        } else {
            found.insert(name);
        }
    }
    found
}

/// Which top-level module uses which.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&src()) {
        let Some(module) = top_module(&file) else {
            continue;
        };
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_references(&code(&file)) {
            if used != module {
                uses.insert(used);
            }
        }
    }
    graph
}

#[test]
fn no_import_cycle_among_the_top_level_modules() {
    let graph = module_graph();
    assert!(graph.len() >= 8, "{graph:?}");
    // Depth-first search for a back edge.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(start) = path.iter().position(|n| n == node) {
            panic!("import cycle: {} -> {node}", path[start..].join(" -> "));
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        visit(node, &graph, &mut Vec::new(), &mut done);
    }
    // The two axes are independent of each other, and `core` is below everything.
    assert!(!graph["motion"].contains("render"), "{:?}", graph["motion"]);
    assert!(!graph["render"].contains("motion"), "{:?}", graph["render"]);
    assert!(graph["core"].is_empty(), "core uses {:?}", graph["core"]);
    for (module, uses) in &graph {
        if module != "vasafacegen" {
            assert!(!uses.contains("vasafacegen"), "{module} uses the element");
        }
    }
}

#[test]
fn gstreamer_types_only_in_the_element() {
    for file in rust_files(&src()) {
        let relative = file.strip_prefix(src()).unwrap();
        let allowed = relative.starts_with("vasafacegen")
            || relative == Path::new("lib.rs")
            || relative.starts_with("bin");
        if allowed {
            continue;
        }
        let code = code(&file);
        for needle in [
            "gst::",
            "gst_video",
            "gst_audio",
            "gst_base",
            "glib::",
            "use gst",
        ] {
            assert!(
                !code.contains(needle),
                "{} uses GStreamer ({needle})",
                relative.display()
            );
        }
    }
}

#[test]
fn no_source_file_over_about_800_lines() {
    for file in rust_files(&src()) {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(
            lines <= 820,
            "{} has {lines} lines",
            file.strip_prefix(src()).unwrap().display()
        );
    }
}

#[test]
fn the_reference_scanner_reads_both_forms() {
    let found = crate_references("use crate::core::X;\nuse crate::{bundle::B, render};\n");
    assert_eq!(
        found,
        BTreeSet::from(["core".to_owned(), "bundle".to_owned(), "render".to_owned()])
    );
}
