//! The daemon's books (the slots themselves are in `slot`): writing the state and metrics
//! files: soon after a restart step (a burst of steps becomes one write), lazily after a
//! heartbeat, never more than needed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::Daemon;
use super::slot::Slot;
pub(super) use super::writer::Part;
use super::writer::Writer;
use crate::config::{Files, Target};
use crate::fsutil::epoch_secs;
use crate::schedule::Now;
use crate::state::{self, ConfigRefused, StateFile, TargetRecord, TargetStatus};

/// Changes that only move a heartbeat are written to the state file at most this often, per
/// started thousand targets, up to [`LAZY_FLUSH_MAX`] times this: each write covers every
/// target (at 100,000 targets, 29 MB of state and 91 MB of metrics: written every 10 s, as
/// before this bound, that was 1% of a core and a terabyte a day).
const LAZY_FLUSH: Duration = Duration::from_secs(1);
const LAZY_FLUSH_MAX: usize = 60;
/// Restart steps are written within this long; a burst of them (a restart storm) becomes one
/// write of the state and metrics files instead of one per step.
const URGENT_FLUSH: Duration = Duration::from_millis(20);
/// The longest the loop waits for a write someone must find (a filesystem that does not
/// answer must not stop protector for good).
const WRITE_PATIENCE: Duration = Duration::from_secs(10);

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
    /// Writes them, on a thread of its own.
    writer: Writer,
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
            writer: Writer::default(),
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
            let per_thousand = (targets / 1000).clamp(1, LAZY_FLUSH_MAX) as u32;
            now + LAZY_FLUSH * per_thousand
        };
        self.flush_at = Some(self.flush_at.map_or(at, |t| t.min(at)));
    }

    /// Does protector write any file (a state or metrics file is set)?
    fn writes(&self) -> bool {
        self.files.state_file.is_some() || self.files.metrics_file.is_some()
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

    /// Hands the state and metrics files, as they are now, to be written (never in a dry
    /// run: what it decides never happened, and the next real run must not restore it).
    /// Returns the snapshot's number, `None` when nothing is written.
    pub(super) fn flush(&mut self) -> Option<u64> {
        self.books.flush_at = None;
        if self.opts.dry_run || !self.books.writes() {
            return None;
        }
        let snapshot = self.snapshot(self.now());
        Some(self.books.writer.submit(snapshot, &self.books.files))
    }

    /// The files' write when it is due: a snapshot is made only when the writer is free,
    /// else the write is due again when it likely is. (At 100,000 targets a snapshot costs the
    /// loop 40 ms and its write 0.35 s: in a restart storm, one every 20 ms was made and dropped
    /// unwritten, and the loop did little else.)
    pub(super) fn flush_when_free(&mut self, now: Instant) {
        match self.books.writer.busy_for() {
            Some(took) => self.books.flush_at = Some(now + took.max(URGENT_FLUSH)),
            None => {
                self.flush();
            }
        }
    }

    /// [`Daemon::flush`], and waits until `part` is written: for whoever reads the files
    /// next (`protector status` after an answer, the next protector after an exit). Returns
    /// whether the state file was written (`false` too when nothing is written).
    pub(super) fn flush_and_wait(&mut self, part: Part) -> bool {
        self.flush()
            .is_some_and(|n| self.books.writer.wait(n, part, WRITE_PATIENCE))
    }

    /// What the state file says now.
    pub(super) fn snapshot(&self, now: Now) -> StateFile {
        self.books.snapshot(&self.slots, now, self.refusal_record())
    }

    /// Takes off the records of running commands an earlier protector left (`left.rs`), once
    /// the state file holds what they said (`written`).
    pub(super) fn forget_records_left(&mut self, written: bool) {
        if !written {
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
        off.policy_mut().pid_file = Some("/run/off.pid".into());
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
        for (targets, secs) in [(1, 1), (10_000, 10), (100_000, 60), (1_000_000, 60)] {
            let mut b = books();
            b.mark_dirty(t0, false, targets);
            assert_eq!(
                b.flush_at,
                Some(t0 + Duration::from_secs(secs)),
                "{targets}"
            );
        }
    }
}
