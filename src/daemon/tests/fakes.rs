//! The fakes around the daemon on simulated time: a clock, heartbeat files, commands (which
//! finish after a given time with a given status, hang, cannot be spawned, or panic),
//! dependency checks (a fake command called `depends`: exit 0 is "up", anything else "down",
//! one that hangs never answers) and config loads (the real file, read in simulated time).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::super::effects::{
    Checker, Clock, Job, LoadResult, Loaded, Loader, Look, Looker, Probe, Report, Runner, Verdict,
};
use super::super::real::load_contained;
use crate::command::Outcome;
use crate::schedule::{Fingerprint, Now, Observation};

/// How a fake command behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Behaviour {
    /// Exits with this code after this long.
    Exit(i32, Duration),
    /// Never ends by itself (the test may end it with `finish`).
    Hang,
    /// Cannot be spawned.
    NoSpawn,
    /// Cannot be spawned for lack of resources (EAGAIN, EMFILE).
    NoResources,
    /// Its thread panics (the runner reports it as an internal error, as the real one does).
    Panic,
}

/// A command the fake runner was asked to run.
#[derive(Debug, Clone)]
pub(super) struct Started {
    pub(super) target: String,
    pub(super) what: &'static str,
    pub(super) at: Duration,
    /// Order among starts and touches (several can happen at one simulated instant).
    pub(super) seq: u64,
    pub(super) env: Vec<(&'static str, String)>,
}

pub(super) struct Pending {
    pub(super) index: usize,
    pub(super) ends: Option<Duration>,
    pub(super) outcome: Outcome,
    pub(super) report: Report,
}

#[derive(Default)]
pub(super) struct World {
    pub(super) elapsed: Duration,
    pub(super) seq: u64,
    /// Present heartbeat files: path -> (mtime as elapsed time, version).
    pub(super) files: HashMap<PathBuf, (Duration, u64)>,
    pub(super) unreadable: HashMap<PathBuf, String>,
    /// Every look: (path, when).
    pub(super) looks: Vec<(PathBuf, Duration)>,
    /// The budget of each batch of looks, in order.
    pub(super) budgets: Vec<Duration>,
    pub(super) started: Vec<Started>,
    pub(super) pending: Vec<Pending>,
    /// Behaviour by (target, what); the default exits 0 at once.
    pub(super) behaviour: HashMap<(String, &'static str), Behaviour>,
    /// A command started for a target that already had one unfinished.
    pub(super) overlaps: Vec<String>,
    /// How long reading the config takes (zero: it is read at once, on the loop's thread).
    pub(super) load_takes: Duration,
    /// Loads under way: when they end, what was read (when they began), and whom to tell.
    pub(super) loads: Vec<(Duration, LoadResult, Loaded)>,
}

pub(super) struct Fake {
    pub(super) world: Rc<RefCell<World>>,
    pub(super) base_mono: Instant,
    pub(super) base_wall: SystemTime,
}

impl Clock for Fake {
    fn now(&self) -> Now {
        let e = self.world.borrow().elapsed;
        Now {
            mono: self.base_mono + e,
            wall: self.base_wall + e,
        }
    }
}

impl Looker for Fake {
    fn look(&self, paths: &[&Path], within: Duration) -> Vec<Look> {
        let mut w = self.world.borrow_mut();
        w.budgets.push(within);
        let at = w.elapsed;
        paths
            .iter()
            .map(|p| {
                w.looks.push((p.to_path_buf(), at));
                if let Some(reason) = w.unreadable.get(*p) {
                    return (Observation::Unknown, Some(reason.clone()));
                }
                match w.files.get(*p) {
                    Some(&(mtime, version)) => (
                        Observation::Present(Fingerprint {
                            mtime: Some(self.base_wall + mtime),
                            len: version,
                            identity: (1, 1),
                            ..Fingerprint::default()
                        }),
                        None,
                    ),
                    None => (Observation::Absent, None),
                }
            })
            .collect()
    }
}

impl Runner for Fake {
    fn run(&self, job: Job, report: Report) {
        if job.incident_only {
            // Nothing runs: the incident is told untold (dropped with the job).
            return report(Outcome::failed("not run: observe only".into()));
        }
        let mut w = self.world.borrow_mut();
        let at = w.elapsed;
        let aside = |what: &str| what == "notify" || what == "depends";
        let busy = w
            .pending
            .iter()
            .any(|p| w.started[p.index].target == job.target && !aside(w.started[p.index].what));
        if busy && !aside(job.what) {
            w.overlaps.push(job.target.clone());
        }
        let index = w.started.len();
        w.seq += 1;
        let seq = w.seq;
        w.started.push(Started {
            target: job.target.clone(),
            what: job.what,
            at,
            seq,
            env: job.env,
        });
        let behaviour = w
            .behaviour
            .get(&(job.target, job.what))
            .copied()
            .unwrap_or(Behaviour::Exit(0, Duration::ZERO));
        let (ends, outcome) = match behaviour {
            Behaviour::Exit(code, took) => (Some(at + took), exited(code, took)),
            Behaviour::Hang => (None, exited(0, Duration::ZERO)),
            Behaviour::NoSpawn => (
                Some(at),
                Outcome::failed("cannot spawn: No such file or directory".into()),
            ),
            Behaviour::NoResources => (
                Some(at),
                Outcome::short_of_resources(
                    "cannot start: Resource temporarily unavailable".into(),
                ),
            ),
            Behaviour::Panic => (
                Some(at),
                Outcome::failed("internal error: injected by a test".into()),
            ),
        };
        w.pending.push(Pending {
            index,
            ends,
            outcome,
            report,
        });
    }
}

impl Checker for Fake {
    fn check(&self, probe: Probe, verdict: Verdict) {
        let report: Report = Box::new(move |o: Outcome| {
            let up = o.success();
            verdict(crate::depends::Verdict {
                up,
                detail: if up { "fake: up" } else { "fake: down" }.into(),
            })
        });
        let job = Job {
            target: probe.target,
            what: "depends",
            line: crate::config::CommandLine::Exec(vec!["depends".into()]),
            env: probe.env,
            timeout: Duration::ZERO,
            after: None,
            spawned: None,
            record_beside: None,
            incident: None,
            incident_only: false,
        };
        self.run(job, report);
    }
}

/// Reads the real file at once, and says what it read once its simulated reading time has
/// passed.
impl Loader for Fake {
    fn load(&self, path: PathBuf, done: Loaded) {
        let read = load_contained(&path);
        let mut w = self.world.borrow_mut();
        if w.load_takes.is_zero() {
            drop(w);
            return done(read);
        }
        let ends = w.elapsed + w.load_takes;
        w.loads.push((ends, read, done));
    }
}

#[cfg(unix)]
fn exit_status(code: i32) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(code << 8)
}

#[cfg(windows)]
fn exit_status(code: i32) -> ExitStatus {
    use std::os::windows::process::ExitStatusExt;
    ExitStatus::from_raw(code as u32)
}

pub(super) fn exited(code: i32, took: Duration) -> Outcome {
    Outcome {
        status: Ok(exit_status(code)),
        timed_out: false,
        duration: took,
        stdout: String::new(),
        stderr: String::new(),
        transient: false,
        cut: false,
    }
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}
