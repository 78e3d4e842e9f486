//! The source's layering, kept true: no two files of `src/` use each other, directly or
//! through others (a child module may use its parent's own items; nothing else may come back
//! up a chain). Each file's `crate::`, `super::` and `self::` paths (and `use` groups) are
//! read, outside its tests, and resolved to the file of the longest module they name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn files(dir: &Path, root: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).unwrap().with_extension("");
            let mut module: Module = rel.iter().map(|p| p.to_string_lossy().into()).collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.insert(module, path);
        }
    }
}

/// The module `path` (starting with `crate`, `super` or `self`) names, seen from module `from`.
fn absolute(from: &Module, path: &[&str]) -> Option<Module> {
    let mut words = path.iter().copied().peekable();
    let mut at: Module = match words.next()? {
        "crate" => Vec::new(),
        "self" | "super" => from.clone(),
        _ => return None,
    };
    if path[0] == "super" {
        at.pop();
    }
    while words.peek() == Some(&"super") {
        words.next();
        at.pop();
    }
    at.extend(words.map(String::from));
    Some(at)
}

/// The file module that holds `module` (its longest prefix that is a file).
fn file_of(modules: &BTreeMap<Module, PathBuf>, module: &Module) -> Option<Module> {
    (0..=module.len())
        .rev()
        .map(|n| module[..n].to_vec())
        .find(|m| modules.contains_key(m))
}

fn uses(module: &Module, path: &Path) -> BTreeSet<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .split("#[cfg(test)]\nmod tests")
        .next()
        .unwrap_or_default();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    let word = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    for (i, _) in code.match_indices(['c', 's']) {
        if i > 0 && word(code[..i].chars().next_back().unwrap()) {
            continue;
        }
        let rest = &code[i..];
        let end = rest.find(|c| !word(c)).unwrap_or(rest.len());
        let words: Vec<&str> = rest[..end].split("::").filter(|w| !w.is_empty()).collect();
        if words.len() < 2 || !matches!(words[0], "crate" | "super" | "self") {
            continue;
        }
        if let Some(target) = absolute(module, &words) {
            found.insert(target.clone());
            // `use a::b::{c, d::e}`: each item of the group.
            if rest[end..].starts_with('{')
                && let Some(close) = rest[end..].find('}')
            {
                for item in rest[end + 1..end + close].split(',') {
                    let item = item.split_whitespace().next().unwrap_or_default();
                    if !item.is_empty() && item != "self" {
                        let mut m = target.clone();
                        m.extend(item.split("::").map(String::from));
                        found.insert(m);
                    }
                }
            }
        }
    }
    found
}

#[test]
fn no_file_of_src_comes_back_to_one_that_uses_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules = BTreeMap::new();
    files(&root, &root, &mut modules);
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (module, path) in &modules {
        let targets = uses(module, path)
            .iter()
            .filter_map(|m| file_of(&modules, m))
            // A child may use its parent's own items.
            .filter(|t| t != module && !module.starts_with(t))
            .collect();
        edges.insert(module.clone(), targets);
    }
    // Each file's reach; a file that reaches back to itself is on a loop.
    let mut loops = Vec::new();
    for start in edges.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&Module> = edges[start].iter().collect();
        while let Some(m) = todo.pop() {
            if m == start {
                loops.push(start.join("::"));
                break;
            }
            if seen.insert(m.clone()) {
                todo.extend(edges.get(m).into_iter().flatten());
            }
        }
    }
    assert!(
        loops.is_empty(),
        "files of src/ on an import loop (each uses another that comes back to it): {loops:?}"
    );
    assert!(modules.len() > 50, "read the source: {}", modules.len());
}
