//! The resolved configuration: what the rest of protector sees. Overrides for one OS are
//! applied, paths expanded, commands split into argv, durations parsed. Everything here is
//! valid by construction.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The operating systems a config can be resolved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Os {
    Linux,
    Macos,
    Windows,
}

impl Os {
    /// The OS protector was built for. Other Unix systems resolve like Linux would, except
    /// that only `unix` overrides (not `linux`) apply to them; see `config::resolve`.
    pub const fn host() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::Macos
        } else {
            Os::Linux
        }
    }

    pub fn is_unix(self) -> bool {
        !matches!(self, Os::Windows)
    }

    pub fn key(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub os: Os,
    pub targets: Vec<Target>,
    pub files: Files,
    /// Stop/start/skip_if commands that may run at once, across all targets.
    pub max_parallel_commands: usize,
}

/// Default of `max_parallel_commands`.
pub const DEFAULT_MAX_PARALLEL_COMMANDS: usize = 256;

/// Files protector itself writes, from the top level of the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub state_file: Option<PathBuf>,
    pub metrics_file: Option<PathBuf>,
    pub lock_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub heartbeat: PathBuf,
    pub timeout: Duration,
    pub stop: Option<CommandLine>,
    pub start: CommandLine,
    pub command_timeout: Duration,
    pub restart_grace: Duration,
    pub startup_grace: Duration,
    pub backoff: Backoff,
    pub max_restarts: Option<u32>,
    pub enabled: bool,
    pub notify: Option<CommandLine>,
    pub skip_if: Option<CommandLine>,
    pub skip_delay: Duration,
}

/// The default `command_timeout`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `skip_delay` is the timeout, at most this.
pub const SKIP_DELAY_MAX: Duration = Duration::from_secs(60);

impl Target {
    /// A target with every setting at its default: the one place defaults are decided
    /// (the config file and the positional form both start from here).
    pub fn new(name: &str, heartbeat: PathBuf, timeout: Duration, start: CommandLine) -> Target {
        Target {
            name: name.to_string(),
            heartbeat,
            timeout,
            stop: None,
            start,
            command_timeout: COMMAND_TIMEOUT,
            restart_grace: timeout,
            startup_grace: timeout,
            backoff: Backoff::default(),
            max_restarts: None,
            enabled: true,
            notify: None,
            skip_if: None,
            skip_delay: timeout.min(SKIP_DELAY_MAX),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Consecutive restarts that wait only the restart grace.
    pub after: u32,
    /// Cap of the doubled waits.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            after: 3,
            max: Duration::from_secs(3600),
        }
    }
}

/// How a command is executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandLine {
    /// Executed directly: program and arguments.
    Exec(Vec<String>),
    /// Passed to the platform shell as written: `/bin/sh -c LINE`, `cmd /C LINE`.
    Shell { line: String, os: Os },
}

impl CommandLine {
    /// The argv as it will be executed (for `check` and logs).
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Exec(argv) => argv.clone(),
            CommandLine::Shell {
                line,
                os: Os::Windows,
            } => {
                vec!["cmd".into(), "/C".into(), line.clone()]
            }
            CommandLine::Shell { line, .. } => vec!["/bin/sh".into(), "-c".into(), line.clone()],
        }
    }
}

impl fmt::Display for CommandLine {
    /// Quoted so that it can be pasted into a shell.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_words::join(self.argv()))
    }
}
