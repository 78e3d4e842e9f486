//! The harness: a fake clock, fake heartbeat files and fake commands (which finish after a
//! given time with a given status, hang, cannot be spawned, or panic) around the real
//! `Daemon`, driven turn by turn as the real loop would be, with no sleep and no process.
//! A dependency check is a fake command called `depends`: exit 0 is "up", anything else
//! "down", and one that hangs never answers.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::super::effects::{
    Checker, Clock, Effects, Job, LoadResult, Loaded, Loader, Look, Looker, Probe, Report, Runner,
    Verdict,
};
use super::super::real::load_contained;
use super::super::{Daemon, Exit, Inbox, Msg, Options};
use crate::command::Outcome;
use crate::platform::Signal;
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

struct Pending {
    index: usize,
    ends: Option<Duration>,
    outcome: Outcome,
    report: Report,
}

#[derive(Default)]
pub(super) struct World {
    pub(super) elapsed: Duration,
    pub(super) seq: u64,
    /// Present heartbeat files: path -> (mtime as elapsed time, version).
    files: HashMap<PathBuf, (Duration, u64)>,
    pub(super) unreadable: HashMap<PathBuf, String>,
    /// Every look: (path, when).
    pub(super) looks: Vec<(PathBuf, Duration)>,
    pub(super) started: Vec<Started>,
    pending: Vec<Pending>,
    /// Behaviour by (target, what); the default exits 0 at once.
    behaviour: HashMap<(String, &'static str), Behaviour>,
    /// A command started for a target that already had one unfinished.
    pub(super) overlaps: Vec<String>,
    /// How long reading the config takes (zero: it is read at once, on the loop's thread).
    pub(super) load_takes: Duration,
    /// Loads under way: when they end, what was read (when they began), and whom to tell.
    loads: Vec<(Duration, LoadResult, Loaded)>,
}

struct Fake {
    world: Rc<RefCell<World>>,
    base_mono: Instant,
    base_wall: SystemTime,
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
    fn look(&self, paths: &[&Path], _within: Duration) -> Vec<Look> {
        let mut w = self.world.borrow_mut();
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
    }
}

pub(super) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// The `event` field of every log record, with its `target` field (empty when none), in order.
type Events = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// Keeps the `event` and `target` fields of the log records made on this thread.
struct Recorder(Events);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, e: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String, String);
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                match f.name() {
                    "event" => self.0 = v.to_string(),
                    "target" => self.1 = v.to_string(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "target" {
                    self.1 = format!("{v:?}");
                }
            }
        }
        let mut fields = Fields(String::new(), String::new());
        e.record(&mut fields);
        if !fields.0.is_empty() {
            self.0.lock().unwrap().push((fields.1, fields.0));
        }
    }
}

/// The daemon with fakes, and the simulated world around it.
pub(super) struct Harness {
    pub(super) d: Daemon,
    pub(super) world: Rc<RefCell<World>>,
    pub(super) exit: Option<Exit>,
    events: Events,
    _log: tracing::subscriber::DefaultGuard,
}

impl Harness {
    pub(super) fn new(yaml: &str) -> Harness {
        Harness::with(yaml, false)
    }

    pub(super) fn with(yaml: &str, dry_run: bool) -> Harness {
        Harness::started(yaml, |o| o.dry_run = dry_run)
    }

    /// A harness whose daemon's options `adjust` sets before it starts.
    pub(super) fn started(yaml: &str, adjust: impl FnOnce(&mut Options)) -> Harness {
        let world = Rc::new(RefCell::new(World::default()));
        let fake = || Fake {
            world: world.clone(),
            base_mono: Instant::now(),
            base_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        };
        // One base for all three views of the world.
        let clock = fake();
        let (base_mono, base_wall) = (clock.base_mono, clock.base_wall);
        let same = || Fake {
            world: world.clone(),
            base_mono,
            base_wall,
        };
        let fx = Effects {
            clock: Box::new(clock),
            looker: Box::new(same()),
            runner: Box::new(same()),
            checker: Box::new(same()),
            loader: Box::new(same()),
            seed: 42,
        };
        let mut opts = Options {
            config_path: None,
            dry_run: false,
            signal_source: None,
            accepted_text: None,
            refused: None,
        };
        adjust(&mut opts);
        let events = Events::default();
        let log = {
            use tracing_subscriber::layer::SubscriberExt;
            let subscriber = tracing_subscriber::registry().with(Recorder(events.clone()));
            tracing::subscriber::set_default(subscriber)
        };
        let mut d = Daemon::new(fx, opts, PathBuf::from("test.lock"), Inbox::quiet());
        d.start(super::parse(yaml));
        Harness {
            d,
            world,
            exit: None,
            events,
            _log: log,
        }
    }

    /// What the state file would say of `target` now.
    pub(super) fn record(&self, target: &str) -> crate::state::TargetRecord {
        let snapshot = self.d.snapshot(self.d.now());
        snapshot
            .targets
            .into_iter()
            .find(|t| t.name == target)
            .unwrap_or_else(|| panic!("no target {target}"))
    }

    /// The `event` of every log record about `target` so far, in order.
    pub(super) fn events(&self, target: &str) -> Vec<String> {
        let all = self.events.lock().unwrap();
        all.iter()
            .filter(|(t, _)| t == target)
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub(super) fn now(&self) -> Duration {
        self.world.borrow().elapsed
    }

    pub(super) fn path_of(&self, target: &str) -> PathBuf {
        self.d
            .slots
            .iter()
            .find(|s| s.target.name == target)
            .map(|s| s.target.heartbeat.clone())
            .unwrap_or_else(|| panic!("no target {target}"))
    }

    /// Something touches the target's heartbeat now; returns its place in the order of
    /// touches and command starts.
    pub(super) fn touch(&mut self, target: &str) -> u64 {
        let path = self.path_of(target);
        let mut w = self.world.borrow_mut();
        let now = w.elapsed;
        let version = w.files.get(&path).map_or(0, |f| f.1) + 1;
        w.files.insert(path, (now, version));
        w.seq += 1;
        w.seq
    }

    pub(super) fn behave(&mut self, target: &str, what: &'static str, b: Behaviour) {
        self.world
            .borrow_mut()
            .behaviour
            .insert((target.to_string(), what), b);
    }

    /// Runs the loop as the real one would, until simulated time `until`.
    pub(super) fn run_until(&mut self, until: Duration) {
        for _ in 0..1_000_000 {
            if self.exit.is_some() {
                return;
            }
            if let Some(exit) = self.d.turn() {
                self.exit = Some(exit);
                return;
            }
            if let Ok(msg) = self.d.rx.try_recv() {
                self.exit = self.d.handle(msg);
                continue;
            }
            if self.complete_due() {
                continue;
            }
            let next_end = {
                let w = self.world.borrow();
                let loads = w.loads.iter().map(|l| l.0);
                w.pending.iter().filter_map(|p| p.ends).chain(loads).min()
            };
            let base = self.d.now().mono - self.now();
            let wake = self
                .d
                .next_wake()
                .map(|at| at.saturating_duration_since(base));
            let next = [wake, next_end].into_iter().flatten().min();
            let mut w = self.world.borrow_mut();
            match next {
                Some(t) if t <= until => w.elapsed = w.elapsed.max(t),
                _ => {
                    w.elapsed = w.elapsed.max(until);
                    return;
                }
            }
        }
        panic!("the loop did not settle");
    }

    pub(super) fn advance(&mut self, by: Duration) {
        let until = self.now() + by;
        self.run_until(until);
    }

    /// Reports every fake command (or load) whose end has come; true if there was one.
    fn complete_due(&mut self) -> bool {
        let now = self.now();
        let load = {
            let mut w = self.world.borrow_mut();
            let at = w.loads.iter().position(|l| l.0 <= now);
            at.map(|i| w.loads.remove(i))
        };
        if let Some((_, read, done)) = load {
            done(read);
            return true;
        }
        let due = {
            let mut w = self.world.borrow_mut();
            let at = w
                .pending
                .iter()
                .position(|p| p.ends.is_some_and(|e| e <= now));
            at.map(|i| w.pending.remove(i))
        };
        match due {
            Some(p) => {
                (p.report)(p.outcome);
                true
            }
            None => false,
        }
    }

    /// Ends a hanging command of the target now.
    pub(super) fn finish_hung(&mut self, target: &str) {
        let mut w = self.world.borrow_mut();
        let now = w.elapsed;
        let started = w.started.clone();
        for p in w.pending.iter_mut() {
            if p.ends.is_none() && started[p.index].target == target {
                p.ends = Some(now);
            }
        }
    }

    pub(super) fn signal(&mut self, s: Signal) {
        self.exit = self.d.handle(Msg::Signal(s));
    }

    /// SIGHUP, then the loop's turns at this instant (a config read at once is applied).
    pub(super) fn reload(&mut self) {
        self.signal(Signal::Reload);
        self.advance(Duration::ZERO);
    }

    /// (what, when) of every command started for `target`.
    pub(super) fn commands(&self, target: &str) -> Vec<(&'static str, Duration)> {
        self.world
            .borrow()
            .started
            .iter()
            .filter(|s| s.target == target)
            .map(|s| (s.what, s.at))
            .collect()
    }

    /// The commands started for `target`, each with when it started, in seconds.
    pub(super) fn command_secs(&self, target: &str) -> Vec<(&'static str, f64)> {
        self.commands(target)
            .into_iter()
            .map(|(what, at)| (what, at.as_secs_f64()))
            .collect()
    }

    pub(super) fn stops(&self, target: &str) -> Vec<Duration> {
        self.commands(target)
            .into_iter()
            .filter(|c| c.0 == "stop")
            .map(|c| c.1)
            .collect()
    }

    pub(super) fn slot(&self, target: &str) -> &super::super::slot::Slot {
        self.d
            .slots
            .iter()
            .find(|s| s.target.name == target)
            .unwrap()
    }
}
