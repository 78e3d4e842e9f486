//! The watchdog loop.
//!
//! Theory of operation. One scheduler thread owns every target's state (a [`Slot`] each) and an
//! [`Agenda`] of their deadlines on the monotonic clock. It sleeps on a channel until the
//! nearest deadline, a finished command or a signal, so it does no work while nothing is due
//! and reacts at once to what it is told. Each turn of the loop ([`Daemon::turn`]):
//! 1. takes every target whose deadline has come, looks at their heartbeat files in one batch
//!    and lets `schedule` judge each one (`judge.rs`; all of them before any command starts,
//!    so a storm of restarts never delays the detection of the last stale target);
//! 2. starts the commands decided on, at most `max_parallel_commands` at a time, the rest
//!    waiting in order of detection (`commands.rs`); commands run off this thread and report
//!    back on the channel, so a hung command never delays any other target;
//! 3. writes the state and metrics files when they are due (`books.rs`), pings the systemd
//!    watchdog, and ends the loop once shutting down and no command runs.
//!
//! Messages ([`Daemon::handle`]): a finished command moves its target on; SIGHUP reloads the
//! config (`reload.rs`: read and checked off this thread, the old targets watched meanwhile;
//! then a pure plan of unchanged / changed / added / removed targets, applied; an invalid
//! config is logged and the old one kept); SIGTERM/SIGINT begin no new
//! restart, wait for the running commands (each bounded by its command_timeout), start a
//! service whose stop already ran, and exit 0; a second signal exits at once.
//!
//! Effects (the clock, looking at files, running commands) come through the small interfaces
//! of `effects.rs` (production's in `real.rs`): `tests/` drives this same loop on simulated
//! time with fakes.
//!
//! Every log record about a target carries `target` and a stable `event` field (see
//! docs/log-events.md): that, not the message text, is the contract for tests and log
//! shippers.

mod books;
mod bounded;
mod commands;
mod control;
mod effects;
mod hold;
mod incidents;
mod install;
mod judge;
mod launcher;
mod left;
mod looks;
mod notify;
mod outcomes;
mod real;
mod refused;
mod relist;
mod reload;
mod retries;
mod sentinel;
mod slot;
#[cfg(test)]
mod tests;
mod waiters;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use tracing::{error, info, warn};

use crate::command::Outcome;
use crate::config::Config;
use crate::platform::{self, OnSignal, Signal};
use crate::schedule::{Agenda, Cmd, Now};
use crate::state::RunningCommand;
use crate::{lock, systemd};

use books::Books;
use bounded::Bounded;
use effects::{Effects, Job};
#[cfg(target_os = "linux")]
pub(crate) use looks::helper::{HELPER_WORD as LOOK_HELPER_WORD, helper_main as look_helper_main};
#[cfg(target_os = "linux")]
pub(crate) use looks::remote::enable as use_look_helper;
pub(crate) use refused::Refused;
use slot::Slot;

pub(crate) struct Options {
    /// The config file, for reloads (none for the positional form).
    pub config_path: Option<PathBuf>,
    /// Decide as usual, log the commands, run none.
    pub dry_run: bool,
    /// Another source of signals besides the OS's (the Windows service control handler):
    /// called once with the function that delivers them to the loop.
    pub signal_source: Option<Box<dyn FnOnce(OnSignal) + Send>>,
    /// The config file's text as protector accepted it at start-up, to keep as the last
    /// accepted copy.
    pub accepted_text: Option<String>,
    /// The config file was refused at start-up: the config given is its last accepted copy.
    pub refused: Option<Refused>,
}

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Shut down after the running commands finished.
    Clean,
    /// A second signal: left at once.
    Immediate,
}

pub(crate) enum Msg {
    /// A stop, start or skip_if command finished; `None` in a dry run.
    Done {
        id: u64,
        cmd: Cmd,
        outcome: Option<Outcome>,
    },
    /// A stop, start or skip_if command runs as a process group.
    Spawned {
        id: u64,
        cmd: Cmd,
        running: RunningCommand,
    },
    /// The incident of slot `id`'s restart was kept (`None`: it could not be).
    Incident {
        id: u64,
        note: Option<crate::state::IncidentNote>,
    },
    /// A dependency check (`depends_on`) of slot `id` ended; `seq` says which.
    Checked {
        id: u64,
        seq: u64,
        verdict: crate::depends::Verdict,
    },
    /// A notify command finished (it ran with `timeout`).
    NotifyDone {
        target: String,
        timeout: Duration,
        outcome: Outcome,
    },
    Signal(Signal),
    /// The config file a reload read, loaded.
    Loaded(Box<effects::LoadResult>),
    /// An operator's request from the control socket; the answer goes to `reply`.
    #[cfg_attr(windows, allow(dead_code))]
    Control {
        req: crate::control::Request,
        reply: mpsc::Sender<crate::control::Reply>,
    },
}

pub(crate) struct Daemon {
    opts: Options,
    fx: Effects,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    slots: Vec<Slot>,
    /// Slot id -> index in `slots`.
    index: HashMap<u64, usize>,
    /// Targets removed by a reload while a command of theirs ran: id -> (name, timeout).
    orphans: HashMap<u64, (String, Duration)>,
    agenda: Agenda,
    next_id: u64,
    /// Stop/start/skip_if commands: (slot id, command), bounded by max_parallel_commands.
    commands: Bounded<(u64, Cmd)>,
    /// Notify commands, with a bound of the same size of their own (so a storm's
    /// notifications neither flood the machine nor take places from restarts).
    notifies: Bounded<Job>,
    books: Books,
    /// Commands that could not run for lack of resources, tried again at their time.
    retries: retries::Retries,
    stopping: bool,
    watchdog: Option<(Duration, Instant)>,
    /// Operators waiting for the restart they asked for.
    waiters: waiters::Waiters,
    /// Running on the last accepted config, the config file being refused.
    refusal: Option<refused::Refusal>,
    /// A reload whose config file is being read.
    reloading: Option<reload::Reloading>,
}

/// The loop's channel, made before anything else: signals are caught from the moment it
/// exists, so a SIGHUP or SIGTERM while a large config is still being read waits here and is
/// acted on once start-up completes (SIGHUP's default action would end the process).
pub(crate) struct Inbox {
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
}

impl Inbox {
    /// Catches SIGTERM, SIGINT and SIGHUP (console events on Windows) from now on.
    pub fn listen() -> std::io::Result<Inbox> {
        let inbox = Inbox::quiet();
        platform::listen_for_signals(inbox.deliver())?;
        Ok(inbox)
    }

    /// A channel that hears no OS signal.
    fn quiet() -> Inbox {
        let (tx, rx) = mpsc::channel();
        Inbox { tx, rx }
    }

    fn deliver(&self) -> OnSignal {
        let tx = self.tx.clone();
        Box::new(move |s| {
            let _ = tx.send(Msg::Signal(s));
        })
    }
}

/// Takes the instance lock (the config's `lock_file`, or the default one named after
/// `lock_key`) and watches the targets of `config` until told to stop.
pub(crate) fn watch(config: Config, lock_key: &Path, opts: Options, inbox: Inbox) -> Result<Exit> {
    let lock_path = config
        .files
        .lock_file
        .clone()
        .unwrap_or_else(|| lock::default_path(config.files.state_file.as_deref(), lock_key));
    let lock = lock::acquire(&lock_path)?;
    // Operators' requests (pause, restart, ...); watching goes on without them. The socket is
    // named after the config alone, so a client finds it without reading the config.
    let socket = crate::control::socket_for(lock_key);
    let listener = match control::listen(&socket, inbox.tx.clone()) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!(event = "control_unavailable", socket = %socket.display(), reason = %e, "cannot listen for operators' requests; watching goes on without them");
            None
        }
    };
    let lock_file = lock.path.clone();
    let socket = listener.map(|l| (socket, l));
    let socket_path = socket.as_ref().map(|(path, _)| path.clone());
    // Keeps both in place while protector runs; dropped when this returns.
    let _sentinel = sentinel::Sentinel::start(lock, socket, inbox.tx.clone());
    run(config, lock_file, socket_path, opts, inbox)
}

/// Watches the enabled targets of `config` until told to stop. `lock_file` is the path of the
/// instance lock the caller holds, `control_socket` where it takes requests (both recorded in
/// the state file).
fn run(
    config: Config,
    lock_file: PathBuf,
    control_socket: Option<PathBuf>,
    mut opts: Options,
    inbox: Inbox,
) -> Result<Exit> {
    // A panic is a bug: log it like everything else (the loop contains it, see `contained`).
    std::panic::set_hook(Box::new(|info| {
        let location = info.location().map(|l| l.to_string()).unwrap_or_default();
        error!(event = "panic", %location, panic = panic_message(info.payload()), "panic");
    }));
    let source = opts.signal_source.take();
    if let Some(source) = source {
        source(inbox.deliver());
    }
    let mut d = Daemon::new(Effects::real(), opts, lock_file, inbox);
    d.books.control_socket = control_socket;
    d.watchdog = systemd::watchdog_interval().map(|every| (every, d.fx.clock.now().mono));
    // This thread judges and starts commands: it runs ahead of them (platform/priority_*.rs).
    crate::platform::favour_this_thread();
    d.start(config);
    Ok(d.run_loop())
}

impl Daemon {
    fn new(fx: Effects, opts: Options, lock_file: PathBuf, inbox: Inbox) -> Daemon {
        let Inbox { tx, rx } = inbox;
        let started_at = fx.clock.now().wall;
        let books = Books::new(opts.config_path.as_deref(), lock_file, started_at);
        Daemon {
            opts,
            fx,
            tx,
            rx,
            slots: Vec::new(),
            index: HashMap::new(),
            orphans: HashMap::new(),
            agenda: Agenda::default(),
            next_id: 0,
            commands: Bounded::new(1),
            notifies: Bounded::new(1),
            books,
            retries: retries::Retries::default(),
            stopping: false,
            watchdog: None,
            waiters: waiters::Waiters::default(),
            refusal: None,
            reloading: None,
        }
    }

    fn now(&self) -> Now {
        self.fx.clock.now()
    }

    /// Installs the first config and says so.
    fn start(&mut self, config: Config) {
        self.apply(config, true);
        if let (Some(path), Some(text)) = (
            self.opts.config_path.clone(),
            self.opts.accepted_text.take(),
        ) {
            self.accepted(&path, &text);
        }
        if let Some(refused) = self.opts.refused.take() {
            self.announce_refusal(refused);
        }
        // Written before READY: `protector status` right after the service manager says it
        // started finds the state file (and the control socket it names).
        let written = self.flush_and_wait(books::Part::State);
        self.forget_records_left(written);
        if self.opts.dry_run {
            warn!(
                event = "dry_run",
                "dry run: commands are logged, not run; the state and metrics files are not written"
            );
        }
        info!(
            event = "started",
            targets = self.slots.len(),
            "protector is running"
        );
        systemd::send(systemd::Note::Ready);
    }

    fn run_loop(&mut self) -> Exit {
        loop {
            if let Some(exit) = self.turn() {
                return exit;
            }
            let msg = match self.next_wake() {
                Some(at) => {
                    let wait = at.saturating_duration_since(self.now().mono);
                    match self.rx.recv_timeout(wait) {
                        Ok(msg) => msg,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => {
                            unreachable!("we hold a sender")
                        }
                    }
                }
                None => self.rx.recv().expect("we hold a sender"),
            };
            if let Some(exit) = self.handle(msg) {
                return exit;
            }
        }
    }

    /// Everything due now: judging targets, writing the books, the systemd watchdog. Returns
    /// how the loop ends once shutting down with nothing left running.
    fn turn(&mut self) -> Option<Exit> {
        if !self.stopping {
            self.run_due();
            self.run_retries();
            self.remind_refusal();
        }
        let now = self.now().mono;
        if self.books.flush_due(now) {
            self.flush_when_free(now);
        }
        if let Some((every, at)) = &mut self.watchdog
            && *at <= now
        {
            systemd::send(systemd::Note::Watchdog);
            *at = crate::schedule::later(now, *every);
        }
        if self.stopping && self.commands.running() == 0 {
            self.flush_and_wait(books::Part::All);
            info!(event = "stopped", "protector stopped");
            return Some(Exit::Clean);
        }
        None
    }

    /// When the loop must wake up with no message: the nearest deadline, state write or
    /// watchdog ping. `None`: only a message can wake it.
    fn next_wake(&self) -> Option<Instant> {
        let (deadline, retry) = if self.stopping {
            (None, None)
        } else {
            (self.agenda.next(), self.retries.next())
        };
        let remind = self.refusal_due().filter(|_| !self.stopping);
        [
            deadline,
            retry,
            remind,
            self.books.flush_at,
            self.watchdog.map(|w| w.1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Handles one message; returns how the loop ends, if it does.
    fn handle(&mut self, msg: Msg) -> Option<Exit> {
        match msg {
            Msg::Done { id, cmd, outcome } => self.on_done(id, cmd, outcome),
            Msg::Spawned { id, cmd, running } => self.on_spawned(id, cmd, running),
            Msg::Incident { id, note } => self.on_incident(id, note),
            Msg::NotifyDone {
                target,
                timeout,
                outcome,
            } => self.on_notify_done(&target, timeout, &outcome),
            Msg::Checked { id, seq, verdict } => self.on_checked(id, seq, verdict),
            Msg::Signal(Signal::Reload) => self.reload(None),
            Msg::Loaded(result) => self.on_loaded(*result),
            Msg::Control { req, reply } => self.on_control(req, reply),
            Msg::Signal(Signal::Shutdown) if self.stopping => {
                warn!(
                    event = "exit_immediate",
                    running = self.commands.running(),
                    "second signal: exiting at once, leaving running commands behind"
                );
                self.flush_and_wait(books::Part::All);
                return Some(Exit::Immediate);
            }
            Msg::Signal(Signal::Shutdown) => self.begin_shutdown(),
        }
        None
    }

    fn begin_shutdown(&mut self) {
        self.stopping = true;
        self.drop_queued();
        self.abandon_reload();
        systemd::send(systemd::Note::Stopping);
        let running = self.commands.running();
        if running > 0 {
            info!(
                event = "stopping",
                running,
                "shutting down: waiting for running commands (a second signal exits at once)"
            );
        } else {
            info!(event = "stopping", running, "shutting down");
        }
    }
}

/// A duration as a log field: seconds, as a number (JSON logs stay machine-readable).
fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The message of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
