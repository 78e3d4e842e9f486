//! Loading the configuration: read -> parse YAML -> validate against the JSON schema ->
//! deserialize into `raw` types -> `resolve` into the `model` for one OS.
//!
//! Every stage reports all the problems it finds, each located by file, line and column and
//! by key path, so an operator fixes a config in one round. A later stage runs only when the
//! earlier ones found nothing.

pub mod accepted;
mod document;
pub mod duration;
pub mod expand;
pub mod include;
mod layers;
pub mod model;
pub mod origins;
mod partial;
pub mod position;
mod problem;
pub mod raw;
mod read;
pub mod resolve;
pub mod schema;
mod stream;

use std::path::Path;

use include::Part;
pub use model::{Backoff, CommandLine, Config, Depends, Endpoint, Files, Os, Policy, Target};
use position::PositionMap;
pub use problem::{ConfigError, Found, Kind, Problem, key_path};
use read::{gather, parse_part};

/// Reads and resolves the config file at `path` for `os`. Variables are expanded from this
/// process's environment when `os` is the host OS; for another OS they are left as written.
pub fn load(path: &Path, os: Os) -> Result<Config, ConfigError> {
    load_text(path, os).map(|(config, _)| config)
}

/// [`load`], with the text of what was accepted: what protector keeps as the last accepted
/// config ([`accepted`]) is exactly what it accepted, whatever the files became since (the
/// file as it was read; with `include`, one document with every file's targets in it).
pub fn load_text(path: &Path, os: Os) -> Result<(Config, String), ConfigError> {
    load_read(path, os, false).map(|(config, text, _)| (config, text))
}

/// [`load`], with where each target's settings come from (`check --explain`), found in
/// what was read once: a layer in an included file is named with it (`conf.d/web.yaml:
/// targets[0].os.linux`).
pub fn load_explained(path: &Path, os: Os) -> Result<(Config, origins::Origins), ConfigError> {
    let (config, _, parts) = load_read(path, os, true)?;
    Ok((config, origins_of(&parts, os)))
}

/// [`load_text`], with the parts read (`keep_documents`: with their documents).
fn load_read(
    path: &Path,
    os: Os,
    keep_documents: bool,
) -> Result<(Config, String, Vec<Part>), ConfigError> {
    let (file, text) = read::read_main(path)?;
    let env = |name: &str| std::env::var(name).ok();
    let on_host = os == Os::host();
    let lookup: resolve::EnvLookup<'_> = if on_host { Some(&env) } else { None };
    // Relative paths are relative to the config file, not to wherever protector
    // happened to be started from.
    let anchor = path.parent().filter(|_| on_host);
    let short = if keep_documents {
        None
    } else {
        stream::load(&text, os, lookup, anchor)
    };
    let (config, mut parts, included) = match short {
        Some(config) => {
            // No document is kept: the text places a problem found below.
            let document = serde_json::Value::Null;
            let part = Part {
                file,
                text,
                document,
                twice: Vec::new(),
            };
            (config, vec![part], None)
        }
        None => {
            let mut parts = gather(path, file, text)?;
            let (config, included) = resolve_parts(&mut parts, os, lookup, anchor, keep_documents)?;
            (config, parts, included)
        }
    };
    if on_host && crate::perms::enforced() {
        let files = &config.files;
        let exposed: Vec<Placed> = [
            ("state_file", &files.state_file),
            ("metrics_file", &files.metrics_file),
            ("lock_file", &files.lock_file),
        ]
        .into_iter()
        .filter_map(|(key, p)| {
            let dir = p.as_deref()?.parent()?;
            let reason = crate::perms::exposure(dir)?;
            let problem = Problem::of_kind(
                problem::Kind::Refused,
                format!("/{key}"),
                crate::perms::refusal(&reason),
            );
            Some((0, problem, None))
        })
        .collect();
        if !exposed.is_empty() {
            return Err(place(&parts, exposed));
        }
    }
    let text = match included {
        Some(combined) => serde_yaml::to_string(&combined).unwrap_or_default(),
        None => std::mem::take(&mut parts[0].text),
    };
    Ok((config, text, parts))
}

/// Where each target's settings come from, in the parts of an accepted config.
fn origins_of(parts: &[Part], os: Os) -> origins::Origins {
    let (combined, layout, _) = include::combine(parts);
    let mut found = origins::of(&combined, os);
    for layer in found.values_mut().flat_map(|o| o.values_mut()) {
        if let Some(rest) = layer.strip_prefix("targets[")
            && let Some((index, tail)) = rest.split_once(']')
            && let Ok(i) = index.parse::<usize>()
            && let (part @ 1.., local) = layout.target(i)
        {
            *layer = format!("{}: targets[{local}]{tail}", parts[part].file);
        }
    }
    found
}

/// The pipeline on a document already in memory (used by tests and fuzzing; `include` is
/// not followed: there is no file system here): the short way first, as a file is read.
pub fn parse_str(
    text: &str,
    file: &str,
    os: Os,
    env: resolve::EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    match stream::load(text, os, env, None) {
        Some(config) => Ok(config),
        None => parse_str_whole(text, file, os, env),
    }
}

/// [`parse_str`] the whole way only: what the short way (`stream.rs`) is held to.
pub fn parse_str_whole(
    text: &str,
    file: &str,
    os: Os,
    env: resolve::EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    let part = parse_part(file.to_string(), text.to_string()).map_err(|found| ConfigError {
        file: file.to_string(),
        problems: vec![found],
    })?;
    let mut parts = [part];
    resolve_parts(&mut parts, os, env, None, false).map(|(config, _)| config)
}

/// A problem placed in a part (by index): the problem with the part's own pointer, and where
/// it is written when that is already known.
type Placed = (usize, Problem, Option<position::Position>);

/// From the parsed files (the main one first) to the model, with every problem of every file
/// in one run: keys written twice, names used twice and the schema's findings; then what can
/// still be resolved of the rest (partial.rs). Also returns the combined document when the
/// main file includes others. `keep_documents`: leave the parts' documents as they were read
/// (else they are let go once the model is made). `anchor`: see [`resolve::resolve_from`].
fn resolve_parts(
    parts: &mut [Part],
    os: Os,
    env: resolve::EnvLookup<'_>,
    anchor: Option<&Path>,
    keep_documents: bool,
) -> Result<(Config, Option<serde_json::Value>), ConfigError> {
    if parts[0].document.is_null() {
        return Err(ConfigError::one(
            &parts[0].file,
            "the file is empty; it needs a `targets` list".into(),
            None,
        ));
    }
    let included_any = parts.len() > 1 || parts[0].document.get("include").is_some();
    let (combined, layout, of_parts) = include::combine(parts);
    let cut = cut_commands(parts);
    let mut placed = written_twice(parts);
    placed.extend(of_parts.into_iter().map(|(p, problem)| (p, problem, None)));
    placed.extend(cut.iter().cloned());
    // Problems found on the combined document: placed through the layout.
    let mut problems = partial::duplicate_names(&combined, |i| layout.name_target(i, parts));
    if combined.is_object() && combined.get("targets").is_none() {
        problems.push(Problem::new(
            "",
            if included_any {
                "no targets: there are none here and none in the files `include` names"
            } else {
                "missing required key `targets`"
            },
        ));
    }
    let invalid = schema::validate(&combined);
    if !invalid.is_empty() {
        problems.extend(partial::resolve_the_rest(&combined, &invalid, os, env));
        problems.extend(invalid);
    } else {
        let resolved = deserialize_raw(&combined)
            .map(|(raw, targets)| resolve::resolve_from(&raw, targets, os, env, anchor));
        let included = match combined {
            std::borrow::Cow::Owned(combined) => Some(combined),
            std::borrow::Cow::Borrowed(_) => None,
        };
        // The documents have told all they can; what is still to say is placed in the text.
        if !keep_documents {
            for part in parts.iter_mut() {
                part.document = serde_json::Value::Null;
            }
            // Their pages, back to the system, before the daemon installs the model.
            crate::platform::return_free_memory();
        }
        match resolved {
            Ok(Ok(mut config)) if problems.is_empty() && placed.is_empty() => {
                config.included = parts[1..]
                    .iter()
                    .enumerate()
                    .map(|(n, part)| model::Included {
                        file: part.file.clone(),
                        targets: layout.count(n + 1, config.targets.len()),
                    })
                    .collect();
                return Ok((config, included));
            }
            Ok(Ok(_)) => {}
            Ok(Err(found)) => problems.extend(found),
            Err(e) => problems.push(Problem::new("", e.to_string())),
        }
    }
    placed.extend(problems.into_iter().filter_map(|mut problem| {
        let (p, local) = layout.local(&problem.pointer);
        problem.pointer = local;
        // A command cut by a comment is said once, with the reason (not as a bad command).
        let said = cut
            .iter()
            .any(|(q, c, _)| *q == p && c.pointer == problem.pointer);
        (!said).then_some((p, problem, None))
    }));
    Err(place(parts, placed))
}

/// The raw settings of a valid document but its targets, which are deserialized one by one
/// as they are resolved (on the pool that resolves them: 100,000 of them take longer than
/// anything else after the YAML's reading).
fn deserialize_raw(
    document: &serde_json::Value,
) -> Result<(raw::RawConfig, resolve::Targets<'_>), serde_json::Error> {
    use serde::Deserialize;
    let (Some(serde_json::Value::Array(targets)), serde_json::Value::Object(keys)) =
        (document.get("targets"), document)
    else {
        return raw::RawConfig::deserialize(document).map(|raw| (raw, resolve::Targets::Raw));
    };
    let rest = keys
        .iter()
        .filter(|(key, _)| *key != "targets")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let raw = raw::RawConfig::deserialize(&serde_json::Value::Object(rest))?;
    Ok((raw, resolve::Targets::Document(targets)))
}

/// Commands that YAML ended at a ` #` (a comment) where what is left is not a command (a quote
/// left open: `start: echo "a # b"` is `echo "a`), each a problem that says so. A comment
/// after a whole command is fine, as in a shell.
fn cut_commands(parts: &[Part]) -> Vec<Placed> {
    let mut placed = Vec::new();
    for (p, part) in parts.iter().enumerate() {
        placed.extend(cut_commands_in(&part.text).map(|problem| (p, problem, None)));
    }
    placed
}

/// [`cut_commands`] in one text.
fn cut_commands_in(text: &str) -> impl Iterator<Item = Problem> {
    const COMMANDS: [&str; 6] = ["start", "stop", "notify", "skip_if", "diagnose", "command"];
    position::cut_by_comments(text)
        .into_iter()
        .filter_map(|cut| {
            let key = cut.pointer.rsplit('/').next().unwrap_or_default();
            if !COMMANDS.contains(&key) || shell_words::split(&cut.value).is_ok() {
                return None;
            }
            let whole = format!("{} {}", cut.value, cut.comment).replace('\'', "''");
            let message = format!(
                "YAML ended this value where ` #` starts a comment, so the command is {:?}; \
                 quote the whole value: {key}: '{whole}'",
                cut.value
            );
            Some(Problem::new(cut.pointer, message))
        })
}

/// Keys written twice in each part, which the parser hides (it keeps the last), placed where
/// they are written again.
fn written_twice(parts: &[Part]) -> Vec<Placed> {
    let mut placed = Vec::new();
    for (p, part) in parts.iter().enumerate() {
        let problems = partial::written_twice(&part.twice);
        placed.extend(
            problems
                .into_iter()
                .zip(&part.twice)
                .map(|(problem, (.., again))| (p, problem, Some(*again))),
        );
    }
    placed
}

/// The error of `problems`: each at its line in its file (the positions of a file are mapped
/// only when one of its problems needs them), in the order of the files and the lines.
fn place(parts: &[Part], problems: Vec<Placed>) -> ConfigError {
    let positions: Vec<std::cell::OnceCell<PositionMap>> =
        parts.iter().map(|_| std::cell::OnceCell::new()).collect();
    let mut all: Vec<Placed> = problems
        .into_iter()
        .map(|(p, problem, at)| {
            let at = at.or_else(|| {
                positions[p]
                    .get_or_init(|| PositionMap::build(&parts[p].text))
                    .find(&problem.pointer)
            });
            (p, problem, at)
        })
        .collect();
    all.sort_by_key(|(p, _, at)| (*p, at.map(|a| (a.line, a.column))));
    ConfigError {
        file: parts[0].file.clone(),
        problems: all
            .into_iter()
            .map(|(p, problem, at)| Found {
                file: parts[p].file.clone(),
                problem,
                at,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_config_keeps_its_targets_in_order_each_with_its_own_settings() {
        // Large enough to be read and resolved in parallel.
        let targets: String = (0..1000)
            .map(|i| {
                let timeout = i + 1;
                format!(
                    "  - {{name: t{i}, heartbeat: /b/{i}, timeout: {timeout}s, start: 'x {i}'}}\n"
                )
            })
            .collect();
        let text = format!("state_file: /s\ndefaults: {{restart_grace: 1h}}\ntargets:\n{targets}");
        let config = parse_str(&text, "big.yaml", Os::Linux, None).unwrap();
        assert_eq!(config.files.state_file.as_deref(), Some(Path::new("/s")));
        assert_eq!(config.targets.len(), 1000);
        for (i, t) in config.targets.iter().enumerate() {
            assert_eq!(t.name, format!("t{i}"));
            assert_eq!(t.heartbeat, Path::new(&format!("/b/{i}")));
            assert_eq!(t.timeout.as_secs(), i as u64 + 1);
            assert_eq!(t.start, CommandLine::Exec(vec!["x".into(), i.to_string()]));
            assert_eq!(t.restart_grace.as_secs(), 3600);
        }
    }

    #[test]
    fn targets_alike_but_for_name_and_heartbeat_share_one_policy_and_a_change_is_their_own() {
        // Enough targets to be resolved in parallel; relative paths made absolute first.
        let dir = tempfile::tempdir().unwrap();
        let alike: String = (0..300)
            .map(|i| format!("  - {{name: t{i}, heartbeat: b{i}, start: ./restart.sh}}\n"))
            .collect();
        let path = dir.path().join("protector.yaml");
        std::fs::write(
            &path,
            format!(
                "defaults: {{timeout: 1m}}\ntargets:\n{alike}  \
                 - {{name: other, heartbeat: b, timeout: 2m, start: ./restart.sh}}\n"
            ),
        )
        .unwrap();
        let mut config = load(&path, Os::host()).unwrap();
        let first = &config.targets[0];
        assert!(
            config.targets[1..300]
                .iter()
                .all(|t| t.shares_policy_with(first))
        );
        assert!(!config.targets[300].shares_policy_with(first));
        let restart = dir.path().join("./restart.sh").display().to_string();
        assert_eq!(first.start, CommandLine::Exec(vec![restart]));
        assert_eq!(config.targets[7].heartbeat, dir.path().join("b7"));
        config.targets[1].policy_mut().enabled = false;
        let enabled: Vec<bool> = config.targets[..3].iter().map(|t| t.enabled).collect();
        assert_eq!(enabled, [true, false, true]);
    }
}
