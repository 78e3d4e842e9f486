//! The harness: the real `Daemon` among fakes (`fakes.rs`), driven turn by turn as the real
//! loop would be, with no sleep and no process.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::super::effects::Effects;
use super::super::{Daemon, Exit, Inbox, Msg, Options};
use crate::platform::Signal;

pub(super) use super::fakes::{Behaviour, secs};
use super::fakes::{Fake, World};

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
