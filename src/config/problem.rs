//! What is wrong with a config: each problem by JSON pointer, placed in the file (main or
//! included) and at the line it is written at, and said one way everywhere.

use std::fmt;

use super::position;

/// One thing wrong with a config, located by JSON pointer (`/targets/0/timeout`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub pointer: String,
    pub message: String,
    pub kind: Kind,
}

/// What kind of problem: what later stages act on (not the words of its message), and what
/// `check --format json` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// The file cannot be read (missing, not a regular file, too large, not UTF-8).
    Unreadable,
    /// Not YAML.
    Syntax,
    /// Another user could change it (StrictModes).
    Refused,
    /// A key no setting has: it can be left out to find the other problems.
    UnknownKey,
    /// Anything else wrong with a value or a target.
    #[default]
    Invalid,
}

impl Kind {
    /// As `check --format json` names it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Unreadable => "unreadable",
            Kind::Syntax => "syntax",
            Kind::Refused => "refused",
            Kind::UnknownKey => "unknown_key",
            Kind::Invalid => "invalid",
        }
    }
}

impl Problem {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            pointer: pointer.into(),
            message: message.into(),
            kind: Kind::Invalid,
        }
    }

    /// A problem of kind `kind`.
    pub fn of_kind(kind: Kind, pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            kind,
            ..Problem::new(pointer, message)
        }
    }
}

/// A problem placed in the file it is written in (the main file or an included one), at its
/// line and column where known; its pointer is the file's own.
#[derive(Debug, Clone)]
pub struct Found {
    pub file: String,
    pub problem: Problem,
    pub at: Option<position::Position>,
}

/// Everything wrong with one config (its main file and the files it includes).
#[derive(Debug)]
pub struct ConfigError {
    /// The main file.
    pub file: String,
    pub problems: Vec<Found>,
}

impl ConfigError {
    /// The config `file` has one problem, `message`, at `at`.
    pub(crate) fn one(file: &str, message: String, at: Option<position::Position>) -> Self {
        ConfigError {
            file: file.to_string(),
            problems: vec![Found {
                file: file.to_string(),
                problem: Problem::new("", message),
                at,
            }],
        }
    }

    /// One line per problem, `FILE:LINE:COLUMN: KEY.PATH: reason`: the one way a config
    /// problem is put, by `check`, at start-up and in the log of a failed reload.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|found| {
            let mut line = found.file.clone();
            if let Some(p) = found.at {
                line.push_str(&format!(":{}:{}", p.line, p.column));
            }
            if !found.problem.pointer.is_empty() {
                line.push_str(&format!(": {}", key_path(&found.problem.pointer)));
            }
            line.push_str(&format!(": {}", found.problem.message));
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
