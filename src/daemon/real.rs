//! The production effects ([`Effects::real`]): the system clocks, heartbeat looks on
//! workers with a deadline (`looks/`, in a helper process on Linux), a thread per command
//! running it contained (`command::run`), a thread per dependency check and per config load.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::effects::{
    Checker, Clock, Effects, Job, LoadResult, Loaded, Loader, Looker, Probe, Report, Runner,
    Verdict,
};
use crate::command::{self, Outcome};
use crate::config::ConfigError;
use crate::fsutil::epoch_secs;
use crate::platform;
use crate::schedule::Now;
use crate::state::RunningCommand;

impl Effects {
    /// The system clocks, `stat` on worker threads with a deadline (`looks.rs`), and a
    /// thread per command running it contained (`command::run`), made by a launcher thread.
    pub fn real() -> Effects {
        Effects {
            clock: Box::new(SystemClock),
            looker: real_looker(),
            runner: Box::new(Launcher::start()),
            checker: Box::new(ThreadChecker),
            loader: Box::new(ThreadLoader),
            seed: crate::fsutil::random(),
        }
    }
}

/// A helper process's workers look at heartbeats (Linux, when enabled), else this process's.
fn real_looker() -> Box<dyn Looker> {
    #[cfg(target_os = "linux")]
    if let Some(helper) = super::looks::remote::looker() {
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

/// Commands are started, and their threads made, on a thread of their own, not on the
/// scheduler's. Making a thread takes the process's memory-map lock, which a burst of
/// commands keeps busy (the threads holding or waiting for the lock wait for a core behind
/// the commands' processes): the scheduler thread, favoured or not, waited there 20-60 ms
/// at a time while it started 100 commands. It now hands each job over and goes on. The
/// launcher is favoured as the scheduler is, and starts each command that waits for
/// nothing (no incident to take, no command of an earlier protector) itself, before it
/// makes the thread that waits for it: made by the command threads, at the commands'
/// priority, the last of 100 commands started at once began 69 ms after the first
/// (docs/performance.md, "Ninth round").
struct Launcher {
    /// None when the launcher's thread could not be made: jobs are started by the caller.
    tx: Option<mpsc::Sender<(Job, Report)>>,
}

impl Launcher {
    fn start() -> Launcher {
        let (tx, rx) = mpsc::channel::<(Job, Report)>();
        let made = std::thread::Builder::new()
            .name("protector-launch".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                platform::favour_this_thread();
                while let Ok(first) = rx.recv() {
                    // Every job handed over by now is started before a thread is made
                    // for any: a thread made takes the memory-map lock the others' threads
                    // hold (stacks, page faults), which held each start up about 1 ms.
                    let jobs: Vec<_> = std::iter::once(first)
                        .chain(rx.try_iter())
                        .map(|(job, report)| {
                            let started = at_once(&job).then(|| start_contained(&job));
                            (job, started, report)
                        })
                        .collect();
                    for (job, started, report) in jobs {
                        run_on_a_thread(job, started, report);
                    }
                }
            });
        if let Err(e) = &made {
            warn!(event = "launch_thread_failed", reason = %e, "cannot start a thread to start commands; they are started from the scheduler thread");
        }
        Launcher {
            tx: made.ok().map(|_| tx),
        }
    }
}

impl Runner for Launcher {
    fn run(&self, job: Job, report: Report) {
        let unsent = match &self.tx {
            Some(tx) => tx.send((job, report)).err().map(|e| e.0),
            None => Some((job, report)),
        };
        if let Some((job, report)) = unsent {
            run_on_a_thread(job, None, report);
        }
    }
}

/// Can `job`'s command start the moment it is handed over: it waits for nothing first.
fn at_once(job: &Job) -> bool {
    job.after.is_none() && job.incident.is_none() && !job.incident_only
}

/// `command::start`, with a panic (a bug) turned into a failure.
fn start_contained(job: &Job) -> Result<command::Started, Outcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        command::start(&job.line, &job.env)
    }))
    .unwrap_or_else(|p| {
        Err(Outcome::failed(format!(
            "internal error: {}",
            panic_message(&*p)
        )))
    })
}

/// A thread per command, running it contained (`command::run`): `started` when the
/// launcher started it already, else after what it waits for.
fn run_on_a_thread(job: Job, started: Option<Result<command::Started, Outcome>>, report: Report) {
    // The report and the command move into the thread; if the thread cannot be made, they
    // come back through this slot: the report is called here, and a command started
    // already is killed (nobody would wait for it).
    let slot = std::sync::Arc::new(std::sync::Mutex::new(Some((report, started))));
    let theirs = slot.clone();
    let take = |s: &std::sync::Mutex<Option<_>>| s.lock().unwrap_or_else(|e| e.into_inner()).take();
    let spawned = std::thread::Builder::new()
        .name(format!("protector-{}", job.what))
        .stack_size(256 * 1024)
        .spawn(move || {
            let Some((report, started)) = take(&theirs) else {
                return;
            };
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                run_job(job, started)
            }))
            .unwrap_or_else(|p| Outcome::failed(format!("internal error: {}", panic_message(&*p))));
            report(outcome);
        });
    if let Err(e) = spawned
        && let Some((report, started)) = take(&slot)
    {
        drop(started);
        report(Outcome::short_of_resources(format!(
            "cannot start a thread for the command: {e}"
        )));
    }
}

/// Runs `job` (started already or not) to its end, its process group on record meanwhile.
fn run_job(job: Job, started: Option<Result<command::Started, Outcome>>) -> Outcome {
    let started = match started {
        Some(started) => started,
        None => {
            if let Some((left, wait)) = &job.after {
                settle(&job.target, left, *wait);
            }
            if let Some(incident) = job.incident {
                let note = keep_incident(&incident.draft, &job.env);
                incident.tell(note);
            }
            if job.incident_only {
                return Outcome::failed("not run: observe only".into());
            }
            command::start(&job.line, &job.env)
        }
    };
    let started = match started {
        Ok(started) => started,
        Err(failed) => return failed,
    };
    let mut spawned = job.spawned;
    let mut record = None;
    let outcome = started.finish(job.timeout, command::TAIL_BYTES, |pgid| {
        if let Some(tell) = spawned.take()
            && let Some(stamp) = platform::group_stamp(pgid)
        {
            let running = RunningCommand {
                command: job.what.into(),
                pgid,
                stamp,
                started_at: epoch_secs(SystemTime::now()),
            };
            record = put_on_record(&job.target, job.record_beside.as_deref(), &running);
            tell(running);
        }
    });
    if let Some(record) = record {
        crate::state::running::remove(&record);
    }
    outcome
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

/// Takes the incident of a restart that begins (its `diagnose` bounded by its timeout) and
/// keeps it; a failure (a bug's panic included) is logged and the restart goes on.
fn keep_incident(
    draft: &crate::incident::Draft,
    env: &[(&'static str, String)],
) -> Option<crate::state::IncidentNote> {
    let kept = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let incident = crate::incident::take(draft, env);
        crate::incident::keep(&draft.dir, &incident).map(|_| incident)
    }))
    .unwrap_or_else(|p| Err(std::io::Error::other(panic_message(&*p))));
    match kept {
        Ok(incident) => {
            info!(target = %draft.target, event = "incident_recorded", incident = %incident.id, summary = %incident.summary, "kept what the service looked like before its restart (protector incidents)");
            Some(crate::state::IncidentNote {
                id: incident.id,
                summary: incident.summary,
            })
        }
        Err(e) => {
            warn!(target = %draft.target, event = "incident_not_kept", reason = %e, "cannot keep the restart's incident; the restart goes on");
            None
        }
    }
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that runs `argv` and reports whether it succeeded on `tx`.
    fn job(argv: &[&str], tx: mpsc::Sender<bool>) -> (Job, Report) {
        let job = Job {
            target: "svc".into(),
            what: "stop",
            line: crate::config::CommandLine::Exec(argv.iter().map(|a| a.to_string()).collect()),
            env: Vec::new(),
            timeout: Duration::from_secs(60),
            after: None,
            spawned: None,
            record_beside: None,
            incident: None,
            incident_only: false,
        };
        (
            job,
            Box::new(move |o: Outcome| tx.send(o.success()).unwrap()),
        )
    }

    #[cfg(unix)]
    const TRUE: &[&str] = &["true"];
    #[cfg(unix)]
    const FALSE: &[&str] = &["false"];
    #[cfg(windows)]
    const TRUE: &[&str] = &["cmd", "/c", "exit 0"];
    #[cfg(windows)]
    const FALSE: &[&str] = &["cmd", "/c", "exit 1"];

    #[test]
    fn the_launcher_runs_each_job_handed_over_and_the_caller_does_when_it_cannot() {
        let (tx, rx) = mpsc::channel();
        let launcher = Launcher::start();
        let (yes, report) = job(TRUE, tx.clone());
        launcher.run(yes, report);
        let (no, report) = job(FALSE, tx.clone());
        launcher.run(no, report);
        let within = Duration::from_secs(30);
        let mut said = [
            rx.recv_timeout(within).unwrap(),
            rx.recv_timeout(within).unwrap(),
        ];
        said.sort();
        assert_eq!(said, [false, true]);

        // Its thread gone (or never made): the job still runs, started from the caller.
        let gone = Launcher {
            tx: Some(mpsc::channel().0),
        };
        let (yes, report) = job(TRUE, tx.clone());
        gone.run(yes, report);
        assert!(rx.recv_timeout(within).unwrap());
        let none = Launcher { tx: None };
        let (yes, report) = job(TRUE, tx);
        none.run(yes, report);
        assert!(rx.recv_timeout(within).unwrap());
    }
}
