//! The watchdog loop. One scheduler thread owns every target's state and an agenda of deadlines;
//! it sleeps on a channel until the nearest deadline, a finished command or a signal, so it
//! does no work while nothing is due and reacts at once to what it is told.
//!
//! Due targets are observed (in parallel on the rayon pool when many fall due together) and
//! `schedule` decides; commands run on threads of their own (`command`), so a hung command
//! never delays any other target. This module carries out the decisions and keeps the books:
//! logs, the state and metrics files, notify commands, systemd, reload and shutdown.
//!
//! Lifecycle. SIGHUP re-reads the config: an invalid one is logged and the old one kept; a
//! valid one is applied, keeping the state of unchanged targets. SIGTERM/SIGINT start no new
//! command, wait for the running ones (each is bounded by its command_timeout) and exit 0; a
//! second signal exits at once.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rayon::prelude::*;
use tracing::{debug, error, info, warn};

use crate::command::{self, Outcome};
use crate::config::duration::format as fmt_dur;
use crate::config::{self, Config, Files, Os, Target};
use crate::fsutil::epoch_secs;
use crate::platform::{self, OnSignal, Signal};
use crate::schedule::{Action, Agenda, Cmd, Next, Now, Observation, Phase, Rules, TargetState};
use crate::state::{self, CommandRecord, RestartRecord, StateFile, TargetRecord};
use crate::{heartbeat, metrics, systemd};

/// Below this many due targets, observe them on the scheduler thread: a single stat is
/// cheaper than waking the pool.
const PARALLEL_OBSERVE_MIN: usize = 16;
/// Changes that only move a heartbeat are written to the state file at most this often, per
/// started thousand targets (up to ten times this).
const LAZY_FLUSH: Duration = Duration::from_secs(1);
/// Above this many targets, per-target start-up lines are logged at debug level.
const QUIET_ABOVE: usize = 100;
/// Restart steps are written within this long; a burst of them (a restart storm) becomes one
/// write of the state and metrics files instead of one per step.
const URGENT_FLUSH: Duration = Duration::from_millis(20);

pub struct Options {
    /// The config file, for reloads (none for the positional form).
    pub config_path: Option<PathBuf>,
    /// Decide as usual, log the commands, run none.
    pub dry_run: bool,
    /// Another source of signals besides the OS's (the Windows service control handler):
    /// called once with the function that delivers them to the loop.
    pub signal_source: Option<Box<dyn FnOnce(OnSignal) + Send>>,
}

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// Shut down after the running commands finished.
    Clean,
    /// A second signal: left at once.
    Immediate,
}

enum Msg {
    /// A command finished; `None` in a dry run.
    Done {
        id: u64,
        cmd: Cmd,
        outcome: Option<Outcome>,
    },
    /// A notify command finished (its outcome is logged by its thread).
    NotifyDone,
    Signal(Signal),
}

/// A notify command waiting for, or given, a place.
struct NotifyJob {
    target: String,
    event: &'static str,
    line: config::CommandLine,
    env: Vec<(&'static str, String)>,
    timeout: Duration,
}

struct Slot {
    /// Stable across reloads; commands report back by it.
    id: u64,
    target: Target,
    rules: Rules,
    state: TargetState,
    /// Last reason the heartbeat could not be read, to log each new one once.
    last_error: Option<String>,
    failures: u64,
    timeouts: u64,
    last_restart: Option<RestartRecord>,
}

struct Daemon {
    opts: Options,
    files: Files,
    lock_file: PathBuf,
    slots: Vec<Slot>,
    disabled: Vec<Target>,
    index: HashMap<u64, usize>,
    /// Targets removed by a reload while a command of theirs ran: id -> (name, timeout).
    orphans: HashMap<u64, (String, Duration)>,
    agenda: Agenda,
    next_id: u64,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    /// Commands running now (at most `max_parallel`).
    in_flight: usize,
    max_parallel: usize,
    /// Commands decided on while `max_parallel` were running: (slot id, command), in order.
    queued: VecDeque<(u64, Cmd)>,
    /// Notify commands running now, bounded by `max_parallel` of their own (so a storm's
    /// notifications neither flood the machine nor take places from restarts).
    notifies_running: usize,
    notifies_queued: VecDeque<NotifyJob>,
    stopping: bool,
    started_at: f64,
    flush_at: Option<Instant>,
    last_write_error: Option<String>,
    watchdog: Option<(Duration, Instant)>,
    observations: u64,
}

/// Watches the enabled targets of `config` until told to stop. `lock_file` is the path of the
/// instance lock the caller holds (recorded in the state file for `status`).
pub fn run(config: Config, lock_file: PathBuf, mut opts: Options) -> Result<Exit> {
    let (tx, rx) = mpsc::channel::<Msg>();
    let deliver = |tx: mpsc::Sender<Msg>| -> OnSignal {
        Box::new(move |s| {
            let _ = tx.send(Msg::Signal(s));
        })
    };
    // A panic is a bug: log it like everything else (the loop contains it, see `contained`).
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        error!(%location, panic = panic_message(info.payload()), "panic");
    }));
    platform::listen_for_signals(deliver(tx.clone()))?;
    if let Some(source) = opts.signal_source.take() {
        source(deliver(tx.clone()));
    }

    let mut d = Daemon {
        opts,
        files: Files::default(),
        lock_file,
        slots: Vec::new(),
        disabled: Vec::new(),
        index: HashMap::new(),
        orphans: HashMap::new(),
        agenda: Agenda::default(),
        next_id: 0,
        tx,
        rx,
        in_flight: 0,
        max_parallel: 1,
        queued: VecDeque::new(),
        notifies_running: 0,
        notifies_queued: VecDeque::new(),
        stopping: false,
        started_at: epoch_secs(std::time::SystemTime::now()),
        flush_at: None,
        last_write_error: None,
        watchdog: systemd::watchdog_interval().map(|every| (every, Instant::now())),
        observations: 0,
    };
    d.apply(config, true);
    if d.opts.dry_run {
        warn!("dry run: commands are logged, not run");
    }
    info!(targets = d.slots.len(), "protector is running");
    systemd::send(systemd::Note::Ready);
    d.run_loop()
}

impl Daemon {
    fn run_loop(&mut self) -> Result<Exit> {
        let mut due = Vec::new();
        loop {
            if !self.stopping {
                self.run_due(&mut due);
            }
            let now = Instant::now();
            if self.flush_at.is_some_and(|at| at <= now) {
                self.flush();
            }
            if let Some((every, at)) = &mut self.watchdog
                && *at <= now
            {
                systemd::send(systemd::Note::Watchdog);
                *at = now + *every;
            }
            if self.stopping && self.in_flight == 0 {
                self.flush();
                info!("protector stopped");
                return Ok(Exit::Clean);
            }

            let next_deadline = if self.stopping {
                None
            } else {
                self.agenda.next()
            };
            let wake = [next_deadline, self.flush_at, self.watchdog.map(|w| w.1)]
                .into_iter()
                .flatten()
                .min();
            let msg = match wake {
                Some(at) => match self
                    .rx
                    .recv_timeout(at.saturating_duration_since(Instant::now()))
                {
                    Ok(msg) => msg,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("we hold a sender"),
                },
                None => self.rx.recv().expect("we hold a sender"),
            };
            match msg {
                Msg::Done { id, cmd, outcome } => self.on_done(id, cmd, outcome),
                Msg::NotifyDone => {
                    self.notifies_running -= 1;
                    self.start_queued_notifies();
                }
                Msg::Signal(Signal::Reload) => self.reload(),
                Msg::Signal(Signal::Shutdown) if self.stopping => {
                    warn!(
                        running = self.in_flight,
                        "second signal: exiting at once, leaving running commands behind"
                    );
                    self.flush();
                    return Ok(Exit::Immediate);
                }
                Msg::Signal(Signal::Shutdown) => {
                    self.stopping = true;
                    self.drop_queued();
                    if !self.notifies_queued.is_empty() {
                        warn!(
                            dropped = self.notifies_queued.len(),
                            "shutting down: not running notify commands still waiting for a place"
                        );
                        self.notifies_queued.clear();
                    }
                    systemd::send(systemd::Note::Stopping);
                    if self.in_flight > 0 {
                        info!(
                            running = self.in_flight,
                            "shutting down: waiting for running commands (a second signal exits at once)"
                        );
                    } else {
                        info!("shutting down");
                    }
                }
            }
        }
    }

    /// Observes and judges every target whose deadline has come.
    fn run_due(&mut self, due: &mut Vec<usize>) {
        let now_mono = Instant::now();
        due.clear();
        let slots = &self.slots;
        self.agenda.take_due(
            now_mono,
            |i, at| slots[i].state.is_due_at(now_mono) && slots[i].state.deadline == at,
            due,
        );
        if due.is_empty() {
            return;
        }
        let paths: Vec<&Path> = due
            .iter()
            .map(|&i| self.slots[i].target.heartbeat.as_path())
            .collect();
        let looks = observe_all(&paths);
        self.observations += looks.len() as u64;
        let now = Now::read();
        // Judge every due target before starting any command, so that starting many
        // commands at once never delays the detection of the last one.
        let mut to_run = Vec::new();
        for (&i, (obs, err)) in due.iter().zip(looks) {
            self.slots[i].note_error(err);
            match self.contained(i, "judging the heartbeat", |d| d.on_due(i, &obs, now)) {
                Some(Some(cmd)) => to_run.push((i, cmd)),
                Some(None) => self.agenda.push(self.slots[i].state.deadline, i),
                None => self.recover(i),
            }
        }
        for (i, cmd) in to_run {
            if self
                .contained(i, "starting a command", |d| d.spawn(i, cmd))
                .is_none()
            {
                self.recover(i);
            }
        }
    }

    /// Runs `f`, which handles slot `i`, so that a bug (a panic) in the handling of one
    /// target is logged and never stops the loop or any other target. `None` after a panic.
    fn contained<T>(&mut self, i: usize, doing: &str, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(v) => Some(v),
            Err(payload) => {
                error!(
                    target = %self.slots[i].target.name,
                    panic = panic_message(&*payload),
                    "internal error while {doing}; this target is watched afresh and every other goes on"
                );
                None
            }
        }
    }

    /// After a panic in its handling, slot `i` starts over from a fresh look at its heartbeat
    /// as at start-up (with its restart counts), so it is watched again whatever state the
    /// panic left behind; a command of its still waiting for a place is dropped.
    fn recover(&mut self, i: usize) {
        let id = self.slots[i].id;
        self.queued.retain(|(q, _)| *q != id);
        let slot = &mut self.slots[i];
        let (obs, _) = heartbeat::observe(&slot.target.heartbeat);
        let now = Now::read();
        let (consecutive, total) = (slot.state.consecutive, slot.state.restarts_total);
        let mut state = TargetState::start(&slot.rules, &obs, now);
        state.restore(&slot.rules, consecutive, total, None, now.mono);
        slot.state = state;
        self.agenda.push(slot.state.deadline, i);
        self.mark_dirty(true);
    }

    /// Applies a due check to slot `i`; returns the command to start, if any.
    fn on_due(&mut self, i: usize, obs: &Observation, now: Now) -> Option<Cmd> {
        let slot = &mut self.slots[i];
        let was_given_up = slot.state.phase == Phase::GivenUp;
        let out = slot.state.on_due(&slot.rules, obs, now);
        // After the decision: the worst moment, the state already says a command runs.
        inject_panic(&slot.target.name);
        let name = slot.target.name.clone();
        if was_given_up && out.beat.is_none() {
            debug!(target = %name, age = %fmt_secs(slot.state.age(now.mono)), "still no heartbeat; given up");
        }
        if let Some(beat) = out.beat {
            if beat.resumed {
                info!(target = %name, "heartbeat is back; watching again after giving up");
            } else if beat.after_restarts > 0 {
                info!(target = %name, restarts = beat.after_restarts, "heartbeat is back after restart");
            } else {
                debug!(target = %name, next_check_in = %fmt_dur(slot.state.deadline.saturating_duration_since(now.mono)), "heartbeat seen");
            }
            if beat.resumed || beat.after_restarts > 0 {
                self.notify(i, "recovery", beat.after_restarts);
                self.mark_dirty(true);
            } else {
                self.mark_dirty(false);
            }
        }
        let slot = &self.slots[i];
        match out.action? {
            Action::Restart { age, run } => {
                warn!(
                    target = %name,
                    age = %fmt_secs(age),
                    timeout = %fmt_dur(slot.target.timeout),
                    consecutive_restarts = slot.state.consecutive,
                    "heartbeat is stale; {}",
                    if run == Cmd::SkipIf { "asking skip_if before restarting" } else { "restarting" }
                );
                self.mark_dirty(true);
                Some(run)
            }
            Action::GiveUp { age, restarts } => {
                error!(
                    target = %name,
                    age = %fmt_secs(age),
                    restarts,
                    "giving up: no heartbeat after max_restarts consecutive restarts; will resume when a heartbeat appears"
                );
                self.notify(i, "give-up", restarts);
                self.mark_dirty(true);
                None
            }
        }
    }

    fn spawn(&mut self, i: usize, cmd: Cmd) {
        let slot = &mut self.slots[i];
        // A restart begins with stop, or with start when there is no stop.
        if cmd == Cmd::Stop || (cmd == Cmd::Start && slot.target.stop.is_none()) {
            slot.last_restart = Some(RestartRecord {
                at: epoch_secs(std::time::SystemTime::now()),
                commands: Vec::new(),
            });
            self.notify(i, "restart", self.slots[i].state.consecutive);
        }
        if self.in_flight >= self.max_parallel && !self.opts.dry_run {
            let slot = &self.slots[i];
            debug!(target = %slot.target.name, running = self.in_flight, "{} command waits: max_parallel_commands are running", cmd.name());
            self.queued.push_back((slot.id, cmd));
            return;
        }
        self.start_command(i, cmd);
    }

    /// Starts queued commands while there is room.
    fn start_queued(&mut self) {
        while self.in_flight < self.max_parallel {
            let Some((id, cmd)) = self.queued.pop_front() else {
                return;
            };
            let Some(&i) = self.index.get(&id) else {
                // Removed by a reload while it waited: nothing will report back.
                self.orphans.remove(&id);
                continue;
            };
            self.start_command(i, cmd);
        }
    }

    /// Drops the queue on shutdown: those commands never start.
    fn drop_queued(&mut self) {
        for (id, cmd) in std::mem::take(&mut self.queued) {
            if let Some(&i) = self.index.get(&id) {
                info!(target = %self.slots[i].target.name, "shutting down: not running the {} command", cmd.name());
                self.slots[i].state.abandon(Instant::now());
            }
        }
    }

    fn start_command(&mut self, i: usize, cmd: Cmd) {
        let slot = &self.slots[i];
        let line = match cmd {
            Cmd::SkipIf => slot.target.skip_if.clone(),
            Cmd::Stop => slot.target.stop.clone(),
            Cmd::Start => Some(slot.target.start.clone()),
        };
        // The schedule only runs commands the target has; but a reload may have taken one
        // away while it waited for a place: then that step is done (skip_if: "do not skip").
        let Some(line) = line else {
            return self.finish(i, cmd, cmd != Cmd::SkipIf);
        };
        let (id, env, timeout) = (slot.id, command_env(slot), slot.target.command_timeout);
        self.in_flight += 1;
        let tx = self.tx.clone();
        if self.opts.dry_run {
            info!(target = %slot.target.name, command = %line, "dry run: would run {} command", cmd.name());
            let _ = tx.send(Msg::Done {
                id,
                cmd,
                outcome: None,
            });
            return;
        }
        info!(target = %slot.target.name, command = %line, "running {} command", cmd.name());
        let spawned = std::thread::Builder::new()
            .name(format!("protector-{}", cmd.name()))
            .stack_size(256 * 1024)
            .spawn({
                let tx = tx.clone();
                move || {
                    // Whatever happens, report back: a lost report would leave the target
                    // waiting for its command for ever.
                    let outcome = std::panic::catch_unwind(|| command::run(&line, &env, timeout))
                        .unwrap_or_else(|p| {
                            Outcome::failed(format!("internal error: {}", panic_message(&*p)))
                        });
                    let _ = tx.send(Msg::Done {
                        id,
                        cmd,
                        outcome: Some(outcome),
                    });
                }
            });
        if let Err(e) = spawned {
            // Report it as a failed command so the target carries on.
            let outcome = Outcome::failed(format!("cannot start a thread for the command: {e}"));
            let _ = tx.send(Msg::Done {
                id,
                cmd,
                outcome: Some(outcome),
            });
        }
    }

    fn on_done(&mut self, id: u64, cmd: Cmd, outcome: Option<Outcome>) {
        self.in_flight -= 1;
        let Some(&i) = self.index.get(&id) else {
            // A target removed by a reload while this command ran.
            let (name, timeout) = self.orphans.remove(&id).unwrap_or_default();
            if let Some(o) = &outcome {
                log_outcome(&name, cmd.name(), timeout, o);
            }
            return;
        };
        let slot = &mut self.slots[i];
        let success = match &outcome {
            Some(o) => {
                log_outcome(
                    &slot.target.name,
                    cmd.name(),
                    slot.target.command_timeout,
                    o,
                );
                slot.record(cmd, o);
                o.success()
            }
            // A dry run has nothing to say; for skip_if that means "do not skip".
            None => cmd != Cmd::SkipIf,
        };
        if self
            .contained(i, "moving on after a command", |d| {
                d.finish(i, cmd, success)
            })
            .is_none()
        {
            self.recover(i);
        }
        self.start_queued();
    }

    /// Moves slot `i` on after its `cmd` finished.
    fn finish(&mut self, i: usize, cmd: Cmd, success: bool) {
        let slot = &mut self.slots[i];
        let next = slot
            .state
            .on_command_done(&slot.rules, cmd, success, Instant::now());
        let name = slot.target.name.clone();
        self.mark_dirty(true);
        match next {
            Next::Run(next) if self.stopping => {
                info!(target = %name, "shutting down: not running the {} command", next.name());
                self.slots[i].state.abandon(Instant::now());
            }
            Next::Run(next) => self.spawn(i, next),
            Next::Judge { wait } => {
                let slot = &self.slots[i];
                info!(
                    target = %name,
                    next_check_in = %fmt_dur(wait),
                    consecutive_restarts = slot.state.consecutive,
                    "restart done"
                );
                self.agenda.push(slot.state.deadline, i);
            }
            Next::Postponed { wait } => {
                info!(target = %name, next_check_in = %fmt_dur(wait), "restart postponed: skip_if exited 0");
                self.agenda.push(self.slots[i].state.deadline, i);
            }
        }
    }

    /// Runs the target's notify command, if any, without waiting for it.
    fn notify(&mut self, i: usize, event: &'static str, restarts: u32) {
        let slot = &self.slots[i];
        let Some(line) = slot.target.notify.clone() else {
            return;
        };
        let target = slot.target.name.clone();
        if self.opts.dry_run {
            info!(target = %target, event, command = %line, "dry run: would run notify command");
            return;
        }
        let mut env = command_env(slot);
        env.push(("PROTECTOR_EVENT", event.to_string()));
        env.push(("PROTECTOR_RESTARTS", restarts.to_string()));
        let job = NotifyJob {
            target,
            event,
            line,
            env,
            timeout: slot.target.command_timeout,
        };
        if self.notifies_running >= self.max_parallel {
            debug!(target = %job.target, event, "notify command waits: max_parallel_commands notify commands are running");
            self.notifies_queued.push_back(job);
        } else {
            self.run_notify(job);
        }
    }

    fn start_queued_notifies(&mut self) {
        while self.notifies_running < self.max_parallel {
            match self.notifies_queued.pop_front() {
                Some(job) => self.run_notify(job),
                None => return,
            }
        }
    }

    fn run_notify(&mut self, job: NotifyJob) {
        let NotifyJob {
            target,
            event,
            line,
            env,
            timeout,
        } = job;
        let tx = self.tx.clone();
        let name = target.clone();
        let spawned = std::thread::Builder::new()
            .name("protector-notify".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                let o = std::panic::catch_unwind(|| command::run(&line, &env, timeout))
                    .unwrap_or_else(|p| {
                        Outcome::failed(format!("internal error: {}", panic_message(&*p)))
                    });
                if o.success() {
                    debug!(target = %name, event, duration_ms = o.duration.as_millis() as u64, "notify command finished");
                } else {
                    log_outcome(&name, "notify", timeout, &o);
                }
                let _ = tx.send(Msg::NotifyDone);
            });
        match spawned {
            Ok(_) => self.notifies_running += 1,
            Err(e) => warn!(target = %target, "cannot run notify command: {e}"),
        }
    }

    fn reload(&mut self) {
        let Some(path) = self.opts.config_path.clone() else {
            warn!(
                "reload requested, but protector was started with positional arguments: nothing to reload"
            );
            return;
        };
        systemd::send(systemd::Note::Reloading);
        info!(config = %path.display(), "reloading the config");
        match config::load(&path, Os::host()) {
            Ok(config) => {
                self.apply(config, false);
                self.start_queued();
                self.start_queued_notifies();
            }
            Err(e) => {
                for (problem, pos) in &e.problems {
                    let at = pos
                        .map(|p| format!(":{}:{}", p.line, p.column))
                        .unwrap_or_default();
                    let key = config::key_path(&problem.pointer);
                    let key = if key.is_empty() {
                        key
                    } else {
                        format!("{key}: ")
                    };
                    error!("{}{at}: {key}{}", e.file, problem.message);
                }
                error!(
                    problems = e.problems.len(),
                    "reload failed; still running the previous config"
                );
            }
        }
        systemd::send(systemd::Note::Ready);
    }

    /// Installs `config`: at start-up everything is new; on reload unchanged targets keep
    /// their state, changed ones keep their counters (and a running command), new ones start
    /// with startup_grace, removed ones are dropped.
    fn apply(&mut self, config: Config, first: bool) {
        let now = Now::read();
        let (enabled, disabled): (Vec<Target>, Vec<Target>) =
            config.targets.into_iter().partition(|t| t.enabled);
        let mut old: HashMap<String, Slot> = self
            .slots
            .drain(..)
            .map(|s| (s.target.name.clone(), s))
            .collect();

        // Observe every target that needs a fresh start, in one parallel batch.
        let fresh: Vec<&Target> = enabled
            .iter()
            .filter(|t| {
                old.get(&t.name)
                    .is_none_or(|s| s.target != **t && !s.is_running())
            })
            .collect();
        let paths: Vec<&Path> = fresh.iter().map(|t| t.heartbeat.as_path()).collect();
        self.observations += paths.len() as u64;
        let looks = observe_all(&paths);
        for (t, (obs, err)) in fresh.iter().zip(&looks) {
            if *obs == Observation::Absent && err.is_none() {
                warn_missing_dir(t);
            }
        }
        let mut looks = looks.into_iter();

        if !first
            && config
                .files
                .lock_file
                .as_ref()
                .is_some_and(|l| *l != self.lock_file)
        {
            warn!("lock_file changes take effect when protector is restarted");
        }
        self.files = config.files;
        self.max_parallel = config.max_parallel_commands.max(1);
        let restored = if first {
            self.read_state_file()
        } else {
            HashMap::new()
        };
        let (mut unchanged, mut changed, mut added) = (0, 0, 0);
        // With many targets, one "watching" line each is noise: they go to debug.
        let quiet = enabled.len() > QUIET_ABOVE;
        for target in enabled {
            let rules = Rules::of(&target);
            let slot = match old.remove(&target.name) {
                Some(slot) if slot.target == target => {
                    unchanged += 1;
                    slot
                }
                Some(mut slot) => {
                    changed += 1;
                    if !slot.is_running() {
                        let (obs, err) = looks.next().expect("observed above");
                        // New settings, new timing (startup grace); the counts carry over.
                        let mut state = TargetState::start(&rules, &obs, now);
                        state.restore(
                            &rules,
                            slot.state.consecutive,
                            slot.state.restarts_total,
                            None,
                            now.mono,
                        );
                        slot.state = state;
                        slot.note_error(err);
                    }
                    info!(target = %target.name, "settings changed; applied");
                    slot.target = target;
                    slot.rules = rules;
                    slot
                }
                None => {
                    added += 1;
                    let (obs, err) = looks.next().expect("observed above");
                    let mut slot = Slot {
                        id: self.next_id,
                        state: TargetState::start(&rules, &obs, now),
                        target,
                        rules,
                        last_error: None,
                        failures: 0,
                        timeouts: 0,
                        last_restart: None,
                    };
                    self.next_id += 1;
                    if let Some(rec) = restored.get(&slot.target.name) {
                        slot.restore_record(rec, now);
                    }
                    slot.note_error(err);
                    let (name, heartbeat, timeout, first_check_in) = (
                        &slot.target.name,
                        slot.target.heartbeat.display(),
                        fmt_dur(slot.target.timeout),
                        fmt_dur(slot.state.deadline.saturating_duration_since(now.mono)),
                    );
                    if quiet {
                        debug!(target = %name, %heartbeat, %timeout, %first_check_in, "watching");
                    } else {
                        info!(target = %name, %heartbeat, %timeout, %first_check_in, "watching");
                    }
                    slot
                }
            };
            self.slots.push(slot);
        }
        for (name, slot) in old {
            if slot.is_running() {
                self.orphans
                    .insert(slot.id, (name.clone(), slot.target.command_timeout));
                info!(target = %name, "no longer in the config; its running command will finish on its own");
            } else {
                info!(target = %name, "no longer in the config; not watching it");
            }
        }
        for t in &disabled {
            info!(target = %t.name, "target is disabled; not watching it");
        }
        self.disabled = disabled;
        if self.slots.is_empty() {
            warn!("no enabled targets; nothing to watch");
        }
        self.index = self
            .slots
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        self.agenda = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_running())
            .map(|(i, s)| (s.state.deadline, i))
            .collect();
        if !first {
            info!(
                unchanged,
                changed,
                added,
                disabled = self.disabled.len(),
                "config reloaded"
            );
        }
        self.mark_dirty(true);
        // What loading the config needed beyond the model is free now.
        platform::return_free_memory();
    }

    /// Records of the previous run, by target name. An unusable file is set aside.
    fn read_state_file(&self) -> HashMap<String, TargetRecord> {
        let Some(path) = &self.files.state_file else {
            return HashMap::new();
        };
        match state::load(path) {
            Ok(Some(file)) => file
                .targets
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            Ok(None) => HashMap::new(),
            Err(reason) => {
                match state::set_aside(path) {
                    Ok(aside) => warn!(
                        state_file = %path.display(),
                        reason = %reason,
                        moved_to = %aside.display(),
                        "state file is unusable; moved it aside and starting fresh"
                    ),
                    Err(e) => {
                        warn!(state_file = %path.display(), reason = %reason, "state file is unusable and cannot be moved aside ({e}); it will be overwritten")
                    }
                }
                HashMap::new()
            }
        }
    }

    fn mark_dirty(&mut self, urgent: bool) {
        let at = if urgent {
            Instant::now() + URGENT_FLUSH
        } else {
            // Each write covers every target: with many of them, write less often.
            let per_thousand = (self.slots.len() / 1000).clamp(1, 10) as u32;
            Instant::now() + LAZY_FLUSH * per_thousand
        };
        self.flush_at = Some(self.flush_at.map_or(at, |t| t.min(at)));
    }

    /// Writes the state and metrics files. A failure is logged (once per new reason) and
    /// watching goes on.
    fn flush(&mut self) {
        self.flush_at = None;
        if self.files.state_file.is_none() && self.files.metrics_file.is_none() {
            return;
        }
        let snapshot = self.snapshot(Now::read());
        let mut errors = Vec::new();
        if let Some(path) = &self.files.state_file
            && let Err(e) = state::save(path, &snapshot)
        {
            errors.push(format!("cannot write state file {}: {e}", path.display()));
        }
        if let Some(path) = &self.files.metrics_file
            && let Err(e) = crate::fsutil::write_atomically(path, |w| metrics::render(&snapshot, w))
        {
            errors.push(format!("cannot write metrics file {}: {e}", path.display()));
        }
        let error = (!errors.is_empty()).then(|| errors.join("; "));
        if error.is_some() && error != self.last_write_error {
            warn!(
                "{}; watching continues",
                error.as_deref().unwrap_or_default()
            );
        }
        self.last_write_error = error;
    }

    fn snapshot(&self, now: Now) -> StateFile {
        let wall_at = |at: Instant| {
            let now_wall = epoch_secs(now.wall);
            if at >= now.mono {
                now_wall + (at - now.mono).as_secs_f64()
            } else {
                now_wall - (now.mono - at).as_secs_f64()
            }
        };
        let mut targets: Vec<TargetRecord> = self
            .slots
            .iter()
            .map(|s| {
                let st = &s.state;
                let state = match st.phase {
                    Phase::Running(_) => "restarting",
                    Phase::GivenUp => "given up",
                    Phase::Watching if st.consecutive > 0 => "backing off",
                    Phase::Watching => "watching",
                };
                TargetRecord {
                    name: s.target.name.clone(),
                    heartbeat: s.target.heartbeat.display().to_string(),
                    state: state.into(),
                    last_heartbeat: st.beat_known.then(|| wall_at(st.last_beat)),
                    next_check: (!s.is_running()).then(|| wall_at(st.deadline)),
                    restarts_total: st.restarts_total,
                    consecutive_restarts: st.consecutive,
                    backoff_secs: if st.consecutive > 0 {
                        s.rules.wait_after_restart(st.consecutive).as_secs_f64()
                    } else {
                        0.0
                    },
                    command_failures_total: s.failures,
                    command_timeouts_total: s.timeouts,
                    last_restart: s.last_restart.clone(),
                }
            })
            .collect();
        targets.extend(self.disabled.iter().map(|t| TargetRecord {
            name: t.name.clone(),
            heartbeat: t.heartbeat.display().to_string(),
            state: "disabled".into(),
            last_heartbeat: None,
            next_check: None,
            restarts_total: 0,
            consecutive_restarts: 0,
            backoff_secs: 0.0,
            command_failures_total: 0,
            command_timeouts_total: 0,
            last_restart: None,
        }));
        StateFile {
            format: state::FORMAT.into(),
            version: state::VERSION,
            pid: std::process::id(),
            protector_version: env!("CARGO_PKG_VERSION").into(),
            started_at: self.started_at,
            written_at: epoch_secs(now.wall),
            config: self
                .opts
                .config_path
                .as_ref()
                .map(|p| p.display().to_string()),
            lock_file: Some(self.lock_file.display().to_string()),
            observations_total: self.observations,
            targets,
        }
    }
}

impl Slot {
    fn is_running(&self) -> bool {
        matches!(self.state.phase, Phase::Running(_))
    }

    fn note_error(&mut self, err: Option<String>) {
        if err.is_some() && err != self.last_error {
            warn!(
                target = %self.target.name,
                heartbeat = %self.target.heartbeat.display(),
                reason = err.as_deref().unwrap_or_default(),
                "cannot read the heartbeat file; counting it as no heartbeat"
            );
        }
        self.last_error = err;
    }

    /// Books a finished stop or start command.
    fn record(&mut self, cmd: Cmd, o: &Outcome) {
        if cmd == Cmd::SkipIf {
            return;
        }
        if !o.success() {
            self.failures += 1;
        }
        if o.timed_out {
            self.timeouts += 1;
        }
        if let Some(r) = &mut self.last_restart {
            r.commands.push(CommandRecord {
                command: cmd.name().into(),
                exit_code: o.status.as_ref().ok().and_then(|s| s.code()),
                status: match &o.status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.clone(),
                },
                duration_ms: o.duration.as_millis() as u64,
                timed_out: o.timed_out,
            });
        }
    }

    /// Carries over what the previous run of protector knew (its state file).
    fn restore_record(&mut self, rec: &TargetRecord, now: Now) {
        let resume = rec.next_check.and_then(|at| {
            let ahead = at - epoch_secs(now.wall);
            (ahead > 0.0).then(|| now.mono + Duration::from_secs_f64(ahead.min(1e9)))
        });
        self.state.restore(
            &self.rules,
            rec.consecutive_restarts,
            rec.restarts_total,
            resume,
            now.mono,
        );
        self.failures = rec.command_failures_total;
        self.timeouts = rec.command_timeouts_total;
        self.last_restart = rec.last_restart.clone();
        if rec.consecutive_restarts > 0 {
            info!(
                target = %self.target.name,
                consecutive_restarts = rec.consecutive_restarts,
                "restored restart count from the state file; backoff continues"
            );
        }
    }
}

/// Says, at start-up and when a reload adds or changes a target, that the heartbeat cannot
/// appear yet because its directory does not exist (a writer such as Salt's `file.touch`
/// does not create directories). Watching goes on: the target is judged as usual.
fn warn_missing_dir(t: &Target) {
    if let Some(dir) = heartbeat::missing_dir(&t.heartbeat) {
        warn!(
            target = %t.name,
            event = "heartbeat_dir_missing",
            heartbeat = %t.heartbeat.display(),
            directory = %dir.display(),
            "the heartbeat's directory does not exist: nothing can write this heartbeat yet"
        );
    }
}

fn observe_all(paths: &[&Path]) -> Vec<(Observation, Option<String>)> {
    if paths.len() >= PARALLEL_OBSERVE_MIN {
        paths.par_iter().map(|p| heartbeat::observe(p)).collect()
    } else {
        paths.iter().map(|p| heartbeat::observe(p)).collect()
    }
}

fn command_env(slot: &Slot) -> Vec<(&'static str, String)> {
    vec![
        ("PROTECTOR_TARGET", slot.target.name.clone()),
        (
            "PROTECTOR_HEARTBEAT",
            slot.target.heartbeat.display().to_string(),
        ),
        (
            "PROTECTOR_AGE_SECS",
            slot.state.age(Instant::now()).as_secs().to_string(),
        ),
    ]
}

/// Logs how a command ended; `what` is `stop`, `start`, `skip_if` or `notify`.
fn log_outcome(name: &str, what: &str, command_timeout: Duration, o: &Outcome) {
    let ms = o.duration.as_millis() as u64;
    let (stdout, stderr) = (non_empty(&o.stdout), non_empty(&o.stderr));
    match &o.status {
        Err(reason) => {
            error!(target = %name, duration_ms = ms, reason = %reason, "{what} command could not run");
        }
        Ok(status) if o.timed_out => {
            error!(
                target = %name,
                duration_ms = ms,
                timeout = %fmt_dur(command_timeout),
                status = %status,
                stdout,
                stderr,
                "{what} command timed out; killed its process tree"
            );
        }
        Ok(status) if status.success() => {
            info!(target = %name, duration_ms = ms, stdout, stderr, "{what} command finished");
        }
        Ok(status) => {
            warn!(target = %name, duration_ms = ms, status = %status, stdout, stderr, "{what} command failed");
        }
    }
}

/// Output fields are left out of a log line when the stream was empty.
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The message of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Test builds only: `PROTECTOR_TEST_PANIC=<target>` makes the first judgement of that
/// target panic (after the decision), to prove a bug in one target's handling harms nothing
/// else. Compiled out of release builds.
#[cfg(debug_assertions)]
fn inject_panic(target: &str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static DONE: AtomicBool = AtomicBool::new(false);
    if std::env::var("PROTECTOR_TEST_PANIC").is_ok_and(|t| t == target)
        && !DONE.swap(true, Ordering::Relaxed)
    {
        panic!("injected for a test in the handling of {target}");
    }
}

#[cfg(not(debug_assertions))]
fn inject_panic(_: &str) {}
