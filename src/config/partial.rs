//! Finding every problem of a config in one run, even when some of it does not parse: keys
//! written twice, target names used twice (both on the document as written), and what can be
//! resolved of the parts the schema did not reject.

use std::collections::HashMap;

use serde_json::Value;

use super::position::Position;
use super::{Os, Problem, key_path, raw, resolve};

/// A problem for each key written a second time in the same mapping (YAML keeps the last).
pub fn written_twice(duplicates: &[(String, Position, Position)]) -> Vec<Problem> {
    duplicates
        .iter()
        .map(|(pointer, first, _)| {
            let key = key_path(pointer);
            let key = key.rsplit('.').next().unwrap_or(&key);
            Problem::new(
                pointer.clone(),
                format!(
                    "`{key}` is written twice here (first at line {}, column {}); only one may stay",
                    first.line, first.column
                ),
            )
        })
        .collect()
}

/// A problem for each target whose name an earlier target already has (`name_target` says
/// where that one is written).
pub fn duplicate_names(document: &Value, name_target: impl Fn(usize) -> String) -> Vec<Problem> {
    let Some(targets) = document.get("targets").and_then(Value::as_array) else {
        return Vec::new();
    };
    let mut first_by_name: HashMap<&str, usize> = HashMap::new();
    let mut problems = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let Some(name) = target.get("name").and_then(Value::as_str) else {
            continue;
        };
        if let Some(&first) = first_by_name.get(name) {
            problems.push(Problem::new(
                format!("/targets/{i}/name"),
                format!(
                    "duplicate target name {name:?} (also used by {})",
                    name_target(first)
                ),
            ));
        } else {
            first_by_name.insert(name, i);
        }
    }
    problems
}

/// The document without what the schema rejected, resolved: the problems of the targets the
/// schema found nothing wrong with (a missing `timeout`, an unset variable...). A rejected
/// target is replaced by a stand-in (so the others keep their indexes) and a rejected
/// top-level setting removed. Nothing when `defaults` or the `targets` list itself was
/// rejected (every target inherits them: anything found would be a consequence).
pub fn resolve_the_rest(
    document: &Value,
    invalid: &[Problem],
    os: Os,
    env: resolve::EnvLookup<'_>,
) -> Vec<Problem> {
    let mut spoilt = Vec::new();
    let mut pruned = document.clone();
    for problem in invalid {
        // An unknown key changes nothing: it goes, wherever it is.
        if problem.kind == super::problem::Kind::UnknownKey {
            remove(&mut pruned, &problem.pointer);
            continue;
        }
        let mut parts = problem.pointer.split('/').skip(1);
        match (parts.next(), parts.next()) {
            (Some("targets"), Some(i)) => match i.parse::<usize>() {
                Ok(i) => spoilt.push(i),
                Err(_) => return Vec::new(),
            },
            (Some("defaults" | "targets") | None, _) => return Vec::new(),
            (Some(key), _) => {
                if let Some(map) = pruned.as_object_mut() {
                    map.remove(key);
                }
            }
        }
    }
    for &i in &spoilt {
        if let Some(item) = pruned.pointer_mut(&format!("/targets/{i}")) {
            *item = serde_json::json!({
                "name": format!("(targets[{i}])"),
                "heartbeat": "stand-in",
                "timeout": 1,
                "start": "true",
            });
        }
    }
    let Ok(raw) = serde_json::from_value::<raw::RawConfig>(pruned) else {
        return Vec::new();
    };
    let found = match resolve::resolve(&raw, os, env) {
        Ok(_) => return Vec::new(),
        Err(found) => found,
    };
    found
        .into_iter()
        .filter(|p| {
            let mut parts = p.pointer.split('/').skip(1);
            match (
                parts.next(),
                parts.next().and_then(|i| i.parse::<usize>().ok()),
            ) {
                (Some("targets"), Some(i)) => !spoilt.contains(&i),
                _ => false,
            }
        })
        .collect()
}

/// Removes the key at `pointer` from its mapping.
fn remove(document: &mut Value, pointer: &str) {
    if let Some((parent, last)) = pointer.rsplit_once('/')
        && let Some(Value::Object(map)) = document.pointer_mut(parent)
    {
        map.remove(&last.replace("~1", "/").replace("~0", "~"));
    }
}
