//! Reading the files of a config: the main file and the files its `include` names, each a
//! regular file read without waiting and with a bound on the bytes of all of them, checked by
//! StrictModes first, and parsed as YAML (with a hint for the mistakes people make most).

use std::path::Path;

use super::document;
use super::include::{self, Part};
use super::position::{self, PositionMap};
use super::problem::Kind;
use super::{ConfigError, Found, Problem};

/// Most bytes a config's files may hold together; far above any real config (10,000 targets
/// take about 1.5 MB).
pub const MAX_CONFIG_BYTES: u64 = 64 * 1024 * 1024;

/// The text of the config file at `path`: checked by StrictModes (the file read is the file
/// checked), a regular file (opened without waiting, so a FIFO cannot hang protector) of at
/// most `limit` bytes, in UTF-8.
fn read_text(path: &Path, file: &str, limit: u64) -> Result<String, Found> {
    use std::io::Read;
    let located = |message: String, at: Option<position::Position>| Found {
        file: file.to_string(),
        problem: Problem::of_kind(Kind::Unreadable, "", message),
        at,
    };
    let unreadable = |e: std::io::Error| located(format!("cannot read config file: {e}"), None);
    let handle = crate::perms::open_trusted(path).map_err(|e| match e {
        crate::perms::Untrusted::Io(e) => unreadable(e),
        crate::perms::Untrusted::Exposed(why) => Found {
            file: file.to_string(),
            problem: Problem::of_kind(Kind::Refused, "", crate::perms::refusal(&why)),
            at: None,
        },
    })?;
    let meta = handle.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(located(
            "cannot read config file: not a regular file".into(),
            None,
        ));
    }
    let too_large = |len: u64| {
        let also = if limit < MAX_CONFIG_BYTES {
            " with the files read before it"
        } else {
            ""
        };
        located(
            format!(
                "config file is too large ({len} bytes{also}, at most {MAX_CONFIG_BYTES} in all)"
            ),
            None,
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len()));
    }
    // Bounded even if the file grows after the look above.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    handle
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > limit {
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

/// One file's text parsed: its YAML document and the keys written twice in it, or the
/// parser's complaint placed in it (with a hint for the mistakes people make most).
pub fn parse_part(file: String, text: String) -> Result<Part, Found> {
    let reading = document::read(&text).map_err(|at| Found {
        file: file.clone(),
        problem: Problem::of_kind(
            Kind::Syntax,
            "",
            format!(
                "invalid YAML: collections nested more than {} deep",
                position::MAX_NESTING
            ),
        ),
        at: Some(at),
    })?;
    let document = match reading.document {
        Some(document) => document,
        None => parse_yaml(&text, &file)?,
    };
    Ok(Part {
        file,
        text,
        document,
        twice: reading.twice,
    })
}

/// The YAML document of one file, or the parser's complaint placed in it.
fn parse_yaml(text: &str, file: &str) -> Result<serde_json::Value, Found> {
    serde_yaml::from_str(text).map_err(|e| {
        let at = e.location().map(|l| position::Position {
            line: l.line(),
            column: l.column(),
        });
        let message = e.to_string();
        let message = if message.contains("tab character") {
            format!("tabs are not allowed for indentation in YAML; indent with spaces ({message})")
        } else if message.contains("mapping values are not allowed") {
            format!(
                "invalid YAML: {message}; a value that holds `: ` (a command, often) must be \
                 quoted: start: 'echo a: b'"
            )
        } else {
            format!("invalid YAML: {message}")
        };
        Found {
            file: file.to_string(),
            problem: Problem::of_kind(Kind::Syntax, "", message),
            at,
        }
    })
}

/// Reads one file of the config (`budget`: the bytes the files may still take).
fn read_part(path: &Path, budget: &mut u64) -> Result<Part, Found> {
    let file = path.display().to_string();
    let text = read_text(path, &file, *budget)?;
    *budget -= text.len() as u64;
    parse_part(file, text)
}

/// The config file at `path`: the file as messages name it, and its text.
pub fn read_main(path: &Path) -> Result<(String, String), ConfigError> {
    let file = path.display().to_string();
    match read_text(path, &file, MAX_CONFIG_BYTES) {
        Ok(text) => Ok((file, text)),
        Err(found) => Err(ConfigError {
            file,
            problems: vec![found],
        }),
    }
}

/// The config file at `path` ([`read_main`]: `file` and `text`) and the files it includes,
/// each read and parsed.
pub fn gather(path: &Path, file: String, text: String) -> Result<Vec<Part>, ConfigError> {
    let mut budget = MAX_CONFIG_BYTES - text.len() as u64;
    let as_error = |found: Found| ConfigError {
        file: file.clone(),
        problems: vec![found],
    };
    let main = parse_part(file.clone(), text).map_err(as_error)?;
    let patterns = include::patterns(&main.document);
    if patterns.is_empty() {
        return Ok(vec![main]);
    }
    let single = main.document.get("include").is_some_and(|v| v.is_string());
    let dir = path.parent().unwrap_or(Path::new(""));
    let named = match include::files(dir, &patterns, single) {
        Ok(named) => named,
        Err(problems) => {
            let positions = PositionMap::build(&main.text);
            return Err(ConfigError {
                file: file.clone(),
                problems: problems
                    .into_iter()
                    .map(|problem| Found {
                        file: file.clone(),
                        at: positions.find(&problem.pointer),
                        problem,
                    })
                    .collect(),
            });
        }
    };
    let mut parts = vec![main];
    let mut unread = Vec::new();
    for path in named {
        match read_part(&path, &mut budget) {
            Ok(part) => parts.push(part),
            Err(found) => unread.push(found),
        }
    }
    if unread.is_empty() {
        Ok(parts)
    } else {
        Err(ConfigError {
            file,
            problems: unread,
        })
    }
}
