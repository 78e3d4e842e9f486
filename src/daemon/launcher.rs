//! The production [`Runner`]: commands are started on one thread and each is waited for on
//! a thread of its own (`command::start`, then `Started::finish`).
//!
//! Commands start on a thread of their own, the launcher, not on the scheduler's. Making a
//! thread takes the process's memory-map lock, which a burst of commands keeps busy (the
//! threads holding or waiting for the lock wait for a core behind the commands' processes):
//! the scheduler thread, favoured or not, waited there 20-60 ms at a time while it started
//! 100 commands. It now hands each job over and goes on. The launcher is favoured as the
//! scheduler is (nothing it starts inherits that) and starts every command: one that waits
//! for nothing the moment it is handed over, before any thread is made for the jobs handed
//! over with it (a thread made between two starts held the next one up about 1 ms); one
//! that waits first (an incident to take, a command of an earlier protector) when its
//! thread asks, once the wait is over. Started by the commands' own threads, at their
//! priority, the last of 100 commands started at once began 69 ms after the first
//! (docs/performance.md, "Ninth round").

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

use super::effects::{Job, Report, Runner};
use super::panic_message;
use crate::command::{self, Outcome, Started};
use crate::config::CommandLine;
use crate::fsutil::epoch_secs;
use crate::platform;
use crate::state::RunningCommand;

/// What the launcher is handed.
enum Handed {
    /// A job from the scheduler, with the way back here for its thread.
    Job(Box<Job>, Report, mpsc::Sender<Handed>),
    /// A command whose thread waited first, to start now; the answer goes on the sender.
    Start(CommandLine, Env, mpsc::Sender<Result<Started, Outcome>>),
}

type Env = Vec<(&'static str, String)>;

pub(super) struct Launcher {
    /// None when the launcher's thread could not be made: jobs are started by the caller.
    tx: Option<mpsc::Sender<Handed>>,
}

impl Launcher {
    pub(super) fn start() -> Launcher {
        let (tx, rx) = mpsc::channel::<Handed>();
        let made = std::thread::Builder::new()
            .name("protector-launch".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                platform::favour_this_thread();
                while let Ok(first) = rx.recv() {
                    // What was handed over by now is started before a thread is made.
                    let mut threads = Vec::new();
                    for handed in std::iter::once(first).chain(rx.try_iter()) {
                        match handed {
                            Handed::Job(job, report, back) => {
                                let started = waits_for_nothing(&job)
                                    .then(|| start_contained(&job.line, &job.env));
                                threads.push((*job, started, report, back));
                            }
                            Handed::Start(line, env, answer) => {
                                let _ = answer.send(start_contained(&line, &env));
                            }
                        }
                    }
                    for (job, started, report, back) in threads {
                        run_on_a_thread(job, started, report, Some(back));
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
        let Some(tx) = &self.tx else {
            return run_on_a_thread(job, None, report, None);
        };
        // Its thread gone: the job comes back, and is started here.
        if let Err(mpsc::SendError(Handed::Job(job, report, _))) =
            tx.send(Handed::Job(Box::new(job), report, tx.clone()))
        {
            run_on_a_thread(*job, None, report, None);
        }
    }
}

/// Can `job`'s command start the moment it is handed over: it waits for nothing first.
fn waits_for_nothing(job: &Job) -> bool {
    job.after.is_none() && job.incident.is_none() && !job.incident_only
}

/// `command::start`, with a panic (a bug) turned into a failure.
fn start_contained(line: &CommandLine, env: &[(&'static str, String)]) -> Result<Started, Outcome> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| command::start(line, env)))
        .unwrap_or_else(|p| {
            Err(Outcome::failed(format!(
                "internal error: {}",
                panic_message(&*p)
            )))
        })
}

/// Starts `line` through the launcher (`launcher`), or here when it is gone.
fn start_through(
    launcher: Option<&mpsc::Sender<Handed>>,
    line: &CommandLine,
    env: &Env,
) -> Result<Started, Outcome> {
    if let Some(launcher) = launcher {
        let (answer, answered) = mpsc::channel();
        if launcher
            .send(Handed::Start(line.clone(), env.clone(), answer))
            .is_ok()
            && let Ok(started) = answered.recv()
        {
            return started;
        }
    }
    start_contained(line, env)
}

/// A thread per command, running it contained: `started` when the launcher started it
/// already, else after what it waits for, started through `launcher` (here without one).
fn run_on_a_thread(
    job: Job,
    started: Option<Result<Started, Outcome>>,
    report: Report,
    launcher: Option<mpsc::Sender<Handed>>,
) {
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
                run_job(job, started, launcher.as_ref())
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
fn run_job(
    job: Job,
    started: Option<Result<Started, Outcome>>,
    launcher: Option<&mpsc::Sender<Handed>>,
) -> Outcome {
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
            start_through(launcher, &job.line, &job.env)
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

    #[test]
    fn a_command_that_waits_first_is_started_by_the_launcher_once_its_thread_asks() {
        let (tx, rx) = mpsc::channel();
        let launcher = Launcher::start();
        // A command an earlier protector left, already gone: waited for, then this one runs.
        let gone = RunningCommand {
            command: "stop".into(),
            pgid: u32::MAX,
            stamp: "another boot/0".into(),
            started_at: 0.0,
        };
        for argv in [TRUE, FALSE] {
            let (mut waits, report) = job(argv, tx.clone());
            waits.after = Some((gone.clone(), Duration::from_secs(60)));
            assert!(!waits_for_nothing(&waits));
            launcher.run(waits, report);
            let said = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(said, argv == TRUE, "{argv:?}");
        }
        // Asked of a launcher that is gone, the thread starts it itself.
        let (gone_tx, gone_rx) = mpsc::channel();
        drop(gone_rx);
        let line = crate::config::CommandLine::Exec(TRUE.iter().map(|a| a.to_string()).collect());
        let started = start_through(Some(&gone_tx), &line, &Vec::new()).unwrap();
        assert!(started.finish(Duration::from_secs(60), 0, |_| {}).success());
    }
}
