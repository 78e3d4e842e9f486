//! What the loop does to the world, behind five small interfaces: a clock, something that
//! looks at heartbeat files, something that runs commands, something that checks
//! dependencies, something that loads the config (and a seed for the random waits). Production passes the real ones
//! ([`Effects::real`]); the tests in `tests.rs` pass fakes and drive the loop on simulated
//! time, with no sleep and no process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use crate::command::{self, Outcome};
use crate::config::{CommandLine, Config, ConfigError, Depends};
use crate::fsutil::epoch_secs;
use crate::platform;
use crate::schedule::{Now, Observation};
use crate::state::RunningCommand;

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

    /// What to warn about each heartbeat's place (nothing for one not told `within`).
    fn places(&self, paths: &[&Path], within: Duration) -> Vec<super::looks::Place> {
        let _ = within;
        vec![super::looks::Place::default(); paths.len()]
    }
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

impl Effects {
    /// The system clocks, `stat` on worker threads with a deadline (`looks.rs`), and a
    /// thread per command running it contained (`command::run`).
    pub fn real() -> Effects {
        Effects {
            clock: Box::new(SystemClock),
            looker: real_looker(),
            runner: Box::new(ThreadRunner),
            checker: Box::new(ThreadChecker),
            loader: Box::new(ThreadLoader),
            seed: crate::fsutil::random(),
        }
    }
}

/// A helper process's workers look at heartbeats (Linux, when enabled), else this process's.
fn real_looker() -> Box<dyn Looker> {
    #[cfg(target_os = "linux")]
    if let Some(helper) = super::looks::helper::looker() {
        return Box::new(helper);
    }
    Box::new(super::looks::FileLooker::default())
}

/// A thread per load (reloads are rare and one at a time); if none can be made, the load
/// runs on the caller's thread, as it did before loads had threads of their own.
struct ThreadLoader;

impl Loader for ThreadLoader {
    fn load(&self, path: PathBuf, done: Loaded) {
        let work = std::sync::Arc::new(std::sync::Mutex::new(Some((path, done))));
        let theirs = work.clone();
        let take = |w: &std::sync::Mutex<Option<(PathBuf, Loaded)>>| {
            w.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        let spawned = std::thread::Builder::new()
            .name("protector-load".into())
            .spawn(move || {
                if let Some((path, done)) = take(&theirs) {
                    done(load_contained(&path));
                }
            });
        if let Err(e) = spawned {
            warn!(event = "load_thread_failed", reason = %e, "cannot start a thread to read the config; reading it on the loop's thread");
            if let Some((path, done)) = take(&work) {
                done(load_contained(&path));
            }
        }
    }
}

/// `config::load_text` for the host, with a panic (a bug) turned into a problem.
pub(crate) fn load_contained(path: &Path) -> LoadResult {
    std::panic::catch_unwind(|| crate::config::load_text(path, crate::config::Os::host()))
        .unwrap_or_else(|p| {
            Err(ConfigError::one(
                &path.display().to_string(),
                format!("internal error: {}", panic_message(&*p)),
                None,
            ))
        })
}

/// A thread per check, running `depends::check` (itself bounded by `check_timeout`).
struct ThreadChecker;

impl Checker for ThreadChecker {
    fn check(&self, probe: Probe, verdict: Verdict) {
        let target = probe.target.clone();
        let made = std::thread::Builder::new()
            .name("protector-check".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let v = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    crate::depends::check(&probe.depends, &probe.env)
                }))
                .unwrap_or_else(|p| crate::depends::Verdict {
                    up: false,
                    detail: format!("internal error: {}", panic_message(&*p)),
                });
                verdict(v);
            });
        if let Err(e) = made {
            warn!(target = %target, event = "dependency_check_failed", reason = %e, "cannot start a thread to check the dependencies; counted as no answer");
        }
    }
}

struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Now {
        Now::read()
    }
}

struct ThreadRunner;

impl Runner for ThreadRunner {
    fn run(&self, job: Job, report: Report) {
        // The report moves into the thread; if the thread cannot be made, it comes back
        // through this slot and is called here.
        let slot = std::sync::Arc::new(std::sync::Mutex::new(Some(report)));
        let theirs = slot.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("protector-{}", job.what))
            .stack_size(256 * 1024)
            .spawn(move || {
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                    if let Some((left, wait)) = &job.after {
                        settle(&job.target, left, *wait);
                    }
                    let mut spawned = job.spawned;
                    let mut record = None;
                    let outcome = command::run(&job.line, &job.env, job.timeout, |pgid| {
                        if let Some(tell) = spawned.take()
                            && let Some(stamp) = platform::group_stamp(pgid)
                        {
                            let running = RunningCommand {
                                command: job.what.into(),
                                pgid,
                                stamp,
                                started_at: epoch_secs(SystemTime::now()),
                            };
                            record =
                                put_on_record(&job.target, job.record_beside.as_deref(), &running);
                            tell(running);
                        }
                    });
                    if let Some(record) = record {
                        crate::state::running::remove(&record);
                    }
                    outcome
                }))
                .unwrap_or_else(|p| {
                    Outcome::failed(format!("internal error: {}", panic_message(&*p)))
                });
                let report = theirs.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(report) = report {
                    report(outcome);
                }
            });
        if let Err(e) = spawned {
            let report = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(report) = report {
                report(Outcome::short_of_resources(format!(
                    "cannot start a thread for the command: {e}"
                )));
            }
        }
    }
}

/// Puts a command's process group on record beside the state file `state` at once; the
/// record's path (to take it off when the command ends), if it was written.
fn put_on_record(target: &str, state: Option<&Path>, running: &RunningCommand) -> Option<PathBuf> {
    crate::state::running::write(state?, target, running)
        .inspect_err(|e| {
            warn!(target = %target, event = "command_record_failed", reason = %e, "cannot put the command's process group on record at once; the state file records it shortly");
        })
        .ok()
}

/// Waits for a command group an earlier protector left running, at most `wait`, then kills
/// it (and waits a little for it to go).
fn settle(target: &str, left: &RunningCommand, wait: Duration) {
    let alive = || platform::group_alive(left.pgid, &left.stamp);
    let what = &left.command;
    if wait_while(alive, wait) {
        info!(target = %target, event = "leftover_finished", command = %what, pgid = left.pgid, "the {what} command of the previous protector has finished; going on");
        return;
    }
    warn!(target = %target, event = "leftover_killed", command = %what, pgid = left.pgid, "the {what} command of the previous protector outlived its command_timeout; killed its process group");
    platform::kill_group(left.pgid);
    wait_while(alive, Duration::from_secs(5));
}

/// Polls `cond` until it is false (true) or `limit` has passed (false).
fn wait_while(mut cond: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = crate::schedule::later(Instant::now(), limit);
    let mut pause = Duration::from_millis(10);
    while cond() {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(500));
    }
    true
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
