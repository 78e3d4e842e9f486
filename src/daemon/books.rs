//! The daemon's books (the slots themselves are in `slot`): writing the state and metrics
//! files: soon after a restart step (a burst of steps becomes one write), lazily after a
//! heartbeat, never more than needed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::Daemon;
use super::slot::Slot;
use crate::config::{Files, Target};
use crate::fsutil::epoch_secs;
use crate::metrics;
use crate::schedule::Now;
use crate::state::{self, ConfigRefused, RunningCommand, StateFile, TargetRecord, TargetStatus};

/// Changes that only move a heartbeat are written to the state file at most this often, per
/// started thousand targets (up to ten times this).
const LAZY_FLUSH: Duration = Duration::from_secs(1);
/// Restart steps are written within this long; a burst of them (a restart storm) becomes one
/// write of the state and metrics files instead of one per step.
const URGENT_FLUSH: Duration = Duration::from_millis(20);

/// What is written to the state and metrics files besides the slots, and when.
pub(super) struct Books {
    /// The config file (none for the positional form), as the state file names it.
    pub config: Option<String>,
    pub files: Files,
    pub lock_file: PathBuf,
    /// The control socket, when protector listens on one.
    pub control_socket: Option<PathBuf>,
    pub started_at: SystemTime,
    /// Enabled targets are slots; disabled ones are only listed.
    pub disabled: Vec<Target>,
    /// Heartbeat files looked at since start-up.
    pub observations: u64,
    /// When the files are next written (`None`: nothing changed).
    pub flush_at: Option<Instant>,
    last_write_error: Option<String>,
    /// Records of running commands an earlier protector left (`state::running`), taken off
    /// once the state file holds what they said.
    pub records_left: Vec<PathBuf>,
}

impl Books {
    pub fn new(config: Option<&Path>, lock_file: PathBuf, started_at: SystemTime) -> Books {
        Books {
            config: config.map(|p| p.display().to_string()),
            files: Files::default(),
            lock_file,
            control_socket: None,
            started_at,
            disabled: Vec::new(),
            observations: 0,
            flush_at: None,
            last_write_error: None,
            records_left: Vec::new(),
        }
    }

    pub fn flush_due(&self, now: Instant) -> bool {
        self.flush_at.is_some_and(|at| at <= now)
    }
}

impl Books {
    /// Something the files show changed: write them soon (`urgent`: a restart step) or
    /// lazily (a heartbeat moved; with many `targets`, less often: each write covers all).
    pub fn mark_dirty(&mut self, now: Instant, urgent: bool, targets: usize) {
        let at = if urgent {
            now + URGENT_FLUSH
        } else {
            let per_thousand = (targets / 1000).clamp(1, 10) as u32;
            now + LAZY_FLUSH * per_thousand
        };
        self.flush_at = Some(self.flush_at.map_or(at, |t| t.min(at)));
    }

    /// Does protector write any file (a state or metrics file is set)?
    fn writes(&self) -> bool {
        self.files.state_file.is_some() || self.files.metrics_file.is_some()
    }

    /// Writes `snapshot` to the state and metrics files. A failure is logged (once per new
    /// reason) and watching goes on.
    pub fn write(&mut self, snapshot: &StateFile) {
        let mut errors = Vec::new();
        if let Some(path) = &self.files.state_file
            && let Err(e) = state::save(path, snapshot)
        {
            errors.push(format!("cannot write state file {}: {e}", path.display()));
        }
        if let Some(path) = &self.files.metrics_file
            && let Err(e) = crate::fsutil::write_atomically(path, |w| metrics::render(snapshot, w))
        {
            errors.push(format!("cannot write metrics file {}: {e}", path.display()));
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        if error.is_some() && error != self.last_write_error {
            warn!(
                event = "write_failed",
                reason = error.as_deref().unwrap_or_default(),
                "cannot write protector's files; watching continues"
            );
        }
        self.last_write_error = error;
    }

    /// What the state file says at `now` of `slots` (and the disabled targets), with
    /// `refused` when the config file in force is a last accepted copy.
    pub fn snapshot(&self, slots: &[Slot], now: Now, refused: Option<ConfigRefused>) -> StateFile {
        let now_wall = epoch_secs(now.wall);
        let wall_at = |at: Instant| {
            if at >= now.mono {
                now_wall + (at - now.mono).as_secs_f64()
            } else {
                now_wall - (now.mono - at).as_secs_f64()
            }
        };
        let mut targets: Vec<TargetRecord> = slots.iter().map(|s| s.record_at(wall_at)).collect();
        targets.extend(self.disabled.iter().map(disabled_record));
        StateFile {
            format: state::FORMAT.into(),
            version: state::VERSION,
            pid: std::process::id(),
            protector_version: env!("CARGO_PKG_VERSION").into(),
            started_at: epoch_secs(self.started_at),
            written_at: now_wall,
            config: self.config.clone(),
            lock_file: Some(self.lock_file.display().to_string()),
            control_socket: self
                .control_socket
                .as_ref()
                .map(|p| p.display().to_string()),
            observations_total: self.observations,
            config_refused: refused,
            targets,
        }
    }
}

/// A disabled target, as the state file lists it.
fn disabled_record(t: &Target) -> TargetRecord {
    TargetRecord {
        name: t.name.clone(),
        heartbeat: t.heartbeat.display().to_string(),
        state: TargetStatus::Disabled,
        last_heartbeat: None,
        next_check: None,
        restarts_total: 0,
        consecutive_restarts: 0,
        backoff_secs: 0.0,
        command_failures_total: 0,
        command_timeouts_total: 0,
        restarts_failed_total: 0,
        last_restart: None,
        running_command: None,
        paused_until: None,
        pause_until_resumed: false,
        pause_reason: None,
        held_since: None,
        dependency: None,
        pid_file: t.pid_file.as_ref().map(|p| p.display().to_string()),
        observe_only: t.observe_only,
    }
}

impl Daemon {
    /// Something the files show changed: write them soon (`urgent`: a restart step) or
    /// lazily (a heartbeat moved).
    pub(super) fn mark_dirty(&mut self, urgent: bool) {
        let now = self.now().mono;
        self.books.mark_dirty(now, urgent, self.slots.len());
    }

    /// Writes the state and metrics files now (never in a dry run: what it decides never
    /// happened, and the next real run must not restore it).
    pub(super) fn flush(&mut self) {
        self.books.flush_at = None;
        if self.opts.dry_run || !self.books.writes() {
            return;
        }
        let snapshot = self.snapshot(self.now());
        self.books.write(&snapshot);
    }

    /// What the state file says now.
    pub(super) fn snapshot(&self, now: Now) -> StateFile {
        self.books.snapshot(&self.slots, now, self.refusal_record())
    }

    /// Start-up: temporary files an earlier protector left when it died mid-write go.
    pub(super) fn remove_stale_temps(&self) {
        let files = &self.books.files;
        for path in [&files.state_file, &files.metrics_file]
            .into_iter()
            .flatten()
        {
            let removed = crate::fsutil::remove_stale_temps(path);
            if removed > 0 {
                info!(
                    event = "stale_temps_removed",
                    file = %path.display(),
                    removed,
                    "removed temporary files an earlier protector left behind"
                );
            }
        }
    }

    /// Records of the previous run, by target name. An unusable file is set aside.
    pub(super) fn read_state_file(&mut self) -> HashMap<String, TargetRecord> {
        let Some(path) = self.books.files.state_file.clone() else {
            return HashMap::new();
        };
        let path = &path;
        match state::load(path) {
            Ok(Some(file)) => file
                .targets
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            Ok(None) => HashMap::new(),
            Err(state::Unusable::NotRegular(reason)) => {
                error!(
                    event = "state_file_unusable",
                    state_file = %path.display(),
                    reason = %reason,
                    "the state file is not a regular file; it is left alone and no state is kept"
                );
                self.books.files.state_file = None;
                HashMap::new()
            }
            Err(state::Unusable::Corrupt(reason) | state::Unusable::Planted(reason))
                if self.opts.dry_run =>
            {
                warn!(event = "state_file_unusable", state_file = %path.display(), reason = %reason, "state file is unusable; dry run: left as it is");
                HashMap::new()
            }
            Err(state::Unusable::Corrupt(reason)) => {
                match state::set_aside(path) {
                    Ok(aside) => warn!(
                        event = "state_file_unusable",
                        state_file = %path.display(),
                        reason = %reason,
                        moved_to = %aside.display(),
                        "state file is unusable; moved it aside and starting fresh"
                    ),
                    Err(e) => {
                        warn!(event = "state_file_unusable", state_file = %path.display(), reason = %reason, "state file is unusable and cannot be moved aside ({e}); it will be overwritten")
                    }
                }
                HashMap::new()
            }
            // Not trusted: set aside all the same, and said as an error (someone may be at work).
            Err(state::Unusable::Planted(reason)) => {
                let aside = state::set_aside(path).map_or_else(
                    |e| format!("(cannot move it aside: {e})"),
                    |a| a.display().to_string(),
                );
                error!(
                    event = "state_file_refused",
                    state_file = %path.display(),
                    reason = %reason,
                    moved_to = %aside,
                    "the state file is not protector's own; not read, moved aside, starting fresh"
                );
                HashMap::new()
            }
        }
    }

    /// The commands an earlier protector had running as its state file says, or as the
    /// records it wrote the moment each was spawned say when those are newer (it may have
    /// been killed before its state file said so), by target name.
    pub(super) fn commands_left(
        &mut self,
        restored: &HashMap<String, TargetRecord>,
    ) -> HashMap<String, RunningCommand> {
        let mut left: HashMap<String, RunningCommand> = restored
            .iter()
            .filter_map(|(name, rec)| Some((name.clone(), rec.running_command.clone()?)))
            .collect();
        if let Some(path) = &self.books.files.state_file {
            for (record, target, running) in state::running::left(path) {
                self.books.records_left.push(record);
                match left.get(&target) {
                    Some(known) if known.started_at >= running.started_at => {}
                    _ => {
                        left.insert(target, running);
                    }
                }
            }
        }
        left
    }

    /// Takes off the records [`Daemon::commands_left`] read, once the state file holds what
    /// they said.
    pub(super) fn forget_records_left(&mut self) {
        if self.opts.dry_run || self.books.last_write_error.is_some() {
            return;
        }
        for record in self.books.records_left.drain(..) {
            state::running::remove(&record);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CommandLine;

    fn books() -> Books {
        Books::new(
            Some(Path::new("/etc/protector/protector.yaml")),
            PathBuf::from("/run/protector/x.lock"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        )
    }

    #[test]
    fn a_snapshot_names_the_config_lists_disabled_targets_and_counts_looks() {
        let mut b = books();
        let mut off = Target::new(
            "off",
            "/h/off".into(),
            Duration::from_secs(60),
            CommandLine::Exec(vec!["true".into()]),
        );
        off.pid_file = Some("/run/off.pid".into());
        b.disabled.push(off);
        b.observations = 7;
        let now = Now {
            mono: Instant::now(),
            wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100),
        };
        let snap = b.snapshot(&[], now, None);
        assert_eq!(
            snap.config.as_deref(),
            Some("/etc/protector/protector.yaml")
        );
        assert_eq!(snap.lock_file.as_deref(), Some("/run/protector/x.lock"));
        assert_eq!((snap.started_at, snap.written_at), (1.8e9, 1.8e9 + 100.0));
        assert_eq!(snap.observations_total, 7);
        assert_eq!(snap.targets.len(), 1);
        assert_eq!(snap.targets[0].state, TargetStatus::Disabled);
        assert_eq!(snap.targets[0].pid_file.as_deref(), Some("/run/off.pid"));
    }

    #[test]
    fn restart_steps_are_written_within_20_ms_and_heartbeats_lazily_by_size() {
        let t0 = Instant::now();
        let mut b = books();
        b.mark_dirty(t0, false, 5_000);
        assert_eq!(b.flush_at, Some(t0 + LAZY_FLUSH * 5));
        b.mark_dirty(t0, true, 5_000);
        assert_eq!(b.flush_at, Some(t0 + URGENT_FLUSH), "the sooner wins");
        b.mark_dirty(t0, false, 1);
        assert_eq!(b.flush_at, Some(t0 + URGENT_FLUSH));
        assert!(!b.flush_due(t0) && b.flush_due(t0 + URGENT_FLUSH));
    }

    #[test]
    fn a_failed_write_is_remembered_until_one_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "").unwrap();
        let mut b = books();
        // Under a file: no directory can be made there.
        b.files.state_file = Some(dir.path().join("file/state.json"));
        assert!(b.writes());
        let now = Now::read();
        let snap = b.snapshot(&[], now, None);
        b.write(&snap);
        let failed = b.last_write_error.clone().expect("a failure");
        assert!(failed.starts_with("cannot write state file"), "{failed}");
        b.files.state_file = Some(dir.path().join("state.json"));
        b.write(&snap);
        assert_eq!(b.last_write_error, None);
        let back = crate::state::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        assert_eq!(
            back.config.as_deref(),
            Some("/etc/protector/protector.yaml")
        );
    }
}
