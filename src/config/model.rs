//! The resolved configuration: what the rest of protector sees. Overrides for one OS are
//! applied, paths expanded, commands split into argv, durations parsed. Everything here is
//! valid by construction.

use std::fmt;
use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::intern::Interner;

/// The operating systems a config can be resolved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
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
    /// The files `include` brought, in the order their targets follow the main file's.
    pub included: Vec<Included>,
}

/// A file `include` brought into the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Included {
    /// As messages name it.
    pub file: String,
    /// How many of the config's targets are written in it.
    pub targets: usize,
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

/// One watched target: its name and heartbeat, and how it is handled (its [`Policy`], read
/// through this type as if its fields were the target's own: `target.timeout`).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub heartbeat: PathBuf,
    /// Shared by every target whose policy is the same (`config::resolve`): a fleet's
    /// targets mostly differ in name and heartbeat only, and a policy is ~400 bytes.
    policy: Arc<Policy>,
}

impl Deref for Target {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.policy
    }
}

/// How a target is handled: everything about it but its name and heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Policy {
    pub timeout: Duration,
    pub stop: Option<CommandLine>,
    pub start: CommandLine,
    /// Run before the stop command of a restart; its output goes into the incident.
    pub diagnose: Option<CommandLine>,
    pub diagnose_timeout: Duration,
    pub command_timeout: Duration,
    pub restart_grace: Duration,
    pub startup_grace: Duration,
    pub backoff: Backoff,
    pub max_restarts: Option<u32>,
    pub enabled: bool,
    /// A missing program is a warning, not a problem (`check`) or an error (the log).
    pub allow_missing_programs: bool,
    /// Judged, with incidents and notify, but its stop and start are never run.
    pub observe_only: bool,
    pub notify: Option<CommandLine>,
    pub skip_if: Option<CommandLine>,
    pub skip_delay: Duration,
    /// What must be reachable for a restart to help; `None`: nothing is checked.
    pub depends_on: Option<Box<Depends>>,
    /// Up to this random wait before a restart (zero: none).
    pub restart_splay: Duration,
    /// The service's pid file, read by `status`.
    pub pid_file: Option<PathBuf>,
    /// Its name in the service manager (a systemd unit, a Windows service).
    pub service: Option<String>,
}

/// A target's dependencies (`depends_on`): at least one of them listed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Depends {
    /// Up when any one accepts a connection (ignored when empty).
    pub tcp: Vec<Endpoint>,
    /// Up when it exits 0.
    pub command: Option<CommandLine>,
    /// Bound of one check.
    pub check_timeout: Duration,
    /// Longest wait between two checks while held.
    pub recheck: Duration,
}

/// The default `depends_on.check_timeout`.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// The default `depends_on.recheck`.
pub const RECHECK: Duration = Duration::from_secs(30);

/// A TCP endpoint of a dependency: a name or an address, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, `1.2.3.4:port` or `[v6]:port` (the schema's `ENDPOINT_PATTERN`, plus
    /// a port that fits and a bracketed part that is an IPv6 address).
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| {
            Err(format!(
                "{} is not a TCP endpoint: {why}",
                crate::text::clean(&format!("{text:?}"))
            ))
        };
        let Some((host, port)) = text.rsplit_once(':') else {
            return bad("write it as host:port (an IPv6 address in brackets: [::1]:4506)");
        };
        let host = if let Some(inner) = host.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else {
                return bad("an opening `[` without its `]`");
            };
            if inner.parse::<std::net::Ipv6Addr>().is_err() {
                return bad("what is in brackets is not an IPv6 address");
            }
            inner
        } else if host.contains(':') || text.parse::<std::net::Ipv6Addr>().is_ok() {
            return bad("an IPv6 address must be written in brackets: [::1]:4506");
        } else {
            host
        };
        if host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "[]/".contains(c))
        {
            return bad("the host is empty or holds a space, control character, bracket or slash");
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Endpoint {
                host: host.to_string(),
                port,
            }),
            _ => bad("the port must be a number from 1 to 65535"),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The default `command_timeout`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// `diagnose_timeout` unless set.
pub const DIAGNOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// `skip_delay` is the timeout, at most this.
pub const SKIP_DELAY_MAX: Duration = Duration::from_secs(60);

impl Target {
    /// A target with every setting at its default: the one place defaults are decided
    /// (the config file and the positional form both start from here).
    pub fn new(name: &str, heartbeat: PathBuf, timeout: Duration, start: CommandLine) -> Target {
        Target {
            name: name.to_string(),
            heartbeat,
            policy: Arc::new(Policy {
                timeout,
                stop: None,
                start,
                diagnose: None,
                diagnose_timeout: DIAGNOSE_TIMEOUT,
                command_timeout: COMMAND_TIMEOUT,
                restart_grace: timeout,
                startup_grace: timeout,
                backoff: Backoff::default(),
                max_restarts: None,
                enabled: true,
                allow_missing_programs: false,
                observe_only: false,
                notify: None,
                skip_if: None,
                skip_delay: timeout.min(SKIP_DELAY_MAX),
                depends_on: None,
                restart_splay: Duration::ZERO,
                pid_file: None,
                service: None,
            }),
        }
    }

    /// The policy, shared: a handle that keeps it as it is now.
    pub fn shared_policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy)
    }

    /// Its policy to change: its own copy if another target shares it.
    pub fn policy_mut(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// Whether it holds the same copy of its policy as `other`.
    #[cfg(test)]
    pub(crate) fn shares_policy_with(&self, other: &Target) -> bool {
        Arc::ptr_eq(&self.policy, &other.policy)
    }

    /// Shares its policy with an equal one already in `seen`, else adds its own there.
    pub(crate) fn share_policy(&mut self, seen: &Interner<Policy>) {
        self.policy = seen.intern(Arc::clone(&self.policy));
    }
}

impl Policy {
    /// Every command of the target (stop, start, notify, skip_if, the dependency's).
    pub fn command_lines_mut(&mut self) -> impl Iterator<Item = &mut CommandLine> {
        [
            self.stop.as_mut(),
            Some(&mut self.start),
            self.notify.as_mut(),
            self.skip_if.as_mut(),
            self.diagnose.as_mut(),
            self.depends_on.as_mut().and_then(|d| d.command.as_mut()),
        ]
        .into_iter()
        .flatten()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn endpoints_are_read_as_written_and_said_back_the_same() {
        for text in [
            "salt:4506",
            "10.0.0.5:4506",
            "[::1]:4506",
            "[2001:db8::1]:1",
            "m.example.org:65535",
        ] {
            let e = Endpoint::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(e.to_string(), text);
        }
        assert_eq!(Endpoint::parse("[::1]:4506").unwrap().host, "::1");
        for (text, why) in [
            ("salt", "host:port"),
            ("::1:4506", "in brackets"),
            ("[::1:4506", "without its `]`"),
            ("[salt]:4506", "not an IPv6 address"),
            ("salt:0", "from 1 to 65535"),
            ("salt:65536", "from 1 to 65535"),
            ("salt:x", "from 1 to 65535"),
            (":4506", "empty"),
            ("a b:4506", "space"),
            ("salt\u{1b}[2J:1", "space"),
            ("sa\u{7}lt:1", "control character"),
        ] {
            let err = Endpoint::parse(text).expect_err(text);
            assert!(err.contains(why), "{text}: {err}");
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }
}
