//! What the loop does to the world, behind five small interfaces: a clock, something that
//! looks at heartbeat files, something that runs commands, something that checks
//! dependencies, something that loads the config (and a seed for the random waits). The
//! interfaces only: production's are in `real.rs`. Production passes the real ones
//! ([`Effects::real`]); the tests in `tests.rs` pass fakes and drive the loop on simulated
//! time, with no sleep and no process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::Outcome;
use crate::config::{CommandLine, Config, ConfigError, Depends};
use crate::schedule::{Now, Observation};
use crate::state::{IncidentNote, RunningCommand};

/// A look at one heartbeat file, with the reason when it could not be read.
pub(crate) type Look = (Observation, Option<String>);

/// Both clocks: monotonic for every deadline, wall only to date file changes and to write
/// times into the state file.
pub(crate) trait Clock {
    fn now(&self) -> Now;
}

/// Looks at heartbeat files, one result per path, in order; a look that has not answered
/// `within` counts as unreadable.
pub(crate) trait Looker {
    fn look(&self, paths: &[&Path], within: Duration) -> Vec<Look>;

    /// [`Looker::look`], and what to warn about each heartbeat's place (nothing for one not
    /// told `within`).
    fn look_and_place(&self, paths: &[&Path], within: Duration) -> Vec<(Look, Place)> {
        let looks = self.look(paths, within);
        looks.into_iter().map(|l| (l, Place::default())).collect()
    }
}

/// What to warn about a heartbeat's place, at start-up and when a reload adds or changes a
/// target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    /// Its directory does not exist: nothing can write the heartbeat yet.
    pub missing_dir: Option<String>,
    /// Any user can write it or its directory (`perms::heartbeat_dir_exposure_of`).
    pub exposed: Option<String>,
}

/// One command to run: a target's stop, start, skip_if or notify command.
pub(crate) struct Job {
    pub target: String,
    /// `stop`, `start`, `skip_if` or `notify`.
    pub what: &'static str,
    pub line: CommandLine,
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
    /// A command of the target that an earlier protector left running: waited for (at most
    /// the given time), then killed, before this one starts.
    pub after: Option<(RunningCommand, Duration)>,
    /// Told the command's process group once it runs.
    pub spawned: Option<Spawned>,
    /// The state file: the command's process group is put on record beside it the moment
    /// it is spawned (`state::running`), until it ends.
    pub record_beside: Option<PathBuf>,
    /// The first command of a restart: the incident to take and keep before it runs.
    pub incident: Option<IncidentJob>,
    /// Take the incident and run nothing (an observe-only target's "restart"); what is
    /// reported then says nothing.
    pub incident_only: bool,
}

/// An incident to take before a restart's first command runs, and whom to tell: told
/// exactly once, `None` when no incident was kept (dropped untold, as by a runner that
/// could not start the command, it tells `None`).
pub(crate) struct IncidentJob {
    pub draft: crate::incident::Draft,
    kept: Option<Kept>,
}

type Kept = Box<dyn FnOnce(Option<IncidentNote>) + Send>;

impl IncidentJob {
    pub fn new(draft: crate::incident::Draft, kept: Kept) -> IncidentJob {
        IncidentJob {
            draft,
            kept: Some(kept),
        }
    }

    /// Tells what was kept.
    pub fn tell(mut self, note: Option<IncidentNote>) {
        if let Some(kept) = self.kept.take() {
            kept(note);
        }
    }
}

impl Drop for IncidentJob {
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take() {
            kept(None);
        }
    }
}

/// Called with the process group of a command that was spawned.
pub(crate) type Spawned = Box<dyn FnOnce(RunningCommand) + Send>;

/// Called exactly once with how a command ended.
pub(crate) type Report = Box<dyn FnOnce(Outcome) + Send>;

/// Runs commands without blocking the caller. Whatever happens (the command cannot be
/// spawned, a thread cannot be made, a bug panics), `report` is called exactly once: a lost
/// report would leave the target waiting for its command for ever.
pub(crate) trait Runner {
    fn run(&self, job: Job, report: Report);
}

/// One dependency check to make, for a target.
pub(crate) struct Probe {
    pub target: String,
    pub depends: Depends,
    pub env: Vec<(&'static str, String)>,
}

/// Called exactly once with a check's verdict.
pub(crate) type Verdict = Box<dyn FnOnce(crate::depends::Verdict) + Send>;

/// Checks dependencies without blocking the caller; `verdict` is called at most once (the
/// loop bounds the wait for it itself, so a lost verdict only counts as "no answer").
pub(crate) trait Checker {
    fn check(&self, probe: Probe, verdict: Verdict);
}

/// A config file as loaded: the model and the file's text, or every problem found.
pub(crate) type LoadResult = Result<(Config, String), ConfigError>;

/// Called exactly once with what loading a config gave.
pub(crate) type Loaded = Box<dyn FnOnce(LoadResult) + Send>;

/// Loads a config file without blocking the caller: a large file, or a hostile one, takes
/// time to read and check, and the loop goes on watching (and feeding the systemd watchdog)
/// meanwhile. `done` is called exactly once.
pub(crate) trait Loader {
    fn load(&self, path: PathBuf, done: Loaded);
}

pub(crate) struct Effects {
    pub clock: Box<dyn Clock>,
    pub looker: Box<dyn Looker>,
    pub runner: Box<dyn Runner>,
    pub checker: Box<dyn Checker>,
    pub loader: Box<dyn Loader>,
    /// Seeds each target's random waits.
    pub seed: u64,
}
