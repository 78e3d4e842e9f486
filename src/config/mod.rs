//! Loading the configuration: read -> parse YAML -> validate against the JSON schema ->
//! deserialize into `raw` types -> `resolve` into the `model` for one OS.
//!
//! Every stage reports all the problems it finds, each located by file, line and column and
//! by key path, so an operator fixes a config in one round. A later stage runs only when the
//! earlier ones found nothing.

pub mod accepted;
pub mod duration;
pub mod expand;
pub mod model;
pub mod origins;
mod partial;
pub mod position;
pub mod raw;
pub mod resolve;
pub mod schema;

use std::fmt;
use std::path::Path;

pub use model::{Backoff, CommandLine, Config, Depends, Endpoint, Files, Os, Target};
use position::PositionMap;

/// Largest config file read; far above any real config (10,000 targets take about 1.5 MB).
const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// One thing wrong with a config, located by JSON pointer (`/targets/0/timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
}

impl Problem {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// Everything wrong with one config file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: String,
    /// Each problem with its place in the file, where known.
    pub problems: Vec<(Problem, Option<position::Position>)>,
}

impl ConfigError {
    /// One line per problem, `FILE:LINE:COLUMN: KEY.PATH: reason`: the one way a config
    /// problem is put, by `check`, at start-up and in the log of a failed reload.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|(problem, pos)| {
            let mut line = self.file.clone();
            if let Some(p) = pos {
                line.push_str(&format!(":{}:{}", p.line, p.column));
            }
            if !problem.pointer.is_empty() {
                line.push_str(&format!(": {}", key_path(&problem.pointer)));
            }
            line.push_str(&format!(": {}", problem.message));
            line
        })
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{} found",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for line in self.lines() {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// `/targets/0/os/windows/stop` -> `targets[0].os.windows.stop`
pub fn key_path(pointer: &str) -> String {
    let mut out = String::new();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&part);
        }
    }
    out
}

/// The text of the config file at `path`: a regular file (opened without waiting, so a FIFO
/// cannot hang protector) of at most [`MAX_CONFIG_BYTES`], in UTF-8.
fn read_text(path: &Path, file: &str) -> Result<String, ConfigError> {
    use std::io::Read;
    let located = |message: String, at: Option<position::Position>| ConfigError {
        file: file.to_string(),
        problems: vec![(Problem::new("", message), at)],
    };
    let unreadable = |e: std::io::Error| located(format!("cannot read config file: {e}"), None);
    let handle = crate::fsutil::open_to_read(path).map_err(unreadable)?;
    let meta = handle.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(located(
            "cannot read config file: not a regular file".into(),
            None,
        ));
    }
    let too_large = |len: u64| {
        located(
            format!("config file is too large ({len} bytes, at most {MAX_CONFIG_BYTES})"),
            None,
        )
    };
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(too_large(meta.len()));
    }
    // Bounded even if the file grows after the look above.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    handle
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let at = position::Position {
            line: good.iter().filter(|&&b| b == b'\n').count() + 1,
            // Characters before the bad byte on its line, plus one.
            column: String::from_utf8_lossy(&good[line_start..]).chars().count() + 1,
        };
        located(
            format!(
                "config file is not valid UTF-8 (invalid byte at offset {})",
                good.len()
            ),
            Some(at),
        )
    })
}

/// Reads and resolves the config file at `path` for `os`. Variables are expanded from this
/// process's environment when `os` is the host OS; for another OS they are left as written.
pub fn load(path: &Path, os: Os) -> Result<Config, ConfigError> {
    load_text(path, os).map(|(config, _)| config)
}

/// [`load`], with the text that was read: what protector keeps as the last accepted config
/// ([`accepted`]) is exactly what it accepted, whatever the file became since.
pub fn load_text(path: &Path, os: Os) -> Result<(Config, String), ConfigError> {
    let file = path.display().to_string();
    if crate::perms::enforced()
        && let Some(reason) = crate::perms::exposure(path)
    {
        return Err(ConfigError {
            file,
            problems: vec![(Problem::new("", crate::perms::refusal(&reason)), None)],
        });
    }
    let text = read_text(path, &file)?;
    let env = |name: &str| std::env::var(name).ok();
    let on_host = os == Os::host();
    let lookup: resolve::EnvLookup<'_> = if on_host { Some(&env) } else { None };
    let mut config = parse_str(&text, &file, os, lookup)?;
    // Relative paths are relative to the config file, not to wherever protector
    // happened to be started from.
    if on_host && let Some(dir) = path.parent() {
        let files = &mut config.files;
        let paths = config.targets.iter_mut().map(|t| &mut t.heartbeat).chain(
            [
                &mut files.state_file,
                &mut files.metrics_file,
                &mut files.lock_file,
            ]
            .into_iter()
            .flatten(),
        );
        for p in paths {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
    if on_host && crate::perms::enforced() {
        let files = &config.files;
        let exposed: Vec<Problem> = [
            ("state_file", &files.state_file),
            ("metrics_file", &files.metrics_file),
            ("lock_file", &files.lock_file),
        ]
        .into_iter()
        .filter_map(|(key, p)| {
            let dir = p.as_deref()?.parent()?;
            let reason = crate::perms::exposure(dir)?;
            Some(Problem::new(
                format!("/{key}"),
                crate::perms::refusal(&reason),
            ))
        })
        .collect();
        if !exposed.is_empty() {
            let positions = PositionMap::build(&text);
            return Err(ConfigError {
                file,
                problems: exposed
                    .into_iter()
                    .map(|p| {
                        let pos = positions.find(&p.pointer);
                        (p, pos)
                    })
                    .collect(),
            });
        }
    }
    Ok((config, text))
}

/// Where each target's settings come from (`check --explain`), for a file `load` accepted.
pub fn origins(path: &Path, os: Os) -> origins::Origins {
    let text = read_text(path, "").unwrap_or_default();
    let document: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_default();
    origins::of(&document, os)
}

/// The whole pipeline on a document already in memory (used by `load`, tests and fuzzing).
pub fn parse_str(
    text: &str,
    file: &str,
    os: Os,
    env: resolve::EnvLookup<'_>,
) -> Result<Config, ConfigError> {
    // Keys written twice, which the parser hides (it keeps the last). Scanned only once the
    // parser accepted the document (it bounds nesting; the scanner would recurse without end).
    let twice = std::cell::OnceCell::new();
    let fail = |problems: Vec<Problem>| {
        let twice: &[position::Duplicate] = twice.get().map_or(&[], Vec::as_slice);
        let positions = PositionMap::build(text);
        let mut located: Vec<_> = problems
            .into_iter()
            .map(|p| {
                // A key written twice is reported where it is written again.
                let again = twice
                    .iter()
                    .find(|(ptr, ..)| *ptr == p.pointer && p.message.contains("written twice"))
                    .map(|(.., again)| *again);
                let pos = again.or_else(|| positions.find(&p.pointer));
                (p, pos)
            })
            .collect();
        located.sort_by_key(|(_, pos)| pos.map(|p| (p.line, p.column)));
        ConfigError {
            file: file.to_string(),
            problems: located,
        }
    };

    let document: serde_json::Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map(|l| position::Position {
                line: l.line(),
                column: l.column(),
            });
            let message = e.to_string();
            let message = if message.contains("tab character") {
                format!(
                    "tabs are not allowed for indentation in YAML; indent with spaces ({message})"
                )
            } else if message.contains("mapping values are not allowed") {
                format!(
                    "invalid YAML: {message}; a value that holds `: ` (a command, often) must be \
                     quoted: start: 'echo a: b'"
                )
            } else {
                format!("invalid YAML: {message}")
            };
            return Err(ConfigError {
                file: file.to_string(),
                problems: vec![(Problem::new("", message), pos)],
            });
        }
    };
    if document.is_null() {
        return Err(fail(vec![Problem::new(
            "",
            "the file is empty; it needs a `targets` list",
        )]));
    }

    // Every problem in one run: keys written twice, names used twice and the schema's
    // findings; then what can still be resolved of the rest (partial.rs).
    let twice = twice.get_or_init(|| position::duplicates(text));
    let mut problems = partial::written_twice(twice);
    problems.extend(partial::duplicate_names(&document));
    let invalid = schema::validate(&document);
    if !invalid.is_empty() {
        problems.extend(partial::resolve_the_rest(&document, &invalid, os, env));
        problems.extend(invalid);
        return Err(fail(problems));
    }

    let raw: raw::RawConfig = serde_json::from_value(document)
        .map_err(|e| fail(vec![Problem::new("", e.to_string())]))?;
    match resolve::resolve(&raw, os, env) {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(fail(problems)),
        Err(found) => {
            problems.extend(found);
            Err(fail(problems))
        }
    }
}
