//! The configuration file as written: serde types that mirror the YAML one to one.
//!
//! These types are the single source of truth for the JSON schema (`protector schema`,
//! schema/protector.schema.json). Nothing here is interpreted: durations stay as written,
//! paths are not expanded and per-OS overrides are not applied. `resolve` turns them into
//! the model the rest of the program uses.

use super::duration::DurationSpec;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Deserialize;

/// A protector configuration: shared defaults and the list of targets to watch.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "protector configuration")]
pub struct RawConfig {
    /// Where protector keeps its state (per target: last heartbeat, restarts, last outcome),
    /// written atomically on every change; read by `protector status` and on start-up, so
    /// backoff survives a restart of protector. Paths are expanded like `heartbeat`.
    pub state_file: Option<String>,
    /// Where to write Prometheus metrics (text format, for node_exporter's textfile collector).
    pub metrics_file: Option<String>,
    /// Lock that keeps a second protector from watching the same targets. Default: the state
    /// file's path plus `.lock`, else `protector-HASH.lock` (named after the config path) in
    /// protector's runtime directory: `/run/protector` for root, `$XDG_RUNTIME_DIR/protector`
    /// (else `~/.local/state/protector`) for another user, `%ProgramData%\protector` on
    /// Windows.
    pub lock_file: Option<String>,
    /// How many stop/start/skip_if commands may run at the same time, across all targets
    /// (default 256). Targets that go stale beyond that are detected and logged at once;
    /// their commands wait in order of detection for a free place. Bounds a restart storm.
    /// notify commands have a bound of the same size of their own.
    #[schemars(range(min = 1), extend("default" = super::model::DEFAULT_MAX_PARALLEL_COMMANDS))]
    pub max_parallel_commands: Option<u32>,
    /// Settings every target inherits unless it sets them itself.
    #[serde(default)]
    pub defaults: Option<RawDefaults>,
    /// The services to watch, each with its own heartbeat file. Required, here or in the
    /// files `include` names.
    #[schemars(length(min = 1))]
    pub targets: Option<Vec<RawTarget>>,
    /// More targets from other files: a path, or a path with wildcards (`*`, `?`, `[...]`) in
    /// its last part (`conf.d/*.yaml`), relative to this file's directory; or a list of them.
    /// Each file holds a `targets` list and nothing else (defaults, files and includes belong
    /// here). The files are read in name order after this file's own targets; names starting
    /// with a dot are left out; a path without wildcards must exist, a pattern may match
    /// nothing. Relative paths in them are relative to this file's directory, like its own.
    pub include: Option<Includes>,
}

/// `include` as written: one path or pattern, or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Includes {
    One(String),
    Many(Vec<String>),
}

impl JsonSchema for Includes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Includes".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A path or a pattern (`conf.d/*.yaml`), or a list of them.",
            "type": ["string", "array"],
            "minLength": 1,
            "items": { "type": "string", "minLength": 1 }
        })
    }
}

/// Settings shared by all targets, with optional per-OS overrides of their own.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    #[serde(flatten)]
    pub settings: Settings,
    /// Per-OS overrides of the defaults.
    #[serde(default)]
    pub os: Option<Box<OsOverrides>>,
}

/// One watched service.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    /// Unique name, used in logs and in the commands' environment (PROTECTOR_TARGET):
    /// letters, digits, spaces and `. _ - @ : / +` (nothing that could forge a log line or
    /// reach a terminal as an escape), at most 200 characters, starting with a letter, digit
    /// or sign.
    #[schemars(length(min = 1, max = 200), regex(pattern = NAME_PATTERN))]
    pub name: String,
    #[serde(flatten)]
    pub settings: Settings,
    /// Per-OS overrides; the specific OS wins over `unix`, which wins over the target's own
    /// settings, which win over `defaults`.
    #[serde(default)]
    pub os: Option<Box<OsOverrides>>,
}

/// Overrides keyed by operating system.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OsOverrides {
    /// Applies on Linux.
    pub linux: Option<Settings>,
    /// Applies on macOS.
    pub macos: Option<Settings>,
    /// Applies on Windows.
    pub windows: Option<Settings>,
    /// Applies on every Unix (Linux and macOS); the specific OS wins over it.
    pub unix: Option<Settings>,
}

/// Every setting a target can have; each may also come from `defaults` or an `os` override.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Path of the heartbeat file. `~`, `$VAR` and `${VAR}` are expanded (and `%VAR%` on
    /// Windows); an unset variable is an error. Required (here, in an override or in defaults).
    pub heartbeat: Option<String>,
    /// How long the heartbeat may stay unchanged before the service is restarted.
    /// Required (here, in an override or in defaults).
    pub timeout: Option<DurationSpec>,
    /// Command that starts the service. Required (here, in an override or in defaults).
    pub start: Option<CommandSpec>,
    /// The service's pid file (salt-minion's is /var/run/salt-minion.pid): `protector status`
    /// shows the pid in it and whether that process runs. Expanded like `heartbeat`.
    pub pid_file: Option<String>,
    /// The service's name in the service manager: its systemd unit on Linux (`salt-minion`,
    /// for `salt-minion.service`), its service name on Windows. A restart's incident looks at
    /// every process of it (Linux: the unit's control group; Windows: the service's process)
    /// and their children, besides the pid file's.
    #[schemars(regex(pattern = SERVICE_PATTERN))]
    pub service: Option<String>,
    /// Command that stops the service; run before `start` when the heartbeat is stale.
    pub stop: Option<CommandSpec>,
    /// Command run when the target is judged hung, before its stop command: what it prints
    /// (the last 64 KiB of each stream) is kept in the restart's incident, to say why the
    /// service hung (`protector incidents`). Killed as a tree at `diagnose_timeout`; its
    /// failure never prevents the restart.
    pub diagnose: Option<CommandSpec>,
    /// Upper bound of `diagnose`, by which it may delay the stop. Default 10s.
    #[schemars(extend("default" = super::duration::format(super::model::DIAGNOSE_TIMEOUT)))]
    pub diagnose_timeout: Option<DurationSpec>,
    /// Run the target's commands written as strings through the platform shell (`/bin/sh -c`,
    /// `cmd /C`) instead of splitting them into words and executing them directly. Commands
    /// written as lists are always executed directly. Default false.
    #[schemars(extend("default" = false))]
    pub shell: Option<bool>,
    /// Upper bound for each command; on expiry its whole process tree is killed. Default 60s.
    #[schemars(extend("default" = super::duration::format(super::model::COMMAND_TIMEOUT)))]
    pub command_timeout: Option<DurationSpec>,
    /// After a restart the target is not judged again before this. Default: the timeout.
    pub restart_grace: Option<DurationSpec>,
    /// At start-up, a missing or old heartbeat gets this long before it is judged.
    /// Default: the timeout.
    pub startup_grace: Option<DurationSpec>,
    /// Growing waits between consecutive restarts that did not bring a heartbeat back.
    pub backoff: Option<BackoffSpec>,
    /// Give up after this many consecutive restarts without a heartbeat; watching resumes
    /// when a heartbeat appears. Default: never give up.
    #[schemars(range(min = 1))]
    pub max_restarts: Option<u32>,
    /// Watch this target. Default true.
    #[schemars(extend("default" = true))]
    pub enabled: Option<bool>,
    /// A command's program may be missing for now (installed later, e.g. by the same Salt
    /// state): `check` then warns instead of failing, and protector logs a warning instead of
    /// an error. Default false.
    #[schemars(extend("default" = false))]
    pub allow_missing_programs: Option<bool>,
    /// Observe only: when the target is judged hung, keep its incident and run `notify`
    /// (PROTECTOR_EVENT `observed`), but never run its stop or start commands, not even when
    /// an operator asks for a restart. For a first roll-out, or a service that must not be
    /// touched automatically. Default false.
    #[schemars(extend("default" = false))]
    pub observe_only: Option<bool>,
    /// Command run on restart, give-up and recovery, with PROTECTOR_EVENT (`restart`,
    /// `observed`, `give-up`, `recovery`), PROTECTOR_TARGET, PROTECTOR_AGE_SECS and PROTECTOR_RESTARTS in
    /// its environment. Its failure is logged and never delays a restart.
    pub notify: Option<CommandSpec>,
    /// Command run when the target is stale, before restarting it: exit status 0 postpones
    /// the restart (rechecked after `skip_delay`), e.g. while a long job is running. Failure or
    /// timeout means "do not skip".
    pub skip_if: Option<CommandSpec>,
    /// How long a restart postponed by `skip_if` waits before the target is judged again.
    /// Default: the timeout, at most 1m.
    pub skip_delay: Option<DurationSpec>,
    /// What must be reachable for a restart to help (a salt-minion's master): checked only
    /// once the target is judged stale, before its restart. While it is down the target is
    /// held, not restarted, and checked again; once it is back the target gets a whole
    /// `timeout` for a heartbeat before it is judged again. A service that hangs while its
    /// dependency is up is restarted as usual.
    pub depends_on: Option<DependsSpec>,
    /// Before a stale target is restarted, wait a random time up to this, drawn anew each
    /// time; a heartbeat during the wait calls the restart off. Spreads over this time the
    /// restarts of a fleet whose heartbeats all lapsed together. Default: no wait.
    pub restart_splay: Option<DurationSpec>,
}

/// A target's dependencies: up when at least one of the `tcp` endpoints accepts a connection
/// (if any are listed) and `command` exits 0 (if one is given).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DependsSpec {
    /// TCP endpoints as `host:port` (a name, an IPv4 address, or an IPv6 address in brackets:
    /// `[2001:db8::1]:4506`); one that accepts a connection is enough (several masters,
    /// failover). An empty list here clears a list inherited from `defaults`.
    #[schemars(extend("items" = { "type": "string", "pattern": ENDPOINT_PATTERN }))]
    pub tcp: Option<Vec<String>>,
    /// A command that exits 0 when the dependency is up; anything else (another status, a
    /// timeout, a program that cannot run) means down. Killed as a tree at `check_timeout`.
    pub command: Option<CommandSpec>,
    /// Bound of one check, name resolution and connection included (the endpoints and the
    /// command are tried at the same time). Default 5s.
    #[schemars(extend("default" = super::duration::format(super::model::CHECK_TIMEOUT)))]
    pub check_timeout: Option<DurationSpec>,
    /// While held, the dependency is checked again at a random moment between half this and
    /// this after the last check (so a fleet does not check in step). Default 30s.
    #[schemars(extend("default" = super::duration::format(super::model::RECHECK)))]
    pub recheck: Option<DurationSpec>,
}

/// `host:port`, with an IPv6 address in brackets; kept in step with `model::Endpoint::parse`.
pub const ENDPOINT_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]/]+):[0-9]{1,5}$";

/// Backoff between consecutive restarts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    /// Consecutive restarts that wait only `restart_grace`; each further wait doubles.
    /// Default 3.
    #[schemars(extend("default" = super::model::Backoff::default().after))]
    pub after: Option<u32>,
    /// Longest wait between consecutive restarts. Default 1h.
    #[schemars(extend("default" = super::duration::format(super::model::Backoff::default().max)))]
    pub max: Option<DurationSpec>,
}

/// What a target name may hold: letters (of any script, with their marks), digits, spaces
/// and `. _ - @ : / +`; never a control or formatting character (line breaks, terminal
/// escapes, bidirectional overrides).
/// A service's name: ASCII letters, digits and `@ . _ : -` (a space inside, for Windows),
/// never a path (no `/`, no leading dot).
pub const SERVICE_PATTERN: &str = r"^[A-Za-z0-9@_:-][A-Za-z0-9@._: -]{0,255}$";

pub const NAME_PATTERN: &str = r"^[\p{L}\p{N}._@:/+-][\p{L}\p{M}\p{N}._@:/+ -]*$";

/// `text` made a valid target name: each character a name may not hold becomes `_` (the
/// positional form names its target after the heartbeat file).
pub fn safe_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .take(200)
        .map(|c| {
            if c.is_alphanumeric() || "._@:/+- ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || !name.starts_with(|c: char| c.is_alphanumeric() || "._@:/+-".contains(c))
    {
        name.insert(0, '_');
        name.truncate(200);
    }
    name
}

/// A command as written: one string (split into words like a shell would, or run through the
/// shell with `shell: true`), or a list of arguments used as they are.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum CommandSpec {
    Line(String),
    Argv(Vec<String>),
}

impl JsonSchema for CommandSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Command".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A command line (split into words as a shell would, without running \
                            a shell unless `shell: true`), or a list of arguments.",
            "type": ["string", "array"],
            "minLength": 1,
            "minItems": 1,
            "items": { "type": "string" }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;
    use crate::config::{Os, parse_str};

    fn check_name(name: &str) -> Result<(), String> {
        // Double-quoted YAML with every character outside printable ASCII escaped, so the
        // name (not the YAML parser) is what is judged.
        let quoted: String = name
            .chars()
            .map(|c| match c {
                '"' | '\\' => format!("\\{c}"),
                ' '..='~' => c.to_string(),
                c if (c as u32) < 0x10000 => format!("\\u{:04x}", c as u32),
                c => format!("\\U{:08x}", c as u32),
            })
            .collect();
        let yaml = format!(
            "targets:\n  - name: \"{quoted}\"\n    heartbeat: /run/x\n    timeout: 5m\n    start: 'true'\n"
        );
        parse_str(&yaml, "t.yaml", Os::Linux, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_hold_nothing_that_could_forge_a_line_or_reach_a_terminal() {
        for good in [
            "salt-minion",
            "web 01",
            "mínion été",
            "backup@db:5432",
            "a/b+c.d_e",
        ] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in [
            "svc\nINFO forged",
            "svc\u{1b}[2J",
            "svc\u{202e}gnp.exe",
            "\tsvc",
            " svc",
            "svc\r",
            "svc\u{7f}",
            "",
        ] {
            let err = check_name(bad).expect_err(bad);
            assert!(err.contains("targets[0].name"), "{err}");
            assert!(!err.chars().any(|c| c.is_control() && c != '\n'), "{err:?}");
        }
        assert!(check_name(&"x".repeat(201)).is_err());
    }

    #[test]
    fn a_name_made_from_a_file_name_is_always_valid() {
        for file in [
            "htrd_minion_alived",
            "mínion alive ✓.beat",
            "a\nb\u{1b}",
            " lead",
            "\u{301}mark first",
            "",
            &"é".repeat(300),
        ] {
            let name = safe_name(file);
            assert_eq!(check_name(&name), Ok(()), "{file:?} -> {name:?}");
        }
        assert_eq!(safe_name("htrd_minion_alived"), "htrd_minion_alived");
    }
}
