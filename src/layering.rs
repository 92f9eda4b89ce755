//! The crate's layers, checked: each top-level module may use only modules of its own layer
//! or below, and modules of one layer may not use each other in a cycle. The test reads the
//! source files (every `crate::` path outside comments, in `use` lines and inline), so the
//! picture in the README's architecture section stays true as the code changes.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. A module not listed here fails the test until it is given a layer.
pub const LAYERS: &[(&str, &[&str])] = &[
    ("leaves", &["s3", "values", "draw", "body", "timer"]),
    ("faults", &["faults"]),
    ("scenario", &["scenario"]),
    ("engine", &["engine"]),
    ("services", &["control", "drill", "reload", "telemetry", "library"]),
    ("proxy", &["proxy"]),
    (
        "front",
        &[
            "admin", "report", "verdict", "explore", "embedded", "frontend", "testing", "layering",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, members)| members.contains(&module))
}

/// The top-level module a source file belongs to (`faults/reset.rs` → `faults`).
fn module_of(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The top-level modules named by `crate::` paths in `text`, comments left out.
fn uses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::X, b};`
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != "self" {
                        found.push(name);
                    }
                }
                continue;
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Checks `files` (path relative to `src/`, text): returns every edge that goes up a layer,
/// every module without a layer, and every cycle between modules of one layer.
pub fn check(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (path, text) in files {
        let from = module_of(path);
        if matches!(from, "lib" | "main" | "cli") {
            continue;
        }
        let Some(from_layer) = layer_of(from) else {
            problems.push(format!("{path}: module `{from}` has no layer in LAYERS"));
            continue;
        };
        for to in uses(text) {
            if to == from {
                continue;
            }
            let Some(to_layer) = layer_of(&to) else {
                continue; // not a module of this crate's tree (a macro, say)
            };
            if to_layer > from_layer {
                problems.push(format!(
                    "{path}: `{from}` ({}) uses `crate::{to}` ({}), a layer above it",
                    LAYERS[from_layer].0, LAYERS[to_layer].0
                ));
            } else if to_layer == from_layer {
                edges.entry(from.to_owned()).or_default().insert(to, path.clone());
            }
        }
    }
    for (a, targets) in &edges {
        for (b, path) in targets {
            if let Some(back) = edges.get(b).and_then(|t| t.get(a))
                && a < b
            {
                problems.push(format!("`{a}` and `{b}` use each other ({path}, {back})"));
            }
        }
    }
    problems
}

/// Every `.rs` file under `dir`, with its path relative to `root`.
pub fn read_tree(root: &Path) -> std::io::Result<Vec<(String, String)>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, std::fs::read_to_string(&path)?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Vec<(String, String)> {
        read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")).unwrap()
    }

    #[test]
    fn every_module_imports_only_downward() {
        let files = src();
        assert!(files.len() > 40, "read the source tree ({} files)", files.len());
        let problems = check(&files);
        assert!(problems.is_empty(), "layering broken:\n{}", problems.join("\n"));
    }

    #[test]
    fn an_upward_import_is_caught() {
        let mut files = src();
        files.push((
            "faults/new_fault.rs".into(),
            "use crate::body::ProxyBody;\nuse crate::proxy::conn::ClientStream;\n".into(),
        ));
        files.push((
            "scenario/x.rs".into(),
            "fn f() { crate::engine::Engine::new(todo!()); }".into(),
        ));
        files.push((
            "timer.rs".into(),
            "use crate::{s3::Operation, telemetry::Telemetry};".into(),
        ));
        let problems = check(&files);
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("`faults` (faults) uses `crate::proxy` (proxy)"));
        assert!(problems[1].contains("`scenario` (scenario) uses `crate::engine`"));
        assert!(problems[2].contains("`timer` (leaves) uses `crate::telemetry`"));
        // Comments do not count.
        assert!(check(&[("faults/a.rs".into(), "//! see [`crate::proxy`]\n".into())]).is_empty());
    }

    #[test]
    fn a_cycle_within_a_layer_is_caught() {
        let files = vec![
            ("control.rs".to_string(), "use crate::drill::X;".to_string()),
            ("drill.rs".to_string(), "use crate::control::Control;".to_string()),
        ];
        let problems = check(&files);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`control` and `drill` use each other"));
    }

    #[test]
    fn a_new_module_needs_a_layer() {
        let problems = check(&[("newthing.rs".into(), String::new())]);
        assert!(problems[0].contains("has no layer"), "{problems:?}");
    }
}
