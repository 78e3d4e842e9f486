//! The state file: what protector knows about each target, written atomically on every change
//! and read back on start-up (so consecutive restarts and backoff survive a restart of
//! protector itself) and by `protector status`. Times are seconds since the Unix epoch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

mod lines;
pub mod running;

use lines::Lines;

pub const FORMAT: &str = "protector-state";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateFile {
    pub format: String,
    pub version: u32,
    pub pid: u32,
    pub protector_version: String,
    pub started_at: f64,
    pub written_at: f64,
    pub config: Option<String>,
    pub lock_file: Option<String>,
    /// Where the running protector takes operators' requests (`protector pause`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_socket: Option<String>,
    /// Heartbeat files looked at (one `stat` each) since protector started.
    #[serde(default)]
    pub observations_total: u64,
    /// The config file was refused at start-up: protector runs on its last accepted copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_refused: Option<ConfigRefused>,
    pub targets: Vec<TargetRecord>,
}

/// Why the config in force is not the config file (see `config::accepted`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConfigRefused {
    /// Since when (protector's start).
    pub since: f64,
    /// The last accepted copy in force.
    pub running_on: String,
    /// When that copy was accepted.
    pub accepted_at: Option<f64>,
    /// What is wrong with the file (the first 20 lines).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TargetRecord {
    pub name: String,
    pub heartbeat: String,
    pub state: TargetStatus,
    pub last_heartbeat: Option<f64>,
    pub next_check: Option<f64>,
    pub restarts_total: u64,
    pub consecutive_restarts: u32,
    /// The wait after the latest restart (0 when not backing off).
    pub backoff_secs: f64,
    pub command_failures_total: u64,
    pub command_timeouts_total: u64,
    /// Restarts whose start command failed, could not run or timed out.
    #[serde(default)]
    pub restarts_failed_total: u64,
    pub last_restart: Option<Box<RestartRecord>>,
    /// The stop, start or skip_if command running when this was written (Linux): a
    /// protector started after a crash waits for what is left of it, or kills it, before it
    /// runs another command for the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_command: Option<Box<RunningCommand>>,
    /// An operator paused the target (`protector pause`) until then: it is not judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<f64>,
    /// The reason the operator gave for the pause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    /// The pause lasts until an operator resumes it (`paused_until` is its next reminder).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pause_until_resumed: bool,
    /// Held since then: stale, but a dependency (`depends_on`) is down, so not restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_since: Option<f64>,
    /// While held: what the dependency check that found it down said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// The service's pid file (`pid_file`), which `status` reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<String>,
    /// Observe only (`observe_only`): its "restarts" keep an incident and touch nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub observe_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunningCommand {
    /// `stop`, `start` or `skip_if`.
    pub command: String,
    /// Its process group.
    pub pgid: u32,
    /// Tells this group from a later one with the same number (boot and start time).
    pub stamp: String,
    pub started_at: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RestartRecord {
    pub at: f64,
    pub commands: Vec<CommandRecord>,
    /// What the service looked like before this restart (`protector incidents show ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<IncidentNote>,
}

/// An incident kept for a restart, as the state file names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IncidentNote {
    pub id: String,
    /// Its one line: `1 process: 1 T (stopped); ...`.
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CommandRecord {
    pub command: String,
    /// The exit code, when the command exited normally.
    pub exit_code: Option<i32>,
    /// How it ended: `exit status: 0`, `signal: 9 (SIGKILL)`, or why it could not run.
    pub status: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    /// The last lines of a failed command's output (stderr, else stdout), at most
    /// `OUTPUT_KEPT` bytes: what `status` shows of why it failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
}

/// Bytes of a failed command's output the state file keeps.
pub const OUTPUT_KEPT: usize = 400;

impl CommandRecord {
    /// The last lines of `output` that fit in `OUTPUT_KEPT` bytes (whole lines, or the end of
    /// one longer line), control characters escaped.
    pub fn tail_of(output: &str) -> String {
        let text = crate::text::clean_lines(output.trim());
        if text.len() <= OUTPUT_KEPT {
            return text.into_owned();
        }
        let mut start = text.len() - OUTPUT_KEPT;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        let tail = &text[start..];
        let tail = tail.split_once('\n').map_or(tail, |(_, whole)| whole);
        format!("...{tail}")
    }

    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// Where a target stands, as the state file, `status` and the metrics say it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TargetStatus {
    /// Watched; the heartbeat came after the latest restart (or no restart yet).
    #[serde(rename = "watching")]
    Watching,
    /// A stop, start or skip_if command runs (or waits for a place).
    #[serde(rename = "restarting")]
    Restarting,
    /// Restarted, and no heartbeat since: waiting `restart_grace` before judging it again.
    #[serde(rename = "recovering")]
    Recovering,
    /// Restarted several times in a row without a heartbeat: the wait before judging it again
    /// has grown past `restart_grace` (`backoff`).
    #[serde(rename = "backing off")]
    BackingOff,
    /// max_restarts reached without a heartbeat: only looking for one.
    #[serde(rename = "given up")]
    GivenUp,
    #[serde(rename = "disabled")]
    Disabled,
    /// An operator paused it (`protector pause`): not judged until resumed or the pause ends.
    #[serde(rename = "paused")]
    Paused,
    /// Stale, but a dependency (`depends_on`) is down: not restarted while it is; checked
    /// again, and given a whole timeout once it is back.
    #[serde(rename = "held")]
    Held,
}

impl TargetStatus {
    pub const ALL: [TargetStatus; 8] = [
        TargetStatus::Watching,
        TargetStatus::Restarting,
        TargetStatus::Recovering,
        TargetStatus::BackingOff,
        TargetStatus::GivenUp,
        TargetStatus::Disabled,
        TargetStatus::Paused,
        TargetStatus::Held,
    ];

    /// The word used in the state file, `status` and the metrics' `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Watching => "watching",
            TargetStatus::Restarting => "restarting",
            TargetStatus::Recovering => "recovering",
            TargetStatus::BackingOff => "backing off",
            TargetStatus::GivenUp => "given up",
            TargetStatus::Disabled => "disabled",
            TargetStatus::Paused => "paused",
            TargetStatus::Held => "held",
        }
    }

    /// Fine: nothing for an operator to look at (a pause is an operator's own doing).
    pub fn is_fine(self) -> bool {
        matches!(
            self,
            TargetStatus::Watching | TargetStatus::Disabled | TargetStatus::Paused
        )
    }
}

impl std::fmt::Display for TargetStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state file larger than this is not read, whatever the number of targets (10,000 targets
/// take about 3 MiB, 100,000 about 30 MiB before any restart is on record).
pub const MAX_BYTES: u64 = 64 << 20;

/// Bytes a state file may hold per target beyond [`MAX_BYTES`]: a record at its largest (a
/// failed restart's commands with their output, an incident, a pause reason) is about 21 KB
/// with both its paths at PATH_MAX (`what_protector_writes_for_its_targets_it_reads_back`).
pub const BYTES_PER_TARGET: u64 = 32 << 10;

/// The most of a state file read when `targets` are watched: what protector writes for
/// them, whatever their records hold (100,000 targets whose restarts all failed write well
/// over 64 MiB; a bound that refused them would lose their backoff at the next start).
pub fn max_bytes(targets: usize) -> u64 {
    MAX_BYTES.max(BYTES_PER_TARGET.saturating_mul(targets as u64))
}

/// Why a state file cannot be used.
#[derive(Debug)]
pub enum Unusable {
    /// Unreadable, corrupt, too large, or not a protector state file: set it aside.
    Corrupt(String),
    /// Not a regular file (a FIFO, a device, a directory): never read, renamed or written.
    NotRegular(String),
    /// Another user's, or with more than one name: not read (it could restore a pause, or
    /// restarts, no one asked for), set aside like a corrupt one.
    Planted(String),
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Corrupt(r) | Unusable::NotRegular(r) | Unusable::Planted(r) => f.write_str(r),
        }
    }
}

/// Reads a state file. `Ok(None)` when there is none yet. Only a regular file of at most
/// `max` bytes is read ([`max_bytes`]), so a FIFO or a device put in its place can neither
/// hang protector nor fill its memory.
pub fn load(path: &Path, max: u64) -> Result<Option<StateFile>, Unusable> {
    use std::io::Read;
    let file = match fsutil::open_to_read(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Unusable::Corrupt(e.to_string())),
    };
    let meta = file
        .metadata()
        .map_err(|e| Unusable::Corrupt(e.to_string()))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "a FIFO, socket or device"
        };
        return Err(Unusable::NotRegular(format!("not a regular file ({kind})")));
    }
    if let Some(why) = crate::perms::planted(&meta) {
        return Err(Unusable::Planted(why));
    }
    let mut text = String::new();
    file.take(max.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| Unusable::Corrupt(e.to_string()))?;
    if text.len() as u64 > max {
        return Err(Unusable::Corrupt(format!("larger than {} MiB", max >> 20)));
    }
    parse(&text).map(Some)
}

/// A state file's text: JSON of this format and version.
pub fn parse(text: &str) -> Result<StateFile, Unusable> {
    let state: StateFile = serde_json::from_str(text)
        .map_err(|e| Unusable::Corrupt(format!("not a protector state file: {e}")))?;
    if state.format != FORMAT || state.version != VERSION {
        return Err(Unusable::Corrupt(format!(
            "not a protector state file of version {VERSION} (format {:?}, version {})",
            state.format, state.version
        )));
    }
    Ok(state)
}

/// Writes `state` to `path` (atomically), as [`Lines`] lays it out.
pub fn save(path: &Path, state: &StateFile) -> std::io::Result<()> {
    fsutil::write_atomically(path, |w| {
        let mut json = serde_json::Serializer::with_formatter(&mut *w, Lines::default());
        state.serialize(&mut json)?;
        w.write_all(b"\n")
    })
}

/// Moves an unusable state file out of the way (never deletes it: it may be evidence).
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = fsutil::epoch_secs(std::time::SystemTime::now()) as u64;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".corrupt-{stamp}"));
    let aside = PathBuf::from(name);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::{CommandRecord, OUTPUT_KEPT, TargetRecord};

    /// Every state snapshot holds a record per target (the writer's, at 10,000 targets, made
    /// beside the slots at start-up: the load's peak); what few targets have is boxed. 376
    /// bytes before.
    #[test]
    fn a_target_record_is_a_couple_of_hundred_bytes() {
        let size = std::mem::size_of::<TargetRecord>();
        assert!(size <= 256, "a record is {size} bytes");
    }

    #[test]
    fn a_failed_commands_output_is_kept_as_its_last_whole_lines_escaped() {
        assert_eq!(CommandRecord::tail_of("  no such unit\n"), "no such unit");
        assert_eq!(CommandRecord::tail_of("a\x1b[31mb"), "a\\u{1b}[31mb");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let kept = CommandRecord::tail_of(&long);
        assert!(kept.len() <= OUTPUT_KEPT + 3, "{}", kept.len());
        assert!(
            kept.starts_with("...line ") && kept.ends_with("line 99"),
            "{kept}"
        );
        // One long line: its end, cut on a character boundary.
        let wide = "é".repeat(OUTPUT_KEPT);
        let kept = CommandRecord::tail_of(&wide);
        assert!(kept.starts_with("...é") && kept.len() <= OUTPUT_KEPT + 3);
    }

    #[test]
    fn the_state_file_has_a_line_per_key_and_per_target_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let record = |name: &str| {
            let text = format!(
                r#"{{"name": "{name}", "heartbeat": "/h/{name}", "state": "watching",
                "last_heartbeat": 1.5, "next_check": null, "restarts_total": 2,
                "consecutive_restarts": 0, "backoff_secs": 0, "command_failures_total": 0,
                "command_timeouts_total": 0, "last_restart": {{"at": 1.0, "commands": [
                {{"command": "stop", "exit_code": 0, "status": "exit status: 0",
                "duration_ms": 3, "timed_out": false}}]}}}}"#
            );
            serde_json::from_str(&text).unwrap()
        };
        let state = super::StateFile {
            format: super::FORMAT.into(),
            version: super::VERSION,
            pid: 7,
            protector_version: "0".into(),
            started_at: 1.0,
            written_at: 2.0,
            config: Some("/etc/protector/protector.yaml".into()),
            lock_file: None,
            control_socket: None,
            observations_total: 3,
            config_refused: None,
            targets: vec![record("a"), record("b")],
        };
        super::save(&path, &state).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(matches!(
            super::load(&path, 100),
            Err(super::Unusable::Corrupt(why)) if why == "larger than 0 MiB"
        ));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{");
        assert_eq!(lines[1], r#""format":"protector-state","#);
        assert!(lines.contains(&r#""targets":["#), "{text}");
        let a = lines.iter().position(|l| l.starts_with(r#"{"name":"a""#));
        let b = lines.iter().position(|l| l.starts_with(r#"{"name":"b""#));
        assert_eq!(b, a.map(|a| a + 1), "{text}");
        assert!(lines[a.unwrap()].ends_with("]}},"), "{text}");
        assert_eq!(lines[lines.len() - 2..], ["]", "}"]);
        assert_eq!(
            super::load(&path, super::MAX_BYTES).unwrap().unwrap(),
            state
        );
    }

    #[test]
    fn what_protector_writes_for_its_targets_it_reads_back() {
        // A record at its largest: paths at PATH_MAX, a failed restart of three commands whose
        // output is all escapes, an incident, a pause reason of quotes.
        let long = |c: char, n: usize| std::iter::repeat_n(c, n).collect::<String>();
        let command = serde_json::json!({
            "command": "start", "exit_code": 1, "status": long('s', 1000),
            "duration_ms": u64::MAX, "timed_out": true,
            "output": CommandRecord::tail_of(&long('\u{1}', 10_000)),
        });
        let record: super::TargetRecord = serde_json::from_value(serde_json::json!({
            "name": long('n', 200), "heartbeat": long('h', 4096), "state": "backing off",
            "last_heartbeat": 1.5, "next_check": 2.5, "restarts_total": u64::MAX,
            "consecutive_restarts": u32::MAX, "backoff_secs": 3600.5,
            "command_failures_total": u64::MAX, "command_timeouts_total": u64::MAX,
            "restarts_failed_total": u64::MAX,
            "last_restart": {"at": 1.5, "commands": [command, command, command],
                "incident": {"id": long('i', 100), "summary": long('\u{2}', 1000)}},
            "paused_until": 1.5, "pause_reason": long('"', 200), "held_since": 1.5,
            "dependency": long('d', 1000), "pid_file": long('p', 4096), "observe_only": true,
        }))
        .unwrap();
        let bytes = serde_json::to_vec(&record).unwrap().len() as u64;
        assert!(bytes < super::BYTES_PER_TARGET, "{bytes}");
        assert_eq!(super::max_bytes(10), super::MAX_BYTES);
        assert_eq!(super::max_bytes(100_000), 100_000 * super::BYTES_PER_TARGET);
        assert!(
            bytes * 100_000 > super::MAX_BYTES,
            "the floor alone would refuse them"
        );
    }
}
